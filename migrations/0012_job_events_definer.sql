-- 0012: 0010's job_events trigger runs with its owner's rights (security definer), like
-- queue_settings() of 0007. As the invoker it read audio_queue.settings and inserted into
-- audio_queue.job_events with the rights of whoever changed the job, and Supabase's service_role
-- (BYPASSRLS, granted only the jobs table) could then no longer claim, complete or cancel a job:
-- "permission denied for table settings". The function's body and search_path stay as they are.

alter function audio_queue.record_job_event() security definer;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (12, '0012_job_events_definer')
on conflict (version) do nothing;
