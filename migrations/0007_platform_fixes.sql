-- 0007: what production found (issue 10). Same signatures, same meaning for every caller of the
-- previous releases; each change below makes a function do what the README already promised.
--
-- 1. service_role (Supabase: BYPASSRLS, not a superuser) could not read audio_queue.settings, so
--    complete_job(..., p_retryable => true), reset_stuck_jobs() and enable/disable_webhook_outbox()
--    failed with "permission denied for table settings". The tunables are now read through
--    queue_settings() (security definer: whoever may run a queue function may read them), and the
--    two switches of the webhook outbox run as their owner. Nobody gets rights on the table itself.
-- 2. The table refuses states no function can heal: a 'processing' row without a lease, expiry,
--    heartbeat and holder (an app's or a DBA's INSERT/UPDATE) was never rescued, and a waiting row
--    with no attempts left ran anyway. Rows already in such a state are healed first: a leaseless
--    'processing' row gets an expired lease (the next reset_stuck_jobs requeues or fails it like a
--    dead worker's), a waiting row out of attempts is failed with a message that says so.
-- 3. complete_job without a lease id (the old 3-argument call), repeated after its reply was lost,
--    returned false although its first call had taken effect. A repeat now returns true when the
--    row holds exactly what the call asked for: completed with the same result, or failed/waiting
--    for a retry with the same error. Any other finished state is still false.

-- 1 ---------------------------------------------------------------------------------------------

-- The queue's tunables for the functions that need them (see audio_queue.settings).
create function audio_queue.queue_settings() returns audio_queue.settings
language sql stable security definer set search_path = '' as $$
    select * from audio_queue.settings limit 1;
$$;

alter function audio_queue.enable_webhook_outbox() security definer;
alter function audio_queue.disable_webhook_outbox(boolean) security definer;

-- 2 ---------------------------------------------------------------------------------------------

update audio_queue.jobs
   set lease_id         = coalesce(lease_id, gen_random_uuid()),
       locked_by        = coalesce(locked_by, 'unknown (row made processing outside the queue functions)'),
       heartbeat_at     = coalesce(heartbeat_at, now()),
       lease_expires_at = least(coalesce(lease_expires_at, now()), now())
 where status = 'processing'
   and (lease_id is null or locked_by is null or heartbeat_at is null or lease_expires_at is null);

update audio_queue.jobs
   set status        = 'failed',
       completed_at  = now(),
       error_message = format('out of attempts before it ran: attempts %s of max_attempts %s', attempts, max_attempts)
 where status in ('pending', 'queued') and attempts >= max_attempts;

alter table audio_queue.jobs
    add constraint jobs_processing_has_a_lease check (
        status <> 'processing'
        or (lease_id is not null and locked_by is not null and heartbeat_at is not null
            and lease_expires_at is not null)),
    add constraint jobs_waiting_has_attempts_left check (
        status not in ('pending', 'queued') or attempts < max_attempts);

comment on constraint jobs_processing_has_a_lease on audio_queue.jobs is
    'Only get_next_pending_job makes a job processing (with lease_id, locked_by, heartbeat_at, '
    'lease_expires_at), so reset_stuck_jobs can rescue it when its worker dies.';
comment on constraint jobs_waiting_has_attempts_left on audio_queue.jobs is
    'A waiting job must have an attempt left (attempts < max_attempts); requeue_jobs resets attempts.';

-- 1 and 3: complete_job, same signature -------------------------------------------------------

create or replace function audio_queue.complete_job(
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
        if p_lease_id is not null then
            return v_job.lease_id = p_lease_id
               and ((p_error is null and v_job.status = 'completed')
                    or (p_error is not null and v_job.status in ('failed', 'pending', 'queued')));
        end if;
        -- Without a lease the row must hold exactly what this call asked for.
        return (p_error is null and v_job.status = 'completed' and v_job.result is not distinct from p_result)
            or (p_error is not null and v_job.status = 'failed' and v_job.error_message = p_error)
            or (p_error is not null and v_job.status in ('pending', 'queued') and v_job.last_error = p_error);
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
        v_settings := audio_queue.queue_settings();
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

-- 1: reset_stuck_jobs, same signature; also rescues a processing row missing its lease times
-- (none can exist under the constraint above; kept so a dropped constraint cannot strand jobs).

create or replace function audio_queue.reset_stuck_jobs(p_stale_after interval default '10 minutes')
returns integer
language plpgsql set search_path = '' as $$
declare
    v_settings audio_queue.settings := audio_queue.queue_settings();
    v_count    integer;
    v_requeued integer;
begin
    with stuck as (
        select j.id
          from audio_queue.jobs j
         where j.status = 'processing'
           and (j.lease_expires_at < now() or j.heartbeat_at < now() - p_stale_after
                or j.lease_expires_at is null or j.heartbeat_at is null)
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

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (7, '0007_platform_fixes')
on conflict (version) do nothing;
