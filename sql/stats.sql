-- Queue health at a glance.
--   psql "$DATABASE_URL" -f sql/stats.sql
\pset expanded on
select * from audio_queue.queue_stats();
\pset expanded off
select status, count(*) as jobs, max(updated_at) as last_change
  from audio_queue.jobs group by status order by status;
