-- 0008: the app side. End users see, watch, cancel and download their own jobs, safely.
--
-- * audio_api: the schema an app exposes through Supabase's Data API (Dashboard -> Project
--   Settings -> Data API -> Exposed schemas). It holds only the client functions below, each
--   security definer with search_path '', filtering on user_id = auth.uid(), executable by
--   `authenticated` only (never anon, never PUBLIC). Which functions those are is one registry,
--   audio_queue.client_functions, read by apply_privileges(). audio_queue stays closed.
-- * Per-user limit on live jobs at enqueue: settings.max_live_jobs_per_user (null = no limit),
--   checked under a per-user advisory lock, so concurrent enqueues cannot pass it. Refused with
--   SQLSTATE PT429 (PostgREST answers HTTP 429 for it) and a message that says so.
-- * Live progress over Supabase Realtime Broadcast: where the realtime schema exists, a trigger
--   sends each job's status changes (and at most one progress change a second) to the private
--   topics audio-job:<job id> and audio-jobs:<user id>, and a policy on realtime.messages lets a
--   user join only their own topics.
-- * Downloads from private buckets: where the storage schema exists, a policy on storage.objects
--   lets a user read exactly the objects their own completed jobs' results refer to, so
--   supabase.storage.from(bucket).createSignedUrl(key, ...) works for them and nobody else.
-- The realtime and storage parts are installed by audio_queue.install_app_integrations(), which
-- does nothing where a schema is missing; call it again after adding Realtime or Storage later.

create schema if not exists audio_api;
comment on schema audio_api is
    'Client API of audio-worker: expose it in Supabase''s Data API. Callable by signed-in users '
    '(authenticated) only; every function returns the caller''s own jobs. See README "For app developers".';

-- The registry of client functions: apply_privileges() grants EXECUTE on these, to authenticated
-- only. Everything else in audio_queue and audio_api stays closed.
create table audio_queue.client_functions (
    signature text primary key,
    purpose   text not null
);
alter table audio_queue.client_functions enable row level security;

alter table audio_queue.settings add column max_live_jobs_per_user integer
    check (max_live_jobs_per_user > 0);
comment on column audio_queue.settings.max_live_jobs_per_user is
    'Most jobs one user_id may have pending, queued or processing at once; enqueue_job refuses more '
    'with SQLSTATE PT429. Null: no limit.';

-- When a job's progress was last broadcast (Realtime throttle: one progress message a second).
alter table audio_queue.jobs add column broadcast_at timestamptz;

-- A user's jobs, newest first: list_jobs' keyset pages, the live-job count, download checks.
create index jobs_user_created_idx on audio_queue.jobs (user_id, created_at desc, id desc)
    where user_id is not null;


-- What a client may see of a job. One definition for get_job, list_jobs and the broadcasts.
create type audio_api.job_info as (
    id               uuid,
    status           text,
    progress         integer,
    stage            text,
    track_id         uuid,
    cancel_requested boolean,
    created_at       timestamptz,
    started_at       timestamptz,
    completed_at     timestamptz,
    result           jsonb,
    error            jsonb
);
comment on type audio_api.job_info is
    'A job as its owner sees it: no payload, worker ids, leases or internal errors.';


