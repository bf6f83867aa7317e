-- Cancel a job: a waiting job at once, a running one at its worker's next heartbeat.
--   psql "$DATABASE_URL" -f sql/cancel_job.sql -v job_id="'8d5c...'"
\if :{?job_id} \else \echo 'usage: psql "$DATABASE_URL" -f sql/cancel_job.sql -v job_id="''<uuid>''"' \quit \endif
select audio_queue.cancel_job(:job_id::uuid) as cancelled;
select id, status, cancel_requested, stage, progress from audio_queue.jobs where id = :job_id::uuid;
