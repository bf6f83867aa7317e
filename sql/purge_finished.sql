-- Delete finished (completed, failed, cancelled) jobs older than :older_than. Stored files stay.
--   psql "$DATABASE_URL" -f sql/purge_finished.sql [-v older_than="'90 days'"]
\if :{?older_than} \else \set older_than '''30 days''' \endif
select audio_queue.purge_finished_jobs(interval :older_than) as jobs_deleted;