-- The client-facing part of a result: URLs, where the files are, duration, loudness, and peaks /
-- chapters when the render produced them. Never the render internals.
create function audio_queue.client_result(p_result jsonb) returns jsonb
language sql immutable set search_path = '' as $$
    select case when p_result is null or jsonb_typeof(p_result) <> 'object' then null else
        jsonb_strip_nulls(jsonb_build_object(
            'master_url', coalesce(p_result -> 'master_url', p_result -> 'wav_url'),
            'preview_url', coalesce(p_result -> 'mp3_url', p_result -> 'result_url'),
            'master', case when jsonb_typeof(p_result -> 'master') = 'object' then jsonb_strip_nulls(
                jsonb_build_object('bucket', p_result #> '{master,bucket}', 'key', p_result #> '{master,key}',
                                   'size', p_result #> '{master,size}',
                                   'content_type', p_result #> '{master,content_type}')) end,
            'preview', case when jsonb_typeof(p_result -> 'preview') = 'object' then jsonb_strip_nulls(
                jsonb_build_object('bucket', p_result #> '{preview,bucket}', 'key', p_result #> '{preview,key}',
                                   'size', p_result #> '{preview,size}',
                                   'content_type', p_result #> '{preview,content_type}')) end,
            'duration_s', p_result -> 'duration_s',
            'sample_rate', p_result -> 'sample_rate',
            'loudness', p_result -> 'loudness',
            'peaks', p_result -> 'peaks',
            'chapters', p_result -> 'chapters'))
    end;
$$;


-- What went wrong, for the user: a code and a message. Payload errors ("invalid payload: field:
-- rule") name the field and the rule of the user's own request; everything else (provider answers,
-- ffmpeg output, worker names) is replaced by a fixed message.
create function audio_queue.client_error(p_status text, p_error text) returns jsonb
language sql immutable set search_path = '' as $$
    select case
        when p_status = 'cancelled' then
            jsonb_build_object('code', 'cancelled', 'message', 'The job was cancelled.')
        when p_status <> 'failed' then null
        when p_error like 'invalid payload: %' then
            jsonb_build_object('code', 'invalid_request',
                               'message', 'Invalid request: ' || left(substr(p_error, 18), 300))
        when p_error like 'worker stopped responding%' then
            jsonb_build_object('code', 'interrupted',
                               'message', 'The render was interrupted too often and was stopped. Please try again.')
        else
            jsonb_build_object('code', 'render_failed',
                               'message', 'The track could not be rendered. Please try again later; '
                                          'if it keeps failing, contact support with the job id.')
    end;
$$;


create function audio_queue.client_job(j audio_queue.jobs) returns audio_api.job_info
language sql stable set search_path = '' as $$
    select row(j.id, j.status, j.progress, j.stage, j.track_id, j.cancel_requested, j.created_at,
               j.started_at, j.completed_at,
               case when j.status = 'completed' then audio_queue.client_result(j.result) end,
               audio_queue.client_error(j.status, j.error_message))::audio_api.job_info;
$$;


-- ---------------------------------------------------------------------------------------------
-- Client functions (audio_api). plpgsql, so the migration applies where auth.uid() does not exist.

create function audio_api.get_job(p_job_id uuid) returns setof audio_api.job_info
language plpgsql stable security definer set search_path = '' as $$
begin
    return query
    select (audio_queue.client_job(j)).*
      from audio_queue.jobs j
     where j.id = p_job_id
       and j.user_id = (select auth.uid());
end;
$$;

-- The caller's jobs, newest first. Keyset pagination: pass the last row's created_at and id to get
-- the next page. p_statuses filters (e.g. '{pending,processing}'); null = all.
create function audio_api.list_jobs(
    p_limit             integer     default 20,
    p_before_created_at timestamptz default null,
    p_before_id         uuid        default null,
    p_statuses          text[]      default null
) returns setof audio_api.job_info
language plpgsql stable security definer set search_path = '' as $$
begin
    return query
    select (audio_queue.client_job(j)).*
      from audio_queue.jobs j
     where j.user_id = (select auth.uid())
       and (p_before_created_at is null
            or (j.created_at, j.id) < (p_before_created_at,
                                       coalesce(p_before_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)))
       and (p_statuses is null or j.status = any (p_statuses))
     order by j.created_at desc, j.id desc
     limit least(greatest(coalesce(p_limit, 20), 1), 100);
end;
$$;

-- Cancel one of the caller's jobs: a waiting job is cancelled at once, a running one at its next
-- heartbeat. Returns the job as it is now; nothing when it is not the caller's.
create function audio_api.cancel_job(p_job_id uuid) returns setof audio_api.job_info
language plpgsql security definer set search_path = '' as $$
begin
    if exists (select 1 from audio_queue.jobs j
                where j.id = p_job_id and j.user_id = (select auth.uid())) then
        perform audio_queue.cancel_job(p_job_id);
        return query
        select (audio_queue.client_job(j)).* from audio_queue.jobs j where j.id = p_job_id;
    end if;
end;
$$;

-- For the policy on storage.objects: may the caller read this object? True only when one of the
-- caller's completed jobs has {"bucket": bucket, "key": name} in its result.
create function audio_api.can_download(p_bucket text, p_name text) returns boolean
language plpgsql stable security definer set search_path = '' as $$
declare
    v_uid uuid := (select auth.uid());
begin
    if v_uid is null or p_bucket is null or p_name is null then
        return false;
    end if;
    return exists (
        select 1 from audio_queue.jobs j
         where j.user_id = v_uid
           and j.status = 'completed'
           and jsonb_path_exists(j.result, 'lax $.** ? (@.bucket == $b && @.key == $k)',
                                 jsonb_build_object('b', p_bucket, 'k', p_name)));
end;
$$;

-- For the policy on realtime.messages: may the caller join this topic? audio-jobs:<own user id>,
-- or audio-job:<id of one of the caller's jobs>.
create function audio_api.can_watch(p_topic text) returns boolean
language plpgsql stable security definer set search_path = '' as $$
declare
    v_uid  uuid := (select auth.uid());
    v_uuid constant text := '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
begin
    if v_uid is null or p_topic is null then
        return false;
    end if;
    if p_topic like 'audio-jobs:%' then
        return substr(p_topic, 12) ~ v_uuid and substr(p_topic, 12)::uuid = v_uid;
    end if;
    if p_topic like 'audio-job:%' and substr(p_topic, 11) ~ v_uuid then
        return exists (select 1 from audio_queue.jobs j
                        where j.id = substr(p_topic, 11)::uuid and j.user_id = v_uid);
    end if;
    return false;
end;
$$;

insert into audio_queue.client_functions (signature, purpose) values
    ('audio_api.get_job(uuid)', 'one of the caller''s jobs'),
    ('audio_api.list_jobs(integer, timestamp with time zone, uuid, text[])', 'the caller''s jobs, newest first, keyset pages'),
    ('audio_api.cancel_job(uuid)', 'cancel one of the caller''s jobs'),
    ('audio_api.can_download(text, text)', 'storage.objects policy: the caller''s completed results'),
    ('audio_api.can_watch(text)', 'realtime.messages policy: the caller''s own topics');


-- ---------------------------------------------------------------------------------------------
-- Per-user live-job limit at enqueue.

-- While a limit is set, takes the user's enqueue lock (held to the end of the transaction) and
-- returns the limit; null (and no lock) when there is no limit or no user. Serialises the enqueues
-- of one user, so a count and the insert that follows it cannot interleave with another's.
create function audio_queue.live_job_lock(p_user_id uuid) returns integer
language plpgsql security definer set search_path = '' as $$
declare
    v_limit integer;
begin
    if p_user_id is null then
        return null;
    end if;
    select s.max_live_jobs_per_user into v_limit from audio_queue.settings s;
    if v_limit is not null then
        perform pg_advisory_xact_lock(hashtextextended('audio_queue.live_jobs:' || p_user_id::text, 0));
    end if;
    return v_limit;
end;
$$;

-- Every insert of a live job counts, whether it comes from enqueue_job or an app's plain INSERT.
create function audio_queue.enforce_live_job_limit() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
    v_limit integer := audio_queue.live_job_lock(new.user_id);
    v_live  integer;
begin
    if v_limit is null or new.status not in ('pending', 'queued', 'processing') then
        return new;
    end if;
    select count(*) into v_live from audio_queue.jobs j
     where j.user_id = new.user_id and j.status in ('pending', 'queued', 'processing');
    if v_live >= v_limit then
        raise exception 'live job limit reached: this user already has % live jobs (limit %)', v_live, v_limit
            using errcode = 'PT429',
                  hint = 'Wait for a job to finish or cancel one, then try again.';
    end if;
    return new;
end;
$$;

create trigger jobs_enforce_live_job_limit before insert on audio_queue.jobs
    for each row when (new.user_id is not null)
    execute function audio_queue.enforce_live_job_limit();

-- Same signature and meaning as 0001's, plus the limit. The per-user lock is taken before the
-- idempotency lookup, so a repeat of a live job's key returns that job even at the limit, also
-- when both calls race.
create or replace function audio_queue.enqueue_job(
    p_payload         jsonb,
    p_priority        integer     default 0,
    p_run_at          timestamptz default now(),
    p_idempotency_key text        default null,
    p_max_attempts    integer     default 3,
    p_track_id        uuid        default null,
    p_user_id         uuid        default null
) returns uuid
language plpgsql set search_path = '' as $$
declare
    v_id uuid;
begin
    if p_payload is null or jsonb_typeof(p_payload) <> 'object' then
        raise exception 'enqueue_job: p_payload must be a JSON object'
            using errcode = '22023';
    end if;
    if p_max_attempts is null or p_max_attempts not between 1 and 100 then
        raise exception 'enqueue_job: p_max_attempts must be between 1 and 100 (got %)', p_max_attempts
            using errcode = '22023';
    end if;

    for i in 1..3 loop
        if p_idempotency_key is not null then
            -- The user's lock (when a limit is set) before the lookup: the insert's trigger
            -- counts under the same lock, so a racing repeat of this key finds the first job.
            perform audio_queue.live_job_lock(p_user_id);
            select j.id into v_id from audio_queue.jobs j
             where j.idempotency_key = p_idempotency_key
               and j.status in ('pending', 'queued', 'processing');
            if found then
                return v_id;
            end if;
        end if;

        insert into audio_queue.jobs
            (payload, priority, run_at, idempotency_key, max_attempts, track_id, user_id)
        values
            (p_payload, coalesce(p_priority, 0), coalesce(p_run_at, now()), p_idempotency_key,
             p_max_attempts, p_track_id, p_user_id)
        on conflict (idempotency_key)
            where idempotency_key is not null and status in ('pending', 'queued', 'processing')
            do nothing
        returning id into v_id;

        if v_id is not null then
            return v_id;
        end if;
    end loop;
    raise exception 'enqueue_job: could not enqueue under idempotency key % (contended)', p_idempotency_key
        using errcode = '40001';
end;
$$;

-- Enqueue at most once per key, ever (not only while a job with the key is live): for events that
-- may be delivered more than once, such as a Stripe checkout session. Returns the key's job,
-- whatever its status, or the new one.
create function audio_queue.enqueue_job_once(
    p_idempotency_key text,
    p_payload         jsonb,
    p_priority        integer     default 0,
    p_run_at          timestamptz default now(),
    p_max_attempts    integer     default 3,
    p_track_id        uuid        default null,
    p_user_id         uuid        default null
) returns uuid
language plpgsql set search_path = '' as $$
declare
    v_id uuid;
begin
    if p_idempotency_key is null or p_idempotency_key = '' then
        raise exception 'enqueue_job_once: p_idempotency_key is required' using errcode = '22023';
    end if;
    perform pg_advisory_xact_lock(hashtextextended('audio_queue.enqueue_once:' || p_idempotency_key, 0));
    select j.id into v_id from audio_queue.jobs j
     where j.idempotency_key = p_idempotency_key
     order by j.created_at desc
     limit 1;
    if found then
        return v_id;
    end if;
    return audio_queue.enqueue_job(p_payload, p_priority, p_run_at, p_idempotency_key, p_max_attempts,
                                   p_track_id, p_user_id);
end;
$$;

create index jobs_idempotency_key_idx on audio_queue.jobs (idempotency_key) where idempotency_key is not null;


-- ---------------------------------------------------------------------------------------------
-- Realtime Broadcast. The trigger function exists everywhere; the trigger only where realtime does.

-- Before the update is written: a status change is always sent; a progress or stage change only
-- when the last message went out a second ago or more (broadcast_at), so a chatty worker sends
-- at most one progress message a second per job. realtime.send is transactional: a rolled-back
-- update sends nothing. It never raises (it turns its own errors into warnings).
create function audio_queue.broadcast_job_change() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
    v_msg jsonb;
begin
    if new.status is not distinct from old.status
       and old.broadcast_at is not null and old.broadcast_at > now() - interval '1 second' then
        return new;
    end if;
    new.broadcast_at := now();
    v_msg := to_jsonb(audio_queue.client_job(new));
    perform realtime.send(v_msg, 'job', 'audio-job:' || new.id::text, true);
    perform realtime.send(v_msg, 'job', 'audio-jobs:' || new.user_id::text, true);
    return new;
end;
$$;

create function audio_queue.broadcast_job_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    perform realtime.send(to_jsonb(audio_queue.client_job(new)), 'job', 'audio-jobs:' || new.user_id::text, true);
    return null;
end;
$$;


-- Installs (again) what depends on Supabase's realtime and storage schemas; skips what is missing.
-- Idempotent. Run `call audio_queue.install_app_integrations();` after enabling either later.
create procedure audio_queue.install_app_integrations()
language plpgsql set search_path = '' as $$
begin
    if to_regprocedure('realtime.send(jsonb, text, text, boolean)') is not null
       and to_regclass('realtime.messages') is not null
       and to_regprocedure('realtime.topic()') is not null then
        drop trigger if exists jobs_broadcast_change on audio_queue.jobs;
        create trigger jobs_broadcast_change before update on audio_queue.jobs
            for each row
            when (new.user_id is not null
                  and (new.status is distinct from old.status
                       or new.progress is distinct from old.progress
                       or new.stage is distinct from old.stage))
            execute function audio_queue.broadcast_job_change();
        drop trigger if exists jobs_broadcast_insert on audio_queue.jobs;
        create trigger jobs_broadcast_insert after insert on audio_queue.jobs
            for each row when (new.user_id is not null)
            execute function audio_queue.broadcast_job_insert();
        drop policy if exists audio_jobs_watch_own on realtime.messages;
        create policy audio_jobs_watch_own on realtime.messages
            for select to authenticated
            using (realtime.messages.extension = 'broadcast'
                   and (select audio_api.can_watch((select realtime.topic()))));
    end if;
    if to_regclass('storage.objects') is not null then
        drop policy if exists audio_jobs_download_own on storage.objects;
        create policy audio_jobs_download_own on storage.objects
            for select to authenticated
            using (audio_api.can_download(bucket_id, name));
    end if;
end;
$$;

call audio_queue.install_app_integrations();


-- ---------------------------------------------------------------------------------------------
-- Privileges: 0001's rules, extended to audio_api, with the client functions (the registry
-- above) executable by authenticated. Every migration still ends with this call.
create or replace procedure audio_queue.apply_privileges()
language plpgsql set search_path = '' as $$
declare
    r text;
    s text;
    f regprocedure;
begin
    foreach s in array array['audio_queue', 'audio_api'] loop
        execute format('revoke all on all routines in schema %I from public', s);
    end loop;
    -- Supabase: the API roles get nothing but the client functions; service_role (server-side
    -- code) may use the queue.
    foreach r in array array['anon', 'authenticated'] loop
        if exists (select 1 from pg_roles where rolname = r) then
            foreach s in array array['audio_queue', 'audio_api'] loop
                execute format('revoke all on schema %I from %I', s, r);
                execute format('revoke all on all tables in schema %I from %I', s, r);
                execute format('revoke all on all sequences in schema %I from %I', s, r);
                execute format('revoke all on all routines in schema %I from %I', s, r);
            end loop;
        end if;
    end loop;
    if exists (select 1 from pg_roles where rolname = 'authenticated') then
        grant usage on schema audio_api to authenticated;
        for f in select to_regprocedure(c.signature) from audio_queue.client_functions c
                  where to_regprocedure(c.signature) is not null loop
            execute format('grant execute on function %s to authenticated', f);
        end loop;
    end if;
    if exists (select 1 from pg_roles where rolname = 'service_role') then
        grant usage on schema audio_queue to service_role;
        grant usage on schema audio_api to service_role;
        grant select, insert, update, delete on audio_queue.jobs to service_role;
        grant execute on all functions in schema audio_queue to service_role;
    end if;
end;
$$;

revoke all on procedure audio_queue.apply_privileges() from public;
call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (8, '0008_app_api')
on conflict (version) do nothing;
