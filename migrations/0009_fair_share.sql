-- 0009: fair share across users, and provider limits that hold for the whole fleet.
--
-- Fair claiming. get_next_pending_job keeps its signature and its promise (up to p_limit due jobs,
-- highest priority first, each to exactly one caller), and among due jobs of EQUAL priority it now
-- serves users in turn: the job whose user has the fewest jobs running (counting the ones this
-- call already picked) goes first, then the oldest run_at. So a user who queued 300 tracks cannot
-- delay another user's single track by the whole backlog: that track starts at the next free slot.
-- Jobs without a user_id form one group of their own. Workers of the previous release call the
-- same function and get the same (fair) behaviour.
--   settings.fair_claiming        true (default) | false: the 0001 order (priority, run_at) exactly.
--   settings.max_running_per_user null (default: no cap) | N: never more than N jobs of one user
--                                 running at once across the fleet (jobs without a user are one
--                                 group and capped alike). Held under concurrent claims.
--
-- Fleet-wide provider limits. A worker asks Postgres for a slot before each paid provider request
-- (acquire_provider_slot) and gives it back after (release_provider_slot). A slot is a lease: a
-- worker that dies holding one loses it when the lease runs out (the worker renews it while the
-- request runs). Limits are per provider and account (the worker passes a digest of the API key,
-- never the key) and come with each call, so the fleet's configuration stays in the workers'
-- settings while Postgres enforces them for every dyno and slot at once.

alter table audio_queue.settings
    add column fair_claiming boolean not null default true,
    add column max_running_per_user integer
        check (max_running_per_user is null or max_running_per_user >= 1);

comment on column audio_queue.settings.fair_claiming is
    'Among due jobs of equal priority, serve the user with the fewest running jobs first (default true).';
comment on column audio_queue.settings.max_running_per_user is
    'At most this many jobs of one user (jobs without user_id: one group) running at once; null = no cap.';

-- Waiting jobs by group (user, or the nil uuid for jobs without one), in claim order within it.
-- Serves both the walk over the groups that have waiting jobs and each group's head.
create index jobs_fair_claim_idx on audio_queue.jobs
    ((coalesce(user_id, '00000000-0000-0000-0000-000000000000'::uuid)), priority desc, run_at, id)
    where status in ('pending', 'queued');


create or replace function audio_queue.get_next_pending_job(
    p_worker_id     text    default null,
    p_limit         integer default 1,
    p_lease_seconds integer default 600
) returns setof audio_queue.jobs
language plpgsql set search_path = '' as $$
declare
    c_nil constant uuid := '00000000-0000-0000-0000-000000000000';
    -- The walk over waiting groups stops after this many; see README "Fair share".
    c_max_groups constant integer := 1000;
    v_fair    boolean;
    v_cap     integer;
    v_groups  uuid[];
    v_ids     uuid[];
    v_locked  uuid[];
