-- The SQL the worker sends, one statement per name. Every rule lives in the audio_queue functions
-- (migrations/); these statements only call them.

-- name: claim_jobs
select * from audio_queue.get_next_pending_job(%(worker_id)s, %(limit)s, %(lease_seconds)s);

-- name: heartbeat
select audio_queue.update_job_progress(%(job_id)s, %(progress)s, %(stage)s, %(lease_id)s);

-- name: complete_job
select audio_queue.complete_job(%(job_id)s, %(result)s, %(error)s, %(lease_id)s, %(retryable)s);

-- name: release_job
select audio_queue.release_job(%(job_id)s, %(lease_id)s);

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

-- name: queue_stats
select * from audio_queue.queue_stats();
