-- Queue health at a glance.
--   psql "$DATABASE_URL" -f sql/stats.sql
\pset expanded on
select * from audio_queue.queue_stats();
\pset expanded off
select status, count(*) as jobs, max(updated_at) as last_change
  from audio_queue.jobs group by status order by status;
-- The busiest users: running and waiting jobs (fair share; settings.max_running_per_user caps running).
select * from audio_queue.user_load(10);
-- Fleet-wide provider slots: requests in flight and in the current window, against their limits.
select * from audio_queue.provider_slot_stats();
