-- Requeue failed jobs with fresh attempts: one job (-v job_id=...) or every job failed within :since.
--   psql "$DATABASE_URL" -f sql/requeue_failed.sql -v job_id="'8d5c...'"
--   psql "$DATABASE_URL" -f sql/requeue_failed.sql -v since="'2 hours'"
\if :{?job_id}
select audio_queue.requeue_jobs(p_job_id => :job_id::uuid) as jobs_requeued;
\else
\if :{?since} \else \set since '''24 hours''' \endif
select audio_queue.requeue_jobs(p_since => interval :since) as jobs_requeued;
\endif
