-- 0001: the queue core. Schema audio_queue, the jobs table and the versioned queue functions.
--
-- Apply with `python -m worker migrate`, or by hand:
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -1 -f migrations/0001_queue_core.sql
-- Never edit this file once landed: add migrations/0002_*.sql instead.

create schema if not exists audio_queue;

-- Which migrations are applied. The runner fills in checksum; a psql-applied file records itself
-- (last statement of each migration) and the runner adopts its checksum on its next run.
create table if not exists audio_queue.schema_migrations (
    version    integer primary key,
    name       text not null,
    checksum   text,
    applied_at timestamptz not null default now()
);

-- Tunables the functions read. One row; a DBA changes them with a plain UPDATE.
create table audio_queue.settings (
    singleton          boolean primary key default true check (singleton),
    retry_base_seconds double precision not null default 10 check (retry_base_seconds > 0),
    retry_cap_seconds  double precision not null default 600 check (retry_cap_seconds > 0),
    max_rescues        integer not null default 3 check (max_rescues >= 0)
);
insert into audio_queue.settings default values;

create table audio_queue.jobs (
    id               uuid primary key default gen_random_uuid(),
    status           text not null default 'pending'
                     check (status in ('pending', 'queued', 'processing', 'completed', 'failed', 'cancelled')),
    payload          jsonb not null default '{}'::jsonb,
    priority         integer not null default 0,
    run_at           timestamptz not null default now(),
    attempts         integer not null default 0 check (attempts >= 0),
    max_attempts     integer not null default 3 check (max_attempts between 1 and 100),
    rescue_count     integer not null default 0,
    locked_by        text,
    lease_id         uuid,
    lease_seconds    integer,
    heartbeat_at     timestamptz,
    lease_expires_at timestamptz,
    cancel_requested boolean not null default false,
    progress         integer not null default 0 check (progress between 0 and 100),
    stage            text,
    result           jsonb,
    wav_url          text,
    mp3_url          text,
    result_url       text,
    error_message    text,
    last_error       text,
    idempotency_key  text,
    track_id         uuid,
    user_id          uuid,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    started_at       timestamptz,
    completed_at     timestamptz
);

comment on table audio_queue.jobs is
    'Audio render jobs. Change rows through the audio_queue functions; see README "Job lifecycle".';
comment on column audio_queue.jobs.status is
    'pending|queued (alias of pending) -> processing -> completed|failed|cancelled';
comment on column audio_queue.jobs.lease_id is
    'Fencing token of the current claim; complete_job/update_job_progress with another lease id are refused.';
comment on column audio_queue.jobs.result_url is 'Same as mp3_url, kept for old clients.';

-- Claimable rows, in claim order. Small: only waiting jobs are in it.
create index jobs_claimable_idx on audio_queue.jobs (priority desc, run_at, id)
    where status in ('pending', 'queued');
-- Rows the rescuer looks at.
create index jobs_processing_idx on audio_queue.jobs (lease_expires_at)
    where status = 'processing';
-- One live job per idempotency key.
create unique index jobs_idempotency_live_idx on audio_queue.jobs (idempotency_key)
    where idempotency_key is not null and status in ('pending', 'queued', 'processing');
create index jobs_track_id_idx on audio_queue.jobs (track_id) where track_id is not null;
create index jobs_finished_idx on audio_queue.jobs (completed_at)
    where status in ('completed', 'failed', 'cancelled');

alter table audio_queue.jobs enable row level security;
alter table audio_queue.settings enable row level security;

create function audio_queue.touch_updated_at() returns trigger
language plpgsql set search_path = '' as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

create trigger jobs_touch_updated_at before update on audio_queue.jobs
    for each row execute function audio_queue.touch_updated_at();

-- Wake idle workers once per inserting statement, whether the row came from enqueue_job or an
-- app's plain INSERT.
create function audio_queue.notify_new_jobs() returns trigger
language plpgsql set search_path = '' as $$
begin
    perform pg_notify('audio_queue_jobs', '');
    return null;
end;
$$;

create trigger jobs_notify_insert after insert on audio_queue.jobs
    for each statement execute function audio_queue.notify_new_jobs();


create function audio_queue.enqueue_job(
    p_payload         jsonb,
    p_priority        integer     default 0,
    p_run_at          timestamptz default now(),
    p_idempotency_key text        default null,
    p_max_attempts    integer     default 3,
    p_track_id        uuid        default null,
    p_user_id         uuid        default null
) returns uuid
language plpgsql set search_path = '' as $$
declare
    v_id uuid;
