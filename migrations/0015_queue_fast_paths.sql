-- 0015: the claim and the completion cost what they did before fair claiming and the dashboard
-- (issue 14's throughput target). Same signatures and the same meaning for every caller of the
-- previous releases; only the work per call changes.
--
-- 1. queue_settings() is plpgsql: a SQL function that cannot be inlined (security definer) is
--    parsed and planned again on every call (about 50 us here, per claim); plpgsql keeps its plan.
-- 2. get_next_pending_job: fair claiming only changes the order when two or more user groups have
--    waiting jobs. The claim now looks at the group of the first due job in the plain order and
--    asks the fair-claim index whether any other group waits (two index descents), instead of
--    walking every group first; with one group (or no cap and fairness off) it claims in the plain
--    order at once, as 0009 did after its walk. The walk and the fair ranking are 0009's, with the
--    nil uuid written as a literal: as a plpgsql constant it was a parameter that the fair-claim
--    index's expression never matched, so every claim planned its queries again (custom plans).
-- 3. complete_jobs_v2 completes the whole batch in one UPDATE (rows locked in id order first, as
--    before) instead of three nested function calls per job; answers and effects are
--    complete_job_v2's, element by element.

-- 1 ---------------------------------------------------------------------------------------------

create or replace function audio_queue.queue_settings() returns audio_queue.settings
language plpgsql stable security definer set search_path = '' as $$
declare
    v audio_queue.settings;
begin
    select * into v from audio_queue.settings limit 1;
    return v;
end;
$$;

-- 2 ---------------------------------------------------------------------------------------------

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

-- 3 ---------------------------------------------------------------------------------------------

-- Each element answers exactly what complete_job_v2(id, result, null, lease) answers when the calls
-- run one after another in id order: 'completed' (ended now, or a repeat of a completion that took
-- effect), 'cancelled' (a cancel was requested: ended as cancelled, or a repeat of that) or 'lost'.
-- The rows are locked in id order first, so concurrent batches never wait on each other in a cycle.
create or replace function audio_queue.complete_jobs_v2(
    p_job_ids   uuid[],
    p_lease_ids uuid[],
    p_results   jsonb[]
) returns text[]
language plpgsql set search_path = '' as $$
declare
    v_n   integer := coalesce(cardinality(p_job_ids), 0);
    v_out text[];
begin
    if v_n <> coalesce(cardinality(p_lease_ids), 0) or v_n <> coalesce(cardinality(p_results), 0) then
        raise exception 'complete_jobs_v2: p_job_ids, p_lease_ids and p_results must have the same length'
            using errcode = '22023';
    end if;
    if v_n = 0 then
        return '{}'::text[];
    end if;
    if array_position(p_lease_ids, null) is not null then
        raise exception 'complete_job_v2: p_lease_id is required (complete_job takes calls without one)'
            using errcode = '22023';
    end if;

    perform 1 from audio_queue.jobs j where j.id = any(p_job_ids) order by j.id for update;

    -- Every CTE reads the rows as they were before the update: the answers come from that state.
    with input as (
        select t.id, t.ord, p_lease_ids[t.ord] as lease, p_results[t.ord] as result
          from unnest(p_job_ids) with ordinality as t(id, ord)
    ), cur as (
        select i.ord, i.id, i.lease, i.result, j.status, j.lease_id, j.cancel_requested
          from input i
          left join audio_queue.jobs j on j.id = i.id
    ), ending as (
        -- A job listed twice under its lease ends once, with its first result in id order.
        select distinct on (c.id) c.id, c.result, c.cancel_requested
          from cur c
         where c.status = 'processing' and c.lease_id = c.lease
         order by c.id, c.ord
    ), ended as (
        update audio_queue.jobs j
           set status           = case when e.cancel_requested then 'cancelled' else 'completed' end,
               result           = case when e.cancel_requested then j.result else e.result end,
               wav_url          = case when e.cancel_requested then j.wav_url
                                       else coalesce(e.result ->> 'wav_url', j.wav_url) end,
               mp3_url          = case when e.cancel_requested then j.mp3_url
                                       else coalesce(e.result ->> 'mp3_url', j.mp3_url) end,
               result_url       = case when e.cancel_requested then j.result_url
                                       else coalesce(e.result ->> 'mp3_url', e.result ->> 'result_url', j.result_url) end,
               progress         = case when e.cancel_requested then j.progress else 100 end,
               error_message    = case when e.cancel_requested then 'cancelled while processing' end,
               completed_at     = now(),
               locked_by        = null,
               lease_expires_at = null
          from ending e
         where j.id = e.id
        returning j.id
    )
    select array_agg(case
               when c.lease_id is distinct from c.lease then 'lost'
               when c.status = 'processing' then case when c.cancel_requested then 'cancelled' else 'completed' end
               when c.status in ('completed', 'cancelled') then c.status
               else 'lost' end
             order by c.ord)
      into v_out
      from cur c;  -- (the update in "ended" runs whether or not its rows are read)
    return v_out;
end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (15, '0015_queue_fast_paths')
on conflict (version) do nothing;