begin
    if p_limit is null or p_limit not between 1 and 1000 then
        raise exception 'get_next_pending_job: p_limit must be between 1 and 1000 (got %)', p_limit
            using errcode = '22023';
    end if;
    if p_lease_seconds is null or p_lease_seconds not between 1 and 86400 then
        raise exception 'get_next_pending_job: p_lease_seconds must be between 1 and 86400 (got %)', p_lease_seconds
            using errcode = '22023';
    end if;

    -- queue_settings(): the callers (service_role on Supabase) have no rights on the table itself.
    select s.fair_claiming, s.max_running_per_user into v_fair, v_cap from audio_queue.queue_settings() s;
    v_fair := coalesce(v_fair, true);

    if v_fair or v_cap is not null then
        -- The groups that have waiting jobs: a skip scan of jobs_fair_claim_idx, one probe each.
        with recursive g(grp) as (
            (select coalesce(j.user_id, c_nil) from audio_queue.jobs j
              where j.status in ('pending', 'queued')
              order by coalesce(j.user_id, c_nil) limit 1)
            union all
            select (select coalesce(j.user_id, c_nil) from audio_queue.jobs j
                     where j.status in ('pending', 'queued')
                       and coalesce(j.user_id, c_nil) > g.grp
                     order by coalesce(j.user_id, c_nil) limit 1)
              from g where g.grp is not null
        )
        select array_agg(grp) into v_groups from (select grp from g where grp is not null limit c_max_groups) s;
    end if;

    if v_groups is not null and (cardinality(v_groups) > 1 or v_cap is not null) then
        if v_cap is not null then
            -- Two claims for one capped group take turns, so both see the other's jobs running.
            perform pg_advisory_xact_lock(hashtextextended('audio_queue.user_cap:' || w.grp_key::text, 0))
               from unnest(v_groups) as w(grp_key) order by w.grp_key;
        end if;
        -- Each group's first due jobs, ranked by (jobs of that user running + position in the
        -- group): priority first, then the least served user, then the oldest.
        with running as (
            select coalesce(j.user_id, c_nil) as grp, count(*) as n
              from audio_queue.jobs j
             where j.status = 'processing'
             group by 1
        ),
        heads as (
            select h.id, h.priority, h.run_at, coalesce(r.n, 0) + h.rn as turn
              from unnest(v_groups) as w(grp_key)
              left join running r on r.grp = w.grp_key
              cross join lateral (
                  select j.id, j.priority, j.run_at,
                         row_number() over (order by j.priority desc, j.run_at, j.id) as rn
                    from audio_queue.jobs j
                   where coalesce(j.user_id, c_nil) = w.grp_key
                     and j.status in ('pending', 'queued')
                     and j.run_at <= now()
                   order by j.priority desc, j.run_at, j.id
                   limit case when v_cap is null then p_limit
                              else least(p_limit, greatest(v_cap - coalesce(r.n, 0), 0)) end
              ) h
        )
        select array_agg(id order by priority desc, turn, run_at, id) into v_ids from heads;

        select array_agg(s.id) into v_locked from (
            select j.id
              from audio_queue.jobs j
             where j.id = any(v_ids)
               and j.status in ('pending', 'queued')
             order by array_position(v_ids, j.id)
             limit p_limit
               for update skip locked
        ) s;
    end if;

    -- One group (or fairness off): the 0001 order. Also when every fair candidate was taken by a
    -- concurrent claim: the plain order fills the slots instead of waiting (never with a cap).
    if v_locked is null and v_cap is null then
        select array_agg(s.id) into v_locked from (
            select j.id
              from audio_queue.jobs j
             where j.status in ('pending', 'queued')
               and j.run_at <= now()
             order by j.priority desc, j.run_at, j.id
             limit p_limit
               for update skip locked
        ) s;
    end if;

    -- The rows are locked by this transaction: hand them to the caller.
    return query
    update audio_queue.jobs j
       set status           = 'processing',
           attempts         = j.attempts + 1,
           locked_by        = coalesce(p_worker_id, 'anonymous'),
           lease_id         = gen_random_uuid(),
           lease_seconds    = p_lease_seconds,
           heartbeat_at     = now(),
           lease_expires_at = now() + make_interval(secs => p_lease_seconds),
           started_at       = now(),
           progress         = 0,
           stage            = null
     where j.id = any(v_locked)
    returning j.*;
end;
$$;


-- Provider slots ------------------------------------------------------------------------------

create table audio_queue.provider_limits (
    provider        text not null,
    account         text not null,
    max_concurrent  integer check (max_concurrent is null or max_concurrent >= 1),
    max_requests    integer check (max_requests is null or max_requests >= 1),
    window_seconds  double precision check (window_seconds is null or window_seconds > 0),
    updated_at      timestamptz not null default now(),
    primary key (provider, account)
);
comment on table audio_queue.provider_limits is
    'The limits workers last asked for, per provider and account (for operators; the workers'' settings are the source).';

create table audio_queue.provider_leases (
    id          uuid primary key default gen_random_uuid(),
    provider    text not null,
    account     text not null,
    job_id      uuid,
    worker_id   text,
    acquired_at timestamptz not null default now(),
    expires_at  timestamptz not null
);
create index provider_leases_key_idx on audio_queue.provider_leases (provider, account, expires_at);
comment on table audio_queue.provider_leases is
    'Provider requests in flight across the fleet; a lease that is not renewed frees its slot when it expires.';

create table audio_queue.provider_requests (
    provider text not null,
    account  text not null,
    at       timestamptz not null default now()
);
create index provider_requests_key_idx on audio_queue.provider_requests (provider, account, at);
comment on table audio_queue.provider_requests is
    'Start times of recent provider requests, for requests-per-window limits; older rows are pruned.';

alter table audio_queue.provider_limits enable row level security;
alter table audio_queue.provider_leases enable row level security;
alter table audio_queue.provider_requests enable row level security;


-- A slot for one request: lease_id when granted, else null and how long to wait before asking
-- again. Callers serialise per (provider, account) on an advisory lock held for this statement's
-- transaction only, so it also works through a transaction pooler.
create function audio_queue.acquire_provider_slot(
    p_provider       text,
    p_account        text,
    p_max_concurrent integer,
    p_max_requests   integer,
    p_window_seconds double precision,
    p_lease_seconds  integer,
    p_job_id         uuid default null,
    p_worker_id      text default null
) returns table (lease_id uuid, retry_after_s double precision)
language plpgsql security definer set search_path = '' as $$
declare
    v_n     bigint;
    v_first timestamptz;
    v_wait  double precision := 0;
