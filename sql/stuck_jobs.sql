-- Processing jobs whose worker stopped heartbeating (lease expired or heartbeat older than :stale).
--   psql "$DATABASE_URL" -f sql/stuck_jobs.sql [-v stale="'5 minutes'"]
\if :{?stale} \else \set stale '''10 minutes''' \endif
select id, locked_by, attempts, max_attempts, rescue_count, stage, progress,
       now() - heartbeat_at as since_heartbeat, lease_expires_at, payload
  from audio_queue.jobs
 where status = 'processing'
   and (lease_expires_at < now() or heartbeat_at < now() - interval :stale)
 order by heartbeat_at;
