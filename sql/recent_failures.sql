-- The latest failed jobs and why.
--   psql "$DATABASE_URL" -f sql/recent_failures.sql [-v limit=50]
\if :{?limit} \else \set limit 20 \endif
select id, completed_at, attempts, rescue_count, error_message, last_error, payload
  from audio_queue.jobs
 where status = 'failed'
 order by completed_at desc nulls last
 limit :limit;
