-- 0010: what the operator dashboard (`python -m worker web`) reads, as functions so the page, psql
-- and any other tool share one definition. The dashboard repairs the queue only through the
-- runbook's functions (cancel_job, requeue_jobs, reset_stuck_jobs, purge_finished_jobs).
--
-- * audio_queue.job_events: a job's history (each claim, retry, rescue, cancel, requeue, end),
--   one row per change of status, written by a trigger whoever made the change (a worker, the
--   runbook, an app's UPDATE). Who did it is the session's `audio_queue.actor` setting when one
--   is set (the dashboard sets it to the signed-in operator), else the worker's id or null.
--   Rows go with their job (on delete cascade). `update audio_queue.settings set job_events =
--   false` stops the writing (the trigger then returns at once).
-- * Indexes for the dashboard's reads on a table of millions of finished jobs.

alter table audio_queue.settings add column job_events boolean not null default true;

create table audio_queue.job_events (
    id      bigint generated always as identity primary key,
    job_id  uuid not null references audio_queue.jobs (id) on delete cascade,
    at      timestamptz not null default now(),
    kind    text not null,  -- claimed|completed|failed|retry|rescued|released|cancel_requested|cancelled|requeued
    status  text not null,  -- the job's status after the change
    attempt integer not null,
    worker  text,           -- the worker that held the job (claims, rescues), when known
    actor   text,           -- who made the change when it was not a worker (audio_queue.actor)
    detail  text            -- the error, the rescue note, the cancel reason
);
alter table audio_queue.job_events enable row level security;

create index job_events_job_idx on audio_queue.job_events (job_id, at, id);
-- Workers seen recently: claims by time.
create index job_events_claims_idx on audio_queue.job_events (at) where kind = 'claimed';

create function audio_queue.record_job_event() returns trigger
language plpgsql set search_path = '' as $$
declare
    v_kind   text;
    v_detail text;
begin
    if not (select s.job_events from audio_queue.settings s) then
        return null;
    end if;
    if new.status = 'processing' and old.status is distinct from 'processing' then
        v_kind := 'claimed';
    elsif new.status = 'processing' and new.cancel_requested and not old.cancel_requested then
        v_kind := 'cancel_requested';
    elsif new.status = 'processing' then
        return null;
    elsif new.rescue_count > old.rescue_count then
        v_kind := 'rescued';
        v_detail := coalesce(new.error_message, new.last_error);
    elsif new.status in ('pending', 'queued') and old.status in ('failed', 'cancelled', 'completed') then
        v_kind := 'requeued';
    elsif new.status in ('pending', 'queued') and old.status = 'processing' then
        v_kind := case when new.last_error is distinct from old.last_error then 'retry' else 'released' end;
        v_detail := case when v_kind = 'retry' then new.last_error end;
    elsif new.status in ('completed', 'failed', 'cancelled') then
        v_kind := new.status;
        v_detail := new.error_message;
    else
        return null;
    end if;
    insert into audio_queue.job_events (job_id, kind, status, attempt, worker, actor, detail)
    values (new.id, v_kind, new.status, new.attempts,
            coalesce(new.locked_by, old.locked_by),
            nullif(current_setting('audio_queue.actor', true), ''),
            left(v_detail, 2000));
    return null;
end;
$$;

-- The WHEN clause keeps heartbeats and progress updates away from the function.
create trigger jobs_record_event after update on audio_queue.jobs
    for each row
    when (old.status is distinct from new.status
          or old.cancel_requested is distinct from new.cancel_requested)
    execute function audio_queue.record_job_event();

-- The jobs list, newest first, page by page (keyset on created_at, id), with or without a status.
create index jobs_created_idx on audio_queue.jobs (created_at, id);
create index jobs_status_created_idx on audio_queue.jobs (status, created_at, id);
-- (One user's jobs: jobs_user_created_idx of 0008.)
-- Throughput per minute and counts of finished jobs without touching the table (index-only).
create index jobs_finished_status_idx on audio_queue.jobs (completed_at, status)
    where status in ('completed', 'failed', 'cancelled');


-- The overview's figures in one row, cheap on a table of millions: live counts from the small
-- partial indexes; finished jobs counted exactly over the last 24 hours (index-only on
-- jobs_finished_status_idx) and estimated over all time from the planner's statistics (an exact
-- count(*) of a million rows costs hundreds of milliseconds).
create function audio_queue.dashboard_overview()
returns table (
    pending            bigint,
    scheduled          bigint,
    processing         bigint,
    stuck              bigint,
    completed_24h      bigint,
    failed_24h         bigint,
    cancelled_24h      bigint,
    oldest_waiting_s   double precision,
    next_scheduled_at  timestamptz,
    total_estimate     bigint
)
language sql stable set search_path = '' as $$
    with live as (
        select
            count(*) filter (where status in ('pending', 'queued') and run_at <= now()) as pending,
            count(*) filter (where status in ('pending', 'queued') and run_at > now()) as scheduled,
            count(*) filter (where status = 'processing') as processing,
            count(*) filter (where status = 'processing' and lease_expires_at < now()) as stuck,
            extract(epoch from now() - min(run_at) filter (
                where status in ('pending', 'queued') and run_at <= now()))::float8 as oldest,
            min(run_at) filter (where status in ('pending', 'queued') and run_at > now()) as next_at
          from audio_queue.jobs
         where status in ('pending', 'queued', 'processing')
    ), ended as (
        select count(*) filter (where status = 'completed') as completed,
               count(*) filter (where status = 'failed') as failed,
               count(*) filter (where status = 'cancelled') as cancelled
          from audio_queue.jobs
         where status in ('completed', 'failed', 'cancelled')
           and completed_at > now() - interval '24 hours'
    )
    select live.pending, live.scheduled, live.processing, live.stuck,
           ended.completed, ended.failed, ended.cancelled,
           coalesce(live.oldest, 0), live.next_at,
           (select greatest(c.reltuples, 0)::bigint from pg_catalog.pg_class c
             where c.oid = 'audio_queue.jobs'::regclass)
      from live, ended;
$$;


-- Jobs that ended per minute over the last p_minutes (at most 24 h), one row per minute with
-- ended jobs, oldest first.
create function audio_queue.dashboard_throughput(p_minutes integer default 180)
returns table (minute timestamptz, completed bigint, failed bigint, cancelled bigint)
language sql stable set search_path = '' as $$
    select date_trunc('minute', completed_at),
           count(*) filter (where status = 'completed'),
           count(*) filter (where status = 'failed'),
           count(*) filter (where status = 'cancelled')
      from audio_queue.jobs
     where status in ('completed', 'failed', 'cancelled')
       and completed_at > date_trunc('minute', now())
                          - make_interval(mins => least(greatest(p_minutes, 1), 1440) - 1)
     group by 1
     order by 1;
$$;


-- Running jobs with their progress, stage and heartbeat age.
create function audio_queue.dashboard_running(p_limit integer default 100)
returns table (
    id uuid, progress integer, stage text, locked_by text, attempts integer, max_attempts integer,
    started_at timestamptz, heartbeat_age_s double precision, lease_left_s double precision,
    cancel_requested boolean, track_id uuid, user_id uuid
)
language sql stable set search_path = '' as $$
    select j.id, j.progress, j.stage, j.locked_by, j.attempts, j.max_attempts, j.started_at,
           extract(epoch from now() - j.heartbeat_at)::float8,
           extract(epoch from j.lease_expires_at - now())::float8,
           j.cancel_requested, j.track_id, j.user_id
      from audio_queue.jobs j
     where j.status = 'processing'
     order by j.started_at, j.id
     limit least(greatest(p_limit, 1), 1000);
$$;


-- Workers seen: those holding jobs now (with the age of their freshest heartbeat) and those that
-- claimed a job within p_window.
create function audio_queue.dashboard_workers(p_window interval default '1 hour')
returns table (worker text, running bigint, heartbeat_age_s double precision, last_claim_at timestamptz)
language sql stable set search_path = '' as $$
    with holding as (
        select j.locked_by as worker, count(*) as running,
               extract(epoch from now() - max(j.heartbeat_at))::float8 as heartbeat_age_s
          from audio_queue.jobs j
         where j.status = 'processing' and j.locked_by is not null
         group by j.locked_by
    ), claims as (
        select e.worker, max(e.at) as last_claim_at
          from audio_queue.job_events e
         where e.kind = 'claimed' and e.at > now() - p_window and e.worker is not null
         group by e.worker
    )
    select coalesce(h.worker, c.worker), coalesce(h.running, 0), h.heartbeat_age_s, c.last_claim_at
      from holding h full join claims c on c.worker = h.worker
     order by coalesce(h.running, 0) desc, c.last_claim_at desc nulls last, 1;
$$;


-- One page of the jobs list, newest first. Every filter is optional; the next page starts after
-- (p_after_created, p_after_id), the last row of this one. p_error matches error_message or
-- last_error, case-insensitively, as plain text (no wildcards); it reads the rows themselves (no
-- index can hold error texts of any length), about a second per million jobs: narrow it by date.
create function audio_queue.dashboard_jobs(
    p_status        text        default null,
    p_user_id       uuid        default null,
    p_track_id      uuid        default null,
    p_created_from  timestamptz default null,
    p_created_to    timestamptz default null,
    p_error         text        default null,
    p_after_created timestamptz default null,
    p_after_id      uuid        default null,
    p_limit         integer     default 50
)
returns table (
    id uuid, status text, created_at timestamptz, completed_at timestamptz, attempts integer,
    max_attempts integer, progress integer, stage text, track_id uuid, user_id uuid, error text
)
language plpgsql stable set search_path = '' as $$
declare
    v_where text := 'true';
    v_pattern text;
begin
    -- Built from fixed fragments only; values are passed as parameters ($1..$8), so each call gets
    -- a plan for the filters it has (the right index) and nothing a user typed becomes SQL.
    if p_status is not null then
        v_where := v_where || ' and j.status = $1';
    end if;
    if p_user_id is not null then
        v_where := v_where || ' and j.user_id = $2';
    end if;
    if p_track_id is not null then
        v_where := v_where || ' and j.track_id = $3';
    end if;
    if p_created_from is not null then
        v_where := v_where || ' and j.created_at >= $4';
    end if;
    if p_created_to is not null then
        v_where := v_where || ' and j.created_at < $5';
    end if;
    if nullif(p_error, '') is not null then
        v_pattern := '%' || replace(replace(replace(p_error, '\', '\\'), '%', '\%'), '_', '\_') || '%';
        v_where := v_where || ' and (j.error_message ilike $6 or j.last_error ilike $6)';
    end if;
    if p_after_created is not null and p_after_id is not null then
        v_where := v_where || ' and (j.created_at, j.id) < ($7, $8)';
    end if;
    return query execute
        'select j.id, j.status, j.created_at, j.completed_at, j.attempts, j.max_attempts, j.progress,
                j.stage, j.track_id, j.user_id, coalesce(j.error_message, j.last_error)
           from audio_queue.jobs j
          where ' || v_where || '
          order by j.created_at desc, j.id desc
          limit ' || least(greatest(coalesce(p_limit, 50), 1), 500)
        using p_status, p_user_id, p_track_id, p_created_from, p_created_to, v_pattern,
              p_after_created, p_after_id;
end;
$$;


-- One job's history, oldest first.
create function audio_queue.dashboard_job_events(p_job_id uuid)
returns setof audio_queue.job_events
language sql stable set search_path = '' as $$
    select * from audio_queue.job_events e where e.job_id = p_job_id order by e.at, e.id;
$$;


-- What an autoscaler reads for the worker process type: jobs that want a worker now (due waiting
-- plus running, so busy workers are not scaled away) and how long the oldest due job has waited.
create function audio_queue.autoscale_signal()
returns table (job_queue_size bigint, job_queue_latency_s double precision)
language sql stable set search_path = '' as $$
    select count(*) filter (where status = 'processing' or run_at <= now()),
           coalesce(extract(epoch from now() - min(run_at) filter (
               where status in ('pending', 'queued') and run_at <= now()))::float8, 0)
      from audio_queue.jobs
     where status in ('pending', 'queued', 'processing');
$$;

call audio_queue.apply_privileges();

do $$
begin
    if exists (select 1 from pg_roles where rolname = 'service_role') then
        grant select on audio_queue.job_events to service_role;
    end if;
end;
$$;

insert into audio_queue.schema_migrations (version, name) values (10, '0010_dashboard')
on conflict (version) do nothing;
