-- 0019: a client's invalid_request error is the field and the rule of the user's request, without
-- the worker's operator details.
--
-- client_error() (0008) passed the worker's "invalid payload: <field>: <rule>" on as it was, and
-- some rules carry what only the operator should read: a setting's name ("must be at most 5
-- characters (SPEECH_MAX_CHARS)"), a hint to change one ("; set INPUT_URL_ALLOW_PRIVATE=true to
-- allow"), a storage bucket and key ("no object 'k' in bucket 'b'"), a tool's command ("(see
-- espeak-ng --voices)") and every provider the worker knows ("unknown speech provider 'x'; one of
-- ..."). jobs.error_message keeps all of it for the operator; the client's message now drops it.
-- A rule that still names a setting after that is cut to its field. Same signature, same codes:
-- nothing a worker or a client calls changes.

-- "<field>: <rule>" of a payload error as the user may read it.
create or replace function audio_queue.client_request_error(p_detail text) returns text
language sql immutable set search_path = '' as $$
    select case
        when d ~ '\m[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\M' or d ~ '\mbucket ''' then split_part(d, ': ', 1)
        else d
    end
      from (select regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
                   left(p_detail, 2000),
                   -- storage: the object is not there (bucket, key and S3 code are the worker's)
                   ': no object .* in bucket .*$', ': not found in storage'),
                   -- the providers this worker knows: "; one of a, b" or " (one of: a, b)"
                   '(unknown (speech|music) provider)\M.*$', '\1'),
                   -- "; set SOME_SETTING=value to allow"
                   '\s*;?\s*\mset [A-Z][A-Z0-9_]*=[^;]*', '', 'g'),
                   -- "(SOME_SETTING)", "(see espeak-ng --voices)"
                   '\s*\([^()]*\m[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\M[^()]*\)', '', 'g'),
                   '\s*\(see [^()]*\)', '', 'g') as d) as cleaned;
$$;
comment on function audio_queue.client_request_error(text) is
    'The field and rule of a payload error ("<field>: <rule>") without setting names, storage '
    'names, provider lists or tool hints: what client_error shows the user.';

-- What went wrong, for the user: a code and a message (as in 0008; invalid_request through
-- client_request_error). Everything else (provider answers, ffmpeg output, worker names) is a
-- fixed message.
create or replace function audio_queue.client_error(p_status text, p_error text) returns jsonb
language sql immutable set search_path = '' as $$
    select case
        when p_status = 'cancelled' then
            jsonb_build_object('code', 'cancelled', 'message', 'The job was cancelled.')
        when p_status <> 'failed' then null
        when p_error like 'invalid payload: %' then
            jsonb_build_object('code', 'invalid_request',
                               'message', 'Invalid request: '
                                          || left(audio_queue.client_request_error(substr(p_error, 18)), 300))
        when p_error like 'worker stopped responding%' then
            jsonb_build_object('code', 'interrupted',
                               'message', 'The render was interrupted too often and was stopped. Please try again.')
        else
            jsonb_build_object('code', 'render_failed',
                               'message', 'The track could not be rendered. Please try again later; '
                                          'if it keeps failing, contact support with the job id.')
    end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (19, '0019_client_safe_request_errors')
on conflict (version) do nothing;
