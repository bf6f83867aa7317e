-- 0011: a completed job's client view lists every file the worker delivered, and a user may
-- download exactly those files.
--
-- The app API's first version knew the master and the preview only: the full-length MP3
-- (`output.full`, result key `full`) was left out of the client's result, the waveform peaks file
-- (`peaks`, an uploaded object) went out whole (sha256 included), and the storage policy's helper
-- let a user read any {bucket, key} pair found anywhere in their results. Now one registry,
-- audio_queue.result_objects(), names the delivered files (master, preview, full, peaks: the
-- objects the worker's build_result lists); client_result() shows each as {bucket, key, size,
-- content_type, url} and can_download() allows those and nothing else. Chapters go out as
-- {title, start_s, end_s}. Nothing a worker calls changes.

-- The files a result lists, in the order the worker uploads them: only entries that are objects
-- with a string bucket and key (an older or hand-made result may lack some).
create or replace function audio_queue.result_objects(p_result jsonb)
returns table (name text, bucket text, key text, object jsonb)
language sql immutable set search_path = '' as $$
    select d.name, p_result -> d.name ->> 'bucket', p_result -> d.name ->> 'key', p_result -> d.name
      from (values (1, 'master'), (2, 'preview'), (3, 'full'), (4, 'peaks')) as d (ord, name)
     where jsonb_typeof(p_result) = 'object'
       and jsonb_typeof(p_result -> d.name) = 'object'
       and jsonb_typeof(p_result -> d.name -> 'bucket') = 'string'
       and jsonb_typeof(p_result -> d.name -> 'key') = 'string'
     order by d.ord;
$$;
comment on function audio_queue.result_objects(jsonb) is
    'The delivered files a job result lists (master, preview, full, peaks): what a client sees and may download.';

-- The client-facing part of a result: URLs, the delivered files (no checksums), duration,
-- loudness, chapters. Never the render internals.
create or replace function audio_queue.client_result(p_result jsonb) returns jsonb
language sql immutable set search_path = '' as $$
    select case when p_result is null or jsonb_typeof(p_result) <> 'object' then null else
        jsonb_strip_nulls(
            jsonb_build_object(
                'master_url', coalesce(p_result -> 'master_url', p_result -> 'wav_url'),
                'preview_url', coalesce(p_result -> 'mp3_url', p_result -> 'result_url'),
                'duration_s', p_result -> 'duration_s',
                'sample_rate', p_result -> 'sample_rate',
                'loudness', p_result -> 'loudness',
                'chapters', case when jsonb_typeof(p_result -> 'chapters') = 'array' then (
                    select jsonb_agg(jsonb_build_object('title', c -> 'title', 'start_s', c -> 'start_s',
                                                        'end_s', c -> 'end_s') order by n)
                      from jsonb_array_elements(p_result -> 'chapters') with ordinality as e (c, n)
                     where jsonb_typeof(c) = 'object') end)
            || coalesce((
                select jsonb_object_agg(o.name, jsonb_build_object(
                           'bucket', o.bucket, 'key', o.key, 'size', o.object -> 'size',
                           'content_type', o.object -> 'content_type', 'url', o.object -> 'url'))
                  from audio_queue.result_objects(p_result) o), '{}'::jsonb))
    end;
$$;

-- For the policy on storage.objects: may the caller read this object? True only when one of the
-- caller's completed jobs delivered it (result_objects), not for any other {bucket, key} pair.
create or replace function audio_api.can_download(p_bucket text, p_name text) returns boolean
language plpgsql stable security definer set search_path = '' as $$
declare
    v_uid uuid := (select auth.uid());
begin
    if v_uid is null or p_bucket is null or p_name is null then
        return false;
    end if;
    return exists (
        select 1
          from audio_queue.jobs j
         cross join lateral audio_queue.result_objects(j.result) o
         where j.user_id = v_uid
           and j.status = 'completed'
           and o.bucket = p_bucket
           and o.key = p_name);
end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (11, '0011_client_deliverables')
on conflict (version) do nothing;
