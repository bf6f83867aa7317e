-- Send stuck processing jobs back to the queue now (workers also do this every minute or so).
-- Safe while workers run: a live worker's job is not touched unless its lease expired.
--   psql "$DATABASE_URL" -f sql/reset_stuck_jobs.sql [-v stale="'5 minutes'"]
\if :{?stale} \else \set stale '''10 minutes''' \endif
select audio_queue.reset_stuck_jobs(interval :stale) as jobs_reset;
