-- 0017: the job_events history (0010/0012) and the webhook outbox notices (0006) are written once
-- per UPDATE statement on audio_queue.jobs, not once per row. The rows written are the same.
--
-- Before: two AFTER ROW triggers, each a plpgsql call per changed job, each reading
-- audio_queue.settings and running its own one-row INSERT. A worker claiming 10 jobs and
-- completing them with complete_jobs_v2 paid 20 job_events calls and 10 outbox calls (returning
-- at once with the outbox off) for its two statements.
--
-- Now: one AFTER STATEMENT trigger with transition tables (old_jobs / new_jobs) calls
-- audio_queue.record_job_changes(), which reads both settings once and writes every job_events row
-- of the statement with one INSERT ... SELECT, and every outbox row with another. The kinds,
-- details, worker, actor, attempt and status of each event are decided exactly as
-- record_job_event() did (same order of tests), and only for rows whose status or
-- cancel_requested changed (0010's WHEN clause); an outbox row is written for each row whose status
-- changed INTO completed, failed or cancelled (0006's WHEN clause). Like the old functions it is
-- security definer with search_path ''. With both settings off it returns after one read of
-- audio_queue.settings. A statement trigger also runs for updates that change no status
-- (heartbeats, progress): they cost that read plus an INSERT that finds nothing to write.
--
-- PostgreSQL does not allow transition tables on a trigger limited to columns (UPDATE OF status),
-- so the outbox part tests the status change itself, as 0006's WHEN clause already did.
--
-- The old trigger functions record_job_event() and write_webhook_notice() stay (unused) so the
-- old triggers can be recreated by hand; their triggers are dropped.
--
-- Also dropped: jobs_finished_idx (completed_at) where status in (completed, failed, cancelled),
-- 0001's. jobs_finished_status_idx (completed_at, status) of 0010 has the same predicate and the
-- same leading column, so every read that used the first (purge_finished_jobs, queue_stats,
-- the dashboard's overview and throughput) uses the second; one less index to update per ended job.

create function audio_queue.record_job_changes() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
    v_events boolean;
    v_outbox boolean;
begin
    select s.job_events, s.webhook_outbox into v_events, v_outbox from audio_queue.settings s;
    -- As before: events unless job_events is off, notices only when webhook_outbox is on.
    if v_events is distinct from false then
        insert into audio_queue.job_events (job_id, kind, status, attempt, worker, actor, detail)
        select c.id, c.kind, c.status, c.attempts, c.worker,
               nullif(current_setting('audio_queue.actor', true), ''), left(c.detail, 2000)
          from (
            select n.id, n.status, n.attempts,
                   coalesce(n.locked_by, o.locked_by) as worker,
                   case
                       when n.status = 'processing' and o.status is distinct from 'processing'
                           then 'claimed'
                       when n.status = 'processing' and n.cancel_requested and not o.cancel_requested
                           then 'cancel_requested'
                       when n.status = 'processing' then null
                       when n.rescue_count > o.rescue_count then 'rescued'
                       when n.status in ('pending', 'queued') and o.status in ('failed', 'cancelled', 'completed')
                           then 'requeued'
                       when n.status in ('pending', 'queued') and o.status = 'processing'
                           then case when n.last_error is distinct from o.last_error
                                     then 'retry' else 'released' end
                       when n.status in ('completed', 'failed', 'cancelled') then n.status
                   end as kind,
                   case
                       when n.status = 'processing' then null
                       when n.rescue_count > o.rescue_count then coalesce(n.error_message, n.last_error)
                       when n.status in ('pending', 'queued') and o.status in ('failed', 'cancelled', 'completed')
                           then null
                       when n.status in ('pending', 'queued') and o.status = 'processing'
                           then case when n.last_error is distinct from o.last_error
                                     then n.last_error end
                       when n.status in ('completed', 'failed', 'cancelled') then n.error_message
                   end as detail
              from new_jobs n
              join old_jobs o on o.id = n.id
             where o.status is distinct from n.status
                or o.cancel_requested is distinct from n.cancel_requested
          ) c
         where c.kind is not null;
    end if;
    if coalesce(v_outbox, false) then
        insert into audio_queue.webhook_outbox
            (job_id, status, error, job_attempts, wav_url, mp3_url, result_url, completed_at)
        select n.id, n.status, n.error_message, n.attempts, n.wav_url, n.mp3_url, n.result_url,
               coalesce(n.completed_at, now())
          from new_jobs n
          join old_jobs o on o.id = n.id
         where n.status in ('completed', 'failed', 'cancelled')
           and o.status is distinct from n.status;
    end if;
    return null;
end;
$$;

drop trigger jobs_record_event on audio_queue.jobs;
drop trigger jobs_write_webhook_notice on audio_queue.jobs;

create trigger jobs_record_changes after update on audio_queue.jobs
    referencing old table as old_jobs new table as new_jobs
    for each statement
    execute function audio_queue.record_job_changes();

drop index audio_queue.jobs_finished_idx;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (17, '0017_statement_job_triggers')
on conflict (version) do nothing;