begin
    if p_payload is null or jsonb_typeof(p_payload) <> 'object' then
        raise exception 'enqueue_job: p_payload must be a JSON object'
            using errcode = '22023';
    end if;
    if p_max_attempts is null or p_max_attempts not between 1 and 100 then
        raise exception 'enqueue_job: p_max_attempts must be between 1 and 100 (got %)', p_max_attempts
            using errcode = '22023';
    end if;

    -- Loop: a concurrent caller with the same key may insert, or its job may finish, between steps.
    for i in 1..3 loop
        if p_idempotency_key is not null then
            select j.id into v_id from audio_queue.jobs j
             where j.idempotency_key = p_idempotency_key
               and j.status in ('pending', 'queued', 'processing');
            if found then
                return v_id;
            end if;
        end if;

        insert into audio_queue.jobs
            (payload, priority, run_at, idempotency_key, max_attempts, track_id, user_id)
        values
            (p_payload, coalesce(p_priority, 0), coalesce(p_run_at, now()), p_idempotency_key,
             p_max_attempts, p_track_id, p_user_id)
        on conflict (idempotency_key)
            where idempotency_key is not null and status in ('pending', 'queued', 'processing')
            do nothing
        returning id into v_id;

        if v_id is not null then
            return v_id;
        end if;
    end loop;
    raise exception 'enqueue_job: could not enqueue under idempotency key % (contended)', p_idempotency_key
        using errcode = '40001';
end;
$$;


create function audio_queue.get_next_pending_job(
    p_worker_id     text    default null,
    p_limit         integer default 1,
    p_lease_seconds integer default 600
) returns setof audio_queue.jobs
language plpgsql set search_path = '' as $$
begin
    if p_limit is null or p_limit not between 1 and 1000 then
        raise exception 'get_next_pending_job: p_limit must be between 1 and 1000 (got %)', p_limit
            using errcode = '22023';
    end if;
    if p_lease_seconds is null or p_lease_seconds not between 1 and 86400 then
        raise exception 'get_next_pending_job: p_lease_seconds must be between 1 and 86400 (got %)', p_lease_seconds
            using errcode = '22023';
    end if;

    return query
    with picked as (
        select j.id
          from audio_queue.jobs j
         where j.status in ('pending', 'queued')
           and j.run_at <= now()
         order by j.priority desc, j.run_at, j.id
         limit p_limit
           for update skip locked
    )
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
      from picked
     where j.id = picked.id
    returning j.*;
end;
$$;


create function audio_queue.update_job_progress(
    p_job_id   uuid,
    p_progress integer,
    p_stage    text default null,
    p_lease_id uuid default null
) returns boolean
language plpgsql set search_path = '' as $$
declare
    v_cancel boolean;
begin
    update audio_queue.jobs j
       set progress         = greatest(0, least(100, coalesce(p_progress, j.progress))),
           stage            = coalesce(p_stage, j.stage),
           heartbeat_at     = now(),
           lease_expires_at = now() + make_interval(secs => coalesce(j.lease_seconds, 600))
     where j.id = p_job_id
       and j.status = 'processing'
       and (p_lease_id is null or j.lease_id = p_lease_id)
    returning j.cancel_requested into v_cancel;

    return found and not v_cancel;
end;
$$;


create function audio_queue.complete_job(
    p_job_id    uuid,
    p_result    jsonb,
    p_error     text,
    p_lease_id  uuid    default null,
    p_retryable boolean default false
) returns boolean
language plpgsql set search_path = '' as $$
declare
    v_job      audio_queue.jobs;
    v_settings audio_queue.settings;
    v_delay    double precision;
begin
    select * into v_job from audio_queue.jobs j
     where j.id = p_job_id
       for update;
    if not found then
        return false;
    end if;

    if v_job.status <> 'processing' or (p_lease_id is not null and v_job.lease_id is distinct from p_lease_id) then
        -- Not ours (any more). A repeat of a call that already took effect (the reply was lost with
        -- the connection) reports success again, so the caller does not throw away finished work.
        return p_lease_id is not null
           and v_job.lease_id = p_lease_id
           and ((p_error is null and v_job.status = 'completed')
                or (p_error is not null and v_job.status in ('failed', 'pending', 'queued')));
    end if;

    if v_job.cancel_requested then
        update audio_queue.jobs
           set status = 'cancelled', completed_at = now(), locked_by = null, lease_expires_at = null,
               error_message = 'cancelled while processing'
         where id = p_job_id;
        return false;
    end if;

    if p_error is null then
        update audio_queue.jobs
           set status           = 'completed',
               result           = p_result,
               wav_url          = coalesce(p_result ->> 'wav_url', wav_url),
               mp3_url          = coalesce(p_result ->> 'mp3_url', mp3_url),
               result_url       = coalesce(p_result ->> 'mp3_url', p_result ->> 'result_url', result_url),
               progress         = 100,
               error_message    = null,
               completed_at     = now(),
               locked_by        = null,
               lease_expires_at = null
         where id = p_job_id;
        return true;
    end if;

    if coalesce(p_retryable, false) and v_job.attempts < v_job.max_attempts then
        select * into v_settings from audio_queue.settings;
        -- Exponential backoff, capped, with "equal jitter": half fixed, half random.
        v_delay := least(v_settings.retry_cap_seconds,
                         v_settings.retry_base_seconds * power(2, greatest(v_job.attempts - 1, 0)));
        v_delay := v_delay / 2 + random() * v_delay / 2;
        update audio_queue.jobs
           set status           = 'pending',
               run_at           = now() + make_interval(secs => v_delay),
               last_error       = p_error,
               result           = coalesce(p_result, result),
               locked_by        = null,
               lease_expires_at = null
         where id = p_job_id;
        return true;
    end if;

    update audio_queue.jobs
       set status           = 'failed',
           error_message    = p_error,
           last_error       = p_error,
           result           = coalesce(p_result, result),
           completed_at     = now(),
           locked_by        = null,
           lease_expires_at = null
     where id = p_job_id;
    return true;
