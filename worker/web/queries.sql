-- The SQL the dashboard sends, one statement per name (loaded like worker/queue/db/queries.sql).
-- Reads go through the dashboard_* functions of migration 0010; repairs through the runbook's
-- functions. Actions run in a transaction that first names the operator (set_actor), so the
-- job_events rows they cause say who did it.

-- name: overview
select * from audio_queue.dashboard_overview();

-- name: throughput
select * from audio_queue.dashboard_throughput(%(minutes)s);

-- name: running
select * from audio_queue.dashboard_running(%(limit)s);

-- name: workers
select * from audio_queue.dashboard_workers(%(window)s);

-- name: jobs
select * from audio_queue.dashboard_jobs(%(status)s, %(user_id)s, %(track_id)s, %(created_from)s,
                                         %(created_to)s, %(error)s, %(after_created)s, %(after_id)s,
                                         %(limit)s);

-- name: job
select * from audio_queue.jobs where id = %(job_id)s;

-- name: job_events
select * from audio_queue.dashboard_job_events(%(job_id)s);

-- name: autoscale_signal
select * from audio_queue.autoscale_signal();

-- name: set_actor
-- Local to the action's transaction: the job_events trigger reads it.
select set_config('audio_queue.actor', %(actor)s, true);

-- name: cancel_job
select audio_queue.cancel_job(%(job_id)s);

-- name: requeue_job
select audio_queue.requeue_jobs(%(job_id)s);

-- name: requeue_failed
select audio_queue.requeue_jobs(null, %(since)s);

-- name: reset_stuck_jobs
select audio_queue.reset_stuck_jobs(%(stale_after)s);

-- name: purge_finished_jobs
select audio_queue.purge_finished_jobs(%(older_than)s);
