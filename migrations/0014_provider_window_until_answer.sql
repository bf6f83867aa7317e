-- 0014: a provider request counts in its requests-per-window limit until its answer came.
--
-- 0009 counted a request from the moment its slot was granted (the statement's now(), which is
-- even earlier when the call waited for the advisory lock). A provider counts a request when it
-- arrives, some time between the grant and the answer: connection setup, a busy event loop or the
-- network put it later. Two dynos then sent five requests inside a four-per-window limit as the
-- provider measured it (tests/e2e/test_fair_share_fleet.py). Now a request counts from its grant
-- while it runs, and for window_seconds after its answer (release_provider_slot), or after its
-- lease expired when its worker died. Whatever the delay, a request the provider counts in any
-- window of that length was granted while fewer than max_requests others could fall in it.
--
-- Signatures and meanings are unchanged (acquire grants a slot or says how long to wait; release
-- frees it), so workers of the previous release call the same functions during a rolling deploy.
-- Their rows (lease_id null, at = the grant) keep counting from the grant, as before.

alter table audio_queue.provider_requests add column lease_id uuid;
comment on column audio_queue.provider_requests.lease_id is
    'The slot of a request still running (it counts in every window until it ends); null once answered.';
comment on column audio_queue.provider_requests.at is
    'When the request was answered (its slot released or its lease expired); the grant while running.';
create index provider_requests_lease_idx on audio_queue.provider_requests (lease_id)
    where lease_id is not null;

create or replace function audio_queue.acquire_provider_slot(
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
    v_now     timestamptz;
    v_n       bigint;
    v_running bigint;
    v_first   timestamptz;
    v_wait    double precision := 0;
    v_lease   uuid;
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
    -- The clock after the lock: now() is when the statement began, before any wait for it.
    v_now := clock_timestamp();

    insert into audio_queue.provider_limits as l (provider, account, max_concurrent, max_requests, window_seconds)
    values (p_provider, p_account, p_max_concurrent, p_max_requests, p_window_seconds)
    on conflict (provider, account) do update
       set max_concurrent = excluded.max_concurrent, max_requests = excluded.max_requests,
           window_seconds = excluded.window_seconds, updated_at = now()
     where (l.max_concurrent, l.max_requests, l.window_seconds)
           is distinct from (excluded.max_concurrent, excluded.max_requests, excluded.window_seconds);

    -- Dead holders' slots free themselves; their requests ended, at the latest, when the lease did.
    with gone as (
        delete from audio_queue.provider_leases l
         where l.provider = p_provider and l.account = p_account and l.expires_at <= v_now
        returning l.id, l.expires_at
    )
    update audio_queue.provider_requests r
       set at = g.expires_at, lease_id = null
      from gone g
     where r.lease_id = g.id;
    -- A running request whose slot vanished otherwise (an operator deleted it) ends now.
    update audio_queue.provider_requests r
       set at = v_now, lease_id = null
     where r.provider = p_provider and r.account = p_account and r.lease_id is not null
       and not exists (select from audio_queue.provider_leases l where l.id = r.lease_id);

    if p_max_concurrent is not null then
        select count(*), min(l.expires_at) into v_n, v_first
          from audio_queue.provider_leases l
         where l.provider = p_provider and l.account = p_account;
        if v_n >= p_max_concurrent then
            -- A release usually comes sooner than the earliest expiry: ask again soon.
            v_wait := least(0.25, greatest(0.01, extract(epoch from v_first - v_now)));
        end if;
    end if;

    if p_max_requests is not null then
        delete from audio_queue.provider_requests r
         where r.provider = p_provider and r.account = p_account and r.lease_id is null
           and r.at <= v_now - make_interval(secs => p_window_seconds);
        select count(*), count(*) filter (where r.lease_id is not null),
               min(r.at) filter (where r.lease_id is null)
          into v_n, v_running, v_first
          from audio_queue.provider_requests r
         where r.provider = p_provider and r.account = p_account;
        if v_n >= p_max_requests then
            if v_running >= p_max_requests or v_first is null then
                -- Every counted request still runs: the first answer frees the window's oldest.
                v_wait := greatest(v_wait, 0.25, p_window_seconds / 20);
                v_wait := least(v_wait, p_window_seconds);
            else
                v_wait := greatest(v_wait, 0.01,
                                   extract(epoch from v_first + make_interval(secs => p_window_seconds) - v_now));
            end if;
        end if;
    end if;

    if v_wait > 0 then
        return query select null::uuid, v_wait;
        return;
    end if;

    insert into audio_queue.provider_leases (provider, account, job_id, worker_id, expires_at)
    values (p_provider, p_account, p_job_id, p_worker_id, v_now + make_interval(secs => p_lease_seconds))
    returning id into v_lease;
    if p_max_requests is not null then
        insert into audio_queue.provider_requests (provider, account, at, lease_id)
        values (p_provider, p_account, v_now, v_lease);
    end if;
    return query select v_lease, 0::double precision;
end;
$$;

-- The request has its answer: free the slot and start its window from now.
create or replace function audio_queue.release_provider_slot(p_lease_id uuid)
returns boolean
language plpgsql security definer set search_path = '' as $$
begin
    update audio_queue.provider_requests r
       set at = clock_timestamp(), lease_id = null
     where r.lease_id = p_lease_id;
    delete from audio_queue.provider_leases l where l.id = p_lease_id;
    return found;
end;
$$;

-- Requests in the window now include those still running.
create or replace function audio_queue.provider_slot_stats()
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
               and (r.lease_id is not null or r.at > now() - make_interval(secs => l.window_seconds))),
           l.max_requests, l.window_seconds
      from audio_queue.provider_limits l
     order by l.provider, l.account;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (14, '0014_provider_window_until_answer')
on conflict (version) do nothing;