end;
$$;


create function audio_queue.release_job(p_job_id uuid, p_lease_id uuid) returns boolean
language plpgsql set search_path = '' as $$
declare
    v_status text;
begin
    update audio_queue.jobs j
       set status           = case when j.cancel_requested then 'cancelled' else 'pending' end,
           attempts         = case when j.cancel_requested then j.attempts else greatest(j.attempts - 1, 0) end,
           completed_at     = case when j.cancel_requested then now() end,
           error_message    = case when j.cancel_requested then 'cancelled while processing' end,
           run_at           = now(),
           locked_by        = null,
           lease_id         = null,
           lease_expires_at = null
     where j.id = p_job_id
       and j.status = 'processing'
       and j.lease_id = p_lease_id
    returning j.status into v_status;

    if v_status = 'pending' then
        perform pg_notify('audio_queue_jobs', '');
    end if;
    return v_status is not null;
end;
$$;


create function audio_queue.cancel_job(p_job_id uuid) returns boolean
language plpgsql set search_path = '' as $$
begin
    update audio_queue.jobs
       set status = 'cancelled', completed_at = now(), error_message = 'cancelled before it started'
     where id = p_job_id and status in ('pending', 'queued');
    if found then
        return true;
    end if;
    update audio_queue.jobs
       set cancel_requested = true
     where id = p_job_id and status = 'processing';
    return found;
end;
$$;


create function audio_queue.reset_stuck_jobs(p_stale_after interval default '10 minutes')
returns integer
language plpgsql set search_path = '' as $$
declare
    v_settings audio_queue.settings;
    v_count    integer;
    v_requeued integer;
begin
    select * into v_settings from audio_queue.settings;

    with stuck as (
        select j.id
          from audio_queue.jobs j
         where j.status = 'processing'
           and (j.lease_expires_at < now() or j.heartbeat_at < now() - p_stale_after)
           for update skip locked
    ), fixed as (
        update audio_queue.jobs j
           set status = case
                   when j.cancel_requested then 'cancelled'
                   when j.rescue_count >= v_settings.max_rescues or j.attempts >= j.max_attempts then 'failed'
                   else 'pending' end,
               error_message = case
                   when j.cancel_requested then 'cancelled while processing'
                   when j.rescue_count >= v_settings.max_rescues then format(
                       'worker stopped responding %s times while running this job (last: %s); gave up after the rescue limit of %s',
                       j.rescue_count + 1, coalesce(j.locked_by, 'unknown'), v_settings.max_rescues)
                   when j.attempts >= j.max_attempts then format(
                       'worker stopped responding on the last of %s attempts (last: %s)',
                       j.max_attempts, coalesce(j.locked_by, 'unknown'))
                   end,
               completed_at = case
                   when j.cancel_requested or j.rescue_count >= v_settings.max_rescues
                        or j.attempts >= j.max_attempts then now() end,
               rescue_count = j.rescue_count + 1,
               last_error = format('rescued at %s: worker %s stopped heartbeating (lease expired %s)',
                                   now(), coalesce(j.locked_by, 'unknown'), j.lease_expires_at),
               run_at = now(),
               locked_by = null,
               lease_id = null,
               lease_expires_at = null
          from stuck
         where j.id = stuck.id
        returning j.status
    )
    select count(*), count(*) filter (where status = 'pending') into v_count, v_requeued from fixed;

    if v_requeued > 0 then
        perform pg_notify('audio_queue_jobs', '');
    end if;
    return v_count;
end;
$$;


-- Privileges: the queue's functions are for the worker's role and trusted server code only.
-- Every migration ends with `call audio_queue.apply_privileges();` so functions it adds are
-- locked down the same way.
create procedure audio_queue.apply_privileges()
language plpgsql set search_path = '' as $$
declare
    r text;
begin
    revoke all on all functions in schema audio_queue from public;
    -- Supabase: the API roles get nothing here; service_role (server-side code) may use the queue.
    foreach r in array array['anon', 'authenticated'] loop
        if exists (select 1 from pg_roles where rolname = r) then
            execute format('revoke all on schema audio_queue from %I', r);
            execute format('revoke all on all tables in schema audio_queue from %I', r);
            execute format('revoke all on all routines in schema audio_queue from %I', r);
        end if;
    end loop;
    if exists (select 1 from pg_roles where rolname = 'service_role') then
        grant usage on schema audio_queue to service_role;
        grant select, insert, update, delete on audio_queue.jobs to service_role;
        grant execute on all functions in schema audio_queue to service_role;
    end if;
end;
$$;

revoke all on procedure audio_queue.apply_privileges() from public;
call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (1, '0001_queue_core')
on conflict (version) do nothing;
