-- 0006: the completion webhook's pending notices live in Postgres (an outbox), not in a worker's
-- memory.
--
-- Before: a worker that ended a job POSTed the notice from an in-memory task, so a killed worker
-- lost its pending notices, and jobs ended by SQL (cancel_job on a pending job, reset_stuck_jobs
-- failing a job, a lease that expired on the last attempt) were never announced.
--
-- Now: when audio_queue.settings.webhook_outbox is on (a worker started with WEBHOOK_URL turns it
-- on with enable_webhook_outbox()), a trigger on audio_queue.jobs writes one outbox row each time a
-- job's status changes INTO completed, failed or cancelled, in the same transaction, whoever made
-- the change. Workers with WEBHOOK_URL claim due rows (claim_webhook_notices: lease in
-- claimed_until, FOR UPDATE SKIP LOCKED), POST them, and report back:
--   * webhook_delivered()      -> the row is deleted;
--   * webhook_attempt_failed() -> retried at next_attempt_at, or deleted when the worker gives up
--                                 (WEBHOOK_ATTEMPTS spent, or an answer that is not retried).
-- So the table holds only notices still to deliver: `select count(*) from audio_queue.webhook_outbox`.
-- Delivery is at least once: a worker killed after the receiver's 2xx but before
-- webhook_delivered() leaves the row, and another worker posts it again (same delivery_id).
-- A job that ends again later (requeue_jobs, then completes) gets a new row, a new delivery_id.
-- With the flag off (the default) the trigger's function returns at once: nothing is written.

alter table audio_queue.settings add column webhook_outbox boolean not null default false;

comment on column audio_queue.settings.webhook_outbox is
    'Write a webhook_outbox row whenever a job ends. Turned on by enable_webhook_outbox() (workers with '
    'WEBHOOK_URL call it at start); off by default, so queues without webhooks write nothing.';

create table audio_queue.webhook_outbox (
    id              bigint generated always as identity primary key,
    job_id          uuid not null references audio_queue.jobs (id) on delete cascade,
    -- What ended, as of the end (a later requeue does not change a pending notice).
    status          text not null check (status in ('completed', 'failed', 'cancelled')),
    error           text,
    job_attempts    integer not null,
    wav_url         text,
    mp3_url         text,
    result_url      text,
    completed_at    timestamptz not null,
    -- Delivery state.
    delivery_id     uuid not null default gen_random_uuid() unique,
    attempts        integer not null default 0 check (attempts >= 0),
    next_attempt_at timestamptz not null default now(),
    claimed_by      text,
    claimed_until   timestamptz,
    created_at      timestamptz not null default now(),
    last_error      text
);

comment on table audio_queue.webhook_outbox is
    'Webhook notices still to deliver, one per job end. Delivered and given-up rows are deleted. '
    'See README "Health, metrics and completion webhook".';
comment on column audio_queue.webhook_outbox.delivery_id is
    'Sent as X-Audio-Worker-Delivery; the same on every attempt of this notice (receivers deduplicate on it).';
comment on column audio_queue.webhook_outbox.attempts is 'Delivery attempts so far (counted when claimed).';
comment on column audio_queue.webhook_outbox.claimed_until is
    'Lease of the worker posting it now; nobody else claims the row before then.';
comment on column audio_queue.webhook_outbox.last_error is
    'Why the last attempt failed (HTTP status or error type; never the URL or the secret).';

create index webhook_outbox_due_idx on audio_queue.webhook_outbox (next_attempt_at, id);
-- For the cascade when purge_finished_jobs deletes jobs.
create index webhook_outbox_job_id_idx on audio_queue.webhook_outbox (job_id);

alter table audio_queue.webhook_outbox enable row level security;


