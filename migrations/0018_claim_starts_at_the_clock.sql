-- 0018: a claimed job's started_at (and its lease) is the clock when the claim took it, not the
-- claiming transaction's start. Under max_running_per_user a claim can wait on the cap's lock while
-- one of the user's running jobs completes; it then takes the freed place, but now() dated its job
-- before that completion, so started_at/completed_at showed the user over the cap (the fleet test
-- saw 3 overlapping jobs under a cap of 2). Same picks, same order, same signature as 0016.

create or replace function audio_queue.get_next_pending_job(
    p_worker_id     text    default null,
    p_limit         integer default 1,
    p_lease_seconds integer default 600
) returns setof audio_queue.jobs
language plpgsql set search_path = '' as $$
declare
    v_settings audio_queue.settings;
    v_fair     boolean;
    v_cap      integer;
    v_first    uuid;
    v_groups   uuid[];
    v_ids      uuid[];
    v_locked   uuid[];
    v_started  timestamptz;
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
    v_settings := audio_queue.queue_settings();
    v_fair := coalesce(v_settings.fair_claiming, true);
    v_cap := v_settings.max_running_per_user;

    if v_fair and v_cap is null then
        -- The group of the job the plain order would give first. No other group waiting: fairness
        -- has nothing to reorder (one group's turns follow the plain order), claim in that order.
        select coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) into v_first
          from audio_queue.jobs j
         where j.status in ('pending', 'queued')
           and j.run_at <= now()
         order by j.priority desc, j.run_at, j.id
         limit 1;
        if v_first is null then
            return;  -- nothing due
        end if;
        -- Written as ORDER BY .. LIMIT 1 probes: as EXISTS the planner picks a sequential scan.
        v_fair := (select coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid)
                     from audio_queue.jobs j
                    where j.status in ('pending', 'queued')
                      and coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) > v_first
                    order by coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid)
                    limit 1) is not null
               or (select coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid)
                     from audio_queue.jobs j
                    where j.status in ('pending', 'queued')
                      and coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) < v_first
                    order by coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) desc
                    limit 1) is not null;
    end if;

    if v_fair or v_cap is not null then
        -- The groups that have waiting jobs: a skip scan of jobs_fair_claim_idx, one probe each
        -- (at most 1000; see README "Fair share").
        with recursive g(grp) as (
            (select coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) from audio_queue.jobs j
              where j.status in ('pending', 'queued')
              order by coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) limit 1)
            union all
            select (select coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) from audio_queue.jobs j
                     where j.status in ('pending', 'queued')
                       and coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) > g.grp
                     order by coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) limit 1)
              from g where g.grp is not null
        )
        select array_agg(grp) into v_groups from (select grp from g where grp is not null limit 1000) s;
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
            select coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) as grp, count(*) as n
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
                   where coalesce(j.user_id, '00000000-0000-0000-0000-000000000000'::uuid) = w.grp_key
                     and j.status in ('pending', 'queued')
                     and j.run_at <= now()
                   order by j.priority desc, j.run_at, j.id
                   limit case when v_cap is null then p_limit
                              else least(p_limit, greatest(v_cap - coalesce(r.n, 0), 0)) end
              ) h
        )
        select array_agg(id order by priority desc, turn, run_at, id) into v_ids from heads;

        -- In the ranking's order, stopping at p_limit locked rows (one pkey probe each).
        select array_agg(s.id) into v_locked from (
            select j.id
              from unnest(v_ids) with ordinality as c(id, ord)
              join audio_queue.jobs j on j.id = c.id
             where j.status in ('pending', 'queued')
             order by c.ord
             limit p_limit
               for update of j skip locked
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

    -- The rows are locked by this transaction: hand them to the caller. Their start is the clock
    -- now, not now(): this statement may have waited on the cap's lock, or run in a transaction
    -- that began before the job whose place it took ended, and a start dated before that end would
    -- show the user running more jobs than the cap allows.
    v_started := clock_timestamp();
    return query
    update audio_queue.jobs j
       set status           = 'processing',
           attempts         = j.attempts + 1,
           locked_by        = coalesce(p_worker_id, 'anonymous'),
           lease_id         = gen_random_uuid(),
           lease_seconds    = p_lease_seconds,
           heartbeat_at     = v_started,
           lease_expires_at = v_started + make_interval(secs => p_lease_seconds),
           started_at       = v_started,
           progress         = 0,
           stage            = null
     where j.id = any(v_locked)
    returning j.*;
end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (18, '0018_claim_starts_at_the_clock')
on conflict (version) do nothing;
