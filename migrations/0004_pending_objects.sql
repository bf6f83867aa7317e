-- 0004: durable cleanup of objects a dead attempt left in storage.
--
-- A worker that is killed (SIGKILL, dyno crash) after uploading a job's files but before completing
-- it cannot delete them: its in-process cleanup died with it. So an attempt writes down the objects
-- it is about to upload, in the job's row and under its lease, BEFORE it uploads them
-- (record_objects). The list is emptied as the objects are deleted (forget_objects) or taken over
-- by the job's result (the trigger below, atomically with the completion). Whatever is left on a
-- row is an orphan candidate, deleted by:
--   * the job's next attempt, before its handler runs (the claimed row carries the list), or
--   * the rescue leader, for jobs that will get no next attempt (finished: failed or cancelled by
--     reset_stuck_jobs, or completed while an earlier attempt's leftovers could not be deleted);
--     it lists them with orphaned_objects().
-- Deleting an object that is already gone is fine, so each step may be repeated.

alter table audio_queue.jobs add column pending_objects jsonb not null default '[]'::jsonb
    check (jsonb_typeof(pending_objects) = 'array');

comment on column audio_queue.jobs.pending_objects is
    'Storage objects ([{"bucket","key"}]) an unfinished attempt may have written; deleted by the next '
    'attempt or the rescue leader unless the completed result refers to them. See record_objects.';

-- The sweeper's lookup: only rows with something to delete, normally none.
create index jobs_pending_objects_idx on audio_queue.jobs (completed_at)
    where pending_objects <> '[]'::jsonb;


-- p_objects as a clean array of {"bucket","key"} pairs (other fields dropped); raises on bad input.
create function audio_queue.object_list(p_objects jsonb) returns jsonb
language plpgsql immutable set search_path = '' as $$
declare
    v_out jsonb;
begin
    if p_objects is null or jsonb_typeof(p_objects) <> 'array' then
        raise exception 'objects must be a JSON array of {"bucket","key"} (got %)', p_objects
            using errcode = '22023';
    end if;
    if exists (select 1 from jsonb_array_elements(p_objects) e
                where jsonb_typeof(e) <> 'object'
                   or jsonb_typeof(e -> 'bucket') is distinct from 'string'
                   or jsonb_typeof(e -> 'key') is distinct from 'string') then
        raise exception 'objects must be a JSON array of {"bucket","key"} strings (got %)', p_objects
            using errcode = '22023';
    end if;
    select coalesce(jsonb_agg(distinct jsonb_build_object('bucket', e ->> 'bucket', 'key', e ->> 'key')), '[]')
      into v_out
      from jsonb_array_elements(p_objects) e;
    return v_out;
end;
$$;


-- Before uploading: note the objects under the current lease. Fenced like complete_job: false means
-- the job is no longer this attempt's (lease lost, rescued, cancelled and ended): do not upload.
create function audio_queue.record_objects(p_job_id uuid, p_lease_id uuid, p_objects jsonb)
returns boolean
language plpgsql set search_path = '' as $$
declare
    v_new jsonb := audio_queue.object_list(p_objects);
begin
    update audio_queue.jobs j
       set pending_objects = j.pending_objects
                             || coalesce((select jsonb_agg(e) from jsonb_array_elements(v_new) e
                                           where not j.pending_objects @> jsonb_build_array(e)), '[]')
     where j.id = p_job_id
       and j.status = 'processing'
       and j.lease_id = p_lease_id;
    return found;
end;
$$;


-- After deleting objects: take them off the job's list. Not fenced: whoever deleted them (the
-- attempt itself, its successor, the rescue leader) may say they are gone. True if the job exists.
create function audio_queue.forget_objects(p_job_id uuid, p_objects jsonb) returns boolean
language plpgsql set search_path = '' as $$
declare
    v_gone jsonb := audio_queue.object_list(p_objects);
begin
    update audio_queue.jobs j
       set pending_objects = coalesce((select jsonb_agg(e) from jsonb_array_elements(j.pending_objects) e
                                        where not v_gone @> jsonb_build_array(e)), '[]')
     where j.id = p_job_id
       and j.pending_objects <> '[]'::jsonb;
    return found or exists (select 1 from audio_queue.jobs where id = p_job_id);
end;
$$;


-- On completion (complete_job, complete_jobs or a plain UPDATE), the objects the result refers to
-- anywhere ({"bucket": b, "key": k} at any depth, e.g. result.master and result.preview) are the
-- job's output now, not orphans: they leave the list in the same transaction as the completion.
-- The rest (an earlier attempt's leftovers that could not be deleted yet) stays for the sweeper.
create function audio_queue.keep_result_objects() returns trigger
language plpgsql set search_path = '' as $$
begin
    new.pending_objects := coalesce((
        select jsonb_agg(e) from jsonb_array_elements(new.pending_objects) e
         where new.result is null
            or not jsonb_path_exists(new.result, 'lax $.** ? (@.bucket == $b && @.key == $k)',
                                     jsonb_build_object('b', e -> 'bucket', 'k', e -> 'key'))), '[]');
    return new;
end;
$$;

create trigger jobs_keep_result_objects before update on audio_queue.jobs
    for each row
    when (new.status = 'completed' and old.status is distinct from 'completed'
          and new.pending_objects <> '[]'::jsonb)
    execute function audio_queue.keep_result_objects();


-- For the rescue leader: finished jobs (no attempt will come to delete them) that still list
-- objects, oldest first. The caller deletes the objects, then forget_objects().
create function audio_queue.orphaned_objects(p_limit integer default 100)
returns table (job_id uuid, status text, objects jsonb)
language sql stable set search_path = '' as $$
    select j.id, j.status, j.pending_objects
      from audio_queue.jobs j
     where j.pending_objects <> '[]'::jsonb
       and j.status in ('completed', 'failed', 'cancelled')
     order by j.completed_at nulls first
     limit greatest(coalesce(p_limit, 100), 1);
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (4, '0004_pending_objects')
on conflict (version) do nothing;
