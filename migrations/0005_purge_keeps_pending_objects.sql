-- 0005: purge_finished_jobs keeps finished jobs that still list objects in pending_objects (0004):
-- their files are still to be deleted by the rescue leader's sweep, and the row is what tracks
-- them. Same signature and behaviour otherwise.

create or replace function audio_queue.purge_finished_jobs(p_older_than interval default '30 days')
returns integer
language plpgsql set search_path = '' as $$
declare
    v_count integer;
begin
    if p_older_than < interval '1 hour' then
        raise exception 'purge_finished_jobs: p_older_than must be at least 1 hour (got %)', p_older_than
            using errcode = '22023';
    end if;
    delete from audio_queue.jobs
     where status in ('completed', 'failed', 'cancelled')
       and completed_at < now() - p_older_than
       and pending_objects = '[]'::jsonb;
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (5, '0005_purge_keeps_pending_objects')
on conflict (version) do nothing;