-- security definer: whoever ends a job (the worker's role, service_role, a DBA) needs no rights on
-- settings or the outbox for the notice to be written.
create function audio_queue.write_webhook_notice() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if not coalesce((select s.webhook_outbox from audio_queue.settings s), false) then
        return null;
    end if;
    insert into audio_queue.webhook_outbox
        (job_id, status, error, job_attempts, wav_url, mp3_url, result_url, completed_at)
    values
        (new.id, new.status, new.error_message, new.attempts, new.wav_url, new.mp3_url,
         new.result_url, coalesce(new.completed_at, now()));
    return null;
end;
$$;

-- The WHEN clause keeps every other update (claims, heartbeats, progress) away from the function.
create trigger jobs_write_webhook_notice after update of status on audio_queue.jobs
    for each row
    when (new.status in ('completed', 'failed', 'cancelled') and old.status is distinct from new.status)
    execute function audio_queue.write_webhook_notice();


-- Turn the outbox on. Idempotent; true when this call turned it on.
create function audio_queue.enable_webhook_outbox() returns boolean
language plpgsql set search_path = '' as $$
begin
    update audio_queue.settings set webhook_outbox = true where not webhook_outbox;
    return found;
end;
$$;

-- Turn it off (all workers must run without WEBHOOK_URL first, or the next one to start turns it
-- on again). p_discard_pending also deletes the notices not delivered yet.
create function audio_queue.disable_webhook_outbox(p_discard_pending boolean default false) returns integer
language plpgsql set search_path = '' as $$
declare
    v_count integer := 0;
begin
    update audio_queue.settings set webhook_outbox = false where webhook_outbox;
    if coalesce(p_discard_pending, false) then
        delete from audio_queue.webhook_outbox;
        get diagnostics v_count = row_count;
    end if;
    return v_count;
end;
$$;


-- Due notices for one worker to post now, oldest first; each is leased to p_worker for
-- p_lease_seconds (no other worker claims it meanwhile) and its attempt is counted.
create function audio_queue.claim_webhook_notices(
    p_worker        text,
    p_limit         integer default 20,
    p_lease_seconds integer default 60
) returns table (
    id           bigint,
    delivery_id  uuid,
    attempts     integer,
    job_id       uuid,
    status       text,
    error        text,
    job_attempts integer,
    wav_url      text,
    mp3_url      text,
    result_url   text,
    track_id     uuid,
    user_id      uuid,
    completed_at timestamptz
)
language plpgsql set search_path = '' as $$
begin
    if p_limit is null or p_limit not between 1 and 1000 then
        raise exception 'claim_webhook_notices: p_limit must be between 1 and 1000 (got %)', p_limit
            using errcode = '22023';
    end if;
    if p_lease_seconds is null or p_lease_seconds not between 1 and 3600 then
        raise exception 'claim_webhook_notices: p_lease_seconds must be between 1 and 3600 (got %)', p_lease_seconds
            using errcode = '22023';
    end if;

    return query
    with picked as (
        select o.id
          from audio_queue.webhook_outbox o
         where o.next_attempt_at <= now()
           and (o.claimed_until is null or o.claimed_until <= now())
         order by o.next_attempt_at, o.id
         limit p_limit
           for update skip locked
    ), claimed as (
        update audio_queue.webhook_outbox o
           set attempts      = o.attempts + 1,
               claimed_by    = coalesce(p_worker, 'anonymous'),
               claimed_until = now() + make_interval(secs => p_lease_seconds)
          from picked
         where o.id = picked.id
        returning o.*
    )
    select c.id, c.delivery_id, c.attempts, c.job_id, c.status, c.error, c.job_attempts, c.wav_url,
           c.mp3_url, c.result_url, j.track_id, j.user_id, c.completed_at
      from claimed c
      join audio_queue.jobs j on j.id = c.job_id
     order by c.next_attempt_at, c.id;
end;
$$;


-- The receiver answered 2xx: the notice is done (deleted). False when it was already gone.
create function audio_queue.webhook_delivered(p_id bigint, p_delivery_id uuid) returns boolean
language plpgsql set search_path = '' as $$
begin
    delete from audio_queue.webhook_outbox o where o.id = p_id and o.delivery_id = p_delivery_id;
    return found;
end;
$$;


-- An attempt failed. p_give_up: the notice is dropped (deleted); otherwise it is due again in
-- p_retry_in_seconds and the lease is released. p_error is kept (truncated) in last_error: the
-- caller must not put the URL or the secret in it.
create function audio_queue.webhook_attempt_failed(
    p_id               bigint,
    p_delivery_id      uuid,
    p_error            text,
    p_retry_in_seconds double precision default 1,
    p_give_up          boolean default false
) returns boolean
language plpgsql set search_path = '' as $$
begin
    if coalesce(p_give_up, false) then
        delete from audio_queue.webhook_outbox o where o.id = p_id and o.delivery_id = p_delivery_id;
        return found;
    end if;
    update audio_queue.webhook_outbox o
       set next_attempt_at = now() + make_interval(secs => greatest(coalesce(p_retry_in_seconds, 1), 0)),
           claimed_by      = null,
           claimed_until   = null,
           last_error      = left(p_error, 500)
     where o.id = p_id and o.delivery_id = p_delivery_id;
    return found;
end;
$$;

call audio_queue.apply_privileges();

-- Supabase: service_role may run the delivery functions (apply_privileges grants it execute) and
-- look at the outbox.
do $$
begin
    if exists (select 1 from pg_roles where rolname = 'service_role') then
        grant select, insert, update, delete on audio_queue.webhook_outbox to service_role;
    end if;
end;
$$;

insert into audio_queue.schema_migrations (version, name) values (6, '0006_webhook_outbox')
on conflict (version) do nothing;
