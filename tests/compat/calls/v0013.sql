-- The SQL the worker sends, one statement per name. Every rule lives in the audio_queue functions
-- (migrations/); these statements only call them.

-- name: get_next_pending_job
select * from audio_queue.get_next_pending_job(%(worker_id)s, %(limit)s, %(lease_seconds)s);

-- name: update_job_progress
select audio_queue.update_job_progress(%(job_id)s, %(progress)s, %(stage)s, %(lease_id)s);

-- name: complete_job_v2
-- complete_job's effect; answers completed | retrying | failed | cancelled | lost (migration 0013).
select audio_queue.complete_job_v2(%(job_id)s, %(result)s, %(error)s, %(lease_id)s, %(retryable)s);

-- name: release_job_v2
-- release_job's effect; answers released | cancelled | lost (migration 0013).
select audio_queue.release_job_v2(%(job_id)s, %(lease_id)s);

-- name: enqueue_job
select audio_queue.enqueue_job(%(payload)s, %(priority)s, %(run_at)s, %(idempotency_key)s,
                               %(max_attempts)s, %(track_id)s, %(user_id)s);

-- name: cancel_job
select audio_queue.cancel_job(%(job_id)s);

-- name: rescue_if_leader
-- One worker of the fleet at a time: the lock lasts this statement's transaction only, so it also
-- works through a transaction pooler. NULL means another worker holds it.
select case when pg_try_advisory_xact_lock(hashtext('audio_queue.reset_stuck_jobs'))
            then audio_queue.reset_stuck_jobs() end as reset;

-- name: schema_version
select coalesce(max(version), 0) from audio_queue.schema_migrations;

-- name: schema_exists
select to_regclass('audio_queue.schema_migrations') is not null;

-- name: get_job
select * from audio_queue.jobs where id = %(job_id)s;

-- name: complete_jobs_v2
select audio_queue.complete_jobs_v2(%(job_ids)s, %(lease_ids)s, %(results)s::jsonb[]);

-- name: queue_stats
select * from audio_queue.queue_stats();

-- name: queue_depth
-- For /metrics, at scrape time: live jobs by status (the partial indexes on live statuses keep it
-- cheap) and the age in seconds of the oldest job that could run now.
select status, count(*) as jobs,
       coalesce(extract(epoch from now() - min(run_at) filter (where status in ('pending', 'queued')
                                                               and run_at <= now())), 0)::float8 as oldest_s
  from audio_queue.jobs
 where status in ('pending', 'queued', 'processing')
 group by status;

-- name: health_check
select 1;

-- name: record_objects
-- Before an upload: the objects it will write, under the lease (false: not ours, do not upload).
select audio_queue.record_objects(%(job_id)s, %(lease_id)s, %(objects)s);

-- name: forget_objects
select audio_queue.forget_objects(%(job_id)s, %(objects)s);

-- name: orphaned_objects
select job_id, status, objects from audio_queue.orphaned_objects(%(limit)s);

-- name: enable_webhook_outbox
-- A worker with WEBHOOK_URL, at start: job ends are written to audio_queue.webhook_outbox from now on.
select audio_queue.enable_webhook_outbox();

-- name: claim_webhook_notices
select * from audio_queue.claim_webhook_notices(%(worker_id)s, %(limit)s, %(lease_seconds)s);

-- name: webhook_delivered
select audio_queue.webhook_delivered(%(id)s, %(delivery_id)s);

-- name: webhook_attempt_failed
select audio_queue.webhook_attempt_failed(%(id)s, %(delivery_id)s, %(error)s, %(retry_in)s, %(give_up)s);

-- name: provider_call_lock
-- The provider cache's fleet-wide lock of one request (worker/providers/cache.py FleetLock): held
-- by the open transaction of the worker that pays for it, so it ends with that transaction or its
-- connection. Its own lock space (two int keys), keyed by the request's first 32 bits.
select pg_try_advisory_xact_lock(hashtext('audio_queue.provider_cache'),
                                 ('x' || left(%(key)s, 8))::bit(32)::int);

-- name: acquire_provider_slot
-- Before a paid provider request: a fleet-wide slot (lease_id), or null and how long to wait.
select lease_id, retry_after_s from audio_queue.acquire_provider_slot(
    %(provider)s, %(account)s, %(max_concurrent)s, %(max_requests)s, %(window_seconds)s,
    %(lease_seconds)s, %(job_id)s, %(worker_id)s);

-- name: renew_provider_slot
select audio_queue.renew_provider_slot(%(lease_id)s, %(lease_seconds)s);

-- name: release_provider_slot
select audio_queue.release_provider_slot(%(lease_id)s);

-- name: user_load
select user_id, running, waiting from audio_queue.user_load(%(limit)s);

-- name: provider_slot_stats
select provider, account, in_use, max_concurrent, requests_in_window, max_requests, window_seconds
  from audio_queue.provider_slot_stats();