begin
    if p_provider is null or p_account is null then
        raise exception 'acquire_provider_slot: p_provider and p_account are required' using errcode = '22023';
    end if;
    if p_lease_seconds is null or p_lease_seconds not between 1 and 86400 then
        raise exception 'acquire_provider_slot: p_lease_seconds must be between 1 and 86400 (got %)', p_lease_seconds
            using errcode = '22023';
    end if;
    if p_max_requests is not null and (p_window_seconds is null or p_window_seconds <= 0) then
        raise exception 'acquire_provider_slot: p_window_seconds must be > 0 with p_max_requests' using errcode = '22023';
    end if;

    perform pg_advisory_xact_lock(hashtextextended('audio_queue.provider:' || p_provider || ':' || p_account, 0));

    insert into audio_queue.provider_limits as l (provider, account, max_concurrent, max_requests, window_seconds)
    values (p_provider, p_account, p_max_concurrent, p_max_requests, p_window_seconds)
    on conflict (provider, account) do update
       set max_concurrent = excluded.max_concurrent, max_requests = excluded.max_requests,
           window_seconds = excluded.window_seconds, updated_at = now()
     where (l.max_concurrent, l.max_requests, l.window_seconds)
           is distinct from (excluded.max_concurrent, excluded.max_requests, excluded.window_seconds);

    delete from audio_queue.provider_leases l
     where l.provider = p_provider and l.account = p_account and l.expires_at <= now();

    if p_max_concurrent is not null then
        select count(*), min(l.expires_at) into v_n, v_first
          from audio_queue.provider_leases l
         where l.provider = p_provider and l.account = p_account;
        if v_n >= p_max_concurrent then
            -- A release usually comes sooner than the earliest expiry: ask again soon.
            v_wait := least(0.25, greatest(0.01, extract(epoch from v_first - now())));
        end if;
    end if;

    if p_max_requests is not null then
        delete from audio_queue.provider_requests r
         where r.provider = p_provider and r.account = p_account
           and r.at <= now() - make_interval(secs => p_window_seconds);
        select count(*), min(r.at) into v_n, v_first
          from audio_queue.provider_requests r
         where r.provider = p_provider and r.account = p_account;
        if v_n >= p_max_requests then
            v_wait := greatest(v_wait, 0.01,
                               extract(epoch from v_first + make_interval(secs => p_window_seconds) - now()));
        end if;
    end if;

    if v_wait > 0 then
        return query select null::uuid, v_wait;
        return;
    end if;

    if p_max_requests is not null then
        insert into audio_queue.provider_requests (provider, account) values (p_provider, p_account);
    end if;
    return query
    insert into audio_queue.provider_leases (provider, account, job_id, worker_id, expires_at)
    values (p_provider, p_account, p_job_id, p_worker_id, now() + make_interval(secs => p_lease_seconds))
    returning id, 0::double precision;
end;
$$;

-- Keep a slot while its request runs; false when the lease was lost (expired and taken).
create function audio_queue.renew_provider_slot(p_lease_id uuid, p_lease_seconds integer)
returns boolean
language plpgsql security definer set search_path = '' as $$
begin
    update audio_queue.provider_leases l
       set expires_at = now() + make_interval(secs => p_lease_seconds)
     where l.id = p_lease_id and l.expires_at > now();
    return found;
end;
$$;

create function audio_queue.release_provider_slot(p_lease_id uuid)
returns boolean
language plpgsql security definer set search_path = '' as $$
begin
    delete from audio_queue.provider_leases l where l.id = p_lease_id;
    return found;
end;
$$;


-- For operators (python -m worker stats, sql/stats.sql) ---------------------------------------

-- The users with the most live jobs: running and waiting (due or scheduled) counts.
create function audio_queue.user_load(p_limit integer default 10)
returns table (user_id uuid, running bigint, waiting bigint)
language sql stable security definer set search_path = '' as $$
    select j.user_id,
           count(*) filter (where j.status = 'processing'),
           count(*) filter (where j.status in ('pending', 'queued'))
      from audio_queue.jobs j
     where j.status in ('pending', 'queued', 'processing')
     group by j.user_id
     order by 2 desc, 3 desc, 1 nulls last
     limit greatest(coalesce(p_limit, 10), 0);
$$;

-- Each provider account's slots in use now and requests in its window, against its limits.
create function audio_queue.provider_slot_stats()
returns table (provider text, account text, in_use bigint, max_concurrent integer,
               requests_in_window bigint, max_requests integer, window_seconds double precision)
language sql stable security definer set search_path = '' as $$
    select l.provider, l.account,
           (select count(*) from audio_queue.provider_leases p
             where p.provider = l.provider and p.account = l.account and p.expires_at > now()),
           l.max_concurrent,
           (select count(*) from audio_queue.provider_requests r
             where r.provider = l.provider and r.account = l.account
               and l.window_seconds is not null
               and r.at > now() - make_interval(secs => l.window_seconds)),
           l.max_requests, l.window_seconds
      from audio_queue.provider_limits l
     order by l.provider, l.account;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (9, '0009_fair_share')
on conflict (version) do nothing;
