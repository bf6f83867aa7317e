-- Upgrades a database that applied the FIRST landed revision of 0001_queue_core.sql (sha256
-- abcfc4c2015834af..., before apply_privileges existed) to the revision in migrations/ today.
--
-- 0001 was edited after it had landed (the privileges block became the apply_privileges()
-- procedure that every later migration calls). The two revisions differ only there, so a
-- database migrated with the first one lacks just that procedure. `python -m worker migrate`
-- runs this file for such a database, in the same transaction as recording 0001's current
-- checksum, before it applies 0002 and later. By hand: run this file, then
--   update audio_queue.schema_migrations set checksum = '<sha256 of today''s 0001>' where version = 1;
--
-- Files here are named <migration>.<first 12 hex of the sha256 they upgrade from>.sql.

-- Privileges: the queue's functions are for the worker's role and trusted server code only.
-- Every migration ends with `call audio_queue.apply_privileges();` so functions it adds are
-- locked down the same way.
create procedure audio_queue.apply_privileges()
language plpgsql set search_path = '' as $$
declare
    r text;
begin
    revoke all on all functions in schema audio_queue from public;
    -- Supabase: the API roles get nothing here; service_role (server-side code) may use the queue.
    foreach r in array array['anon', 'authenticated'] loop
        if exists (select 1 from pg_roles where rolname = r) then
            execute format('revoke all on schema audio_queue from %I', r);
            execute format('revoke all on all tables in schema audio_queue from %I', r);
            execute format('revoke all on all routines in schema audio_queue from %I', r);
        end if;
    end loop;
    if exists (select 1 from pg_roles where rolname = 'service_role') then
        grant usage on schema audio_queue to service_role;
        grant select, insert, update, delete on audio_queue.jobs to service_role;
        grant execute on all functions in schema audio_queue to service_role;
    end if;
end;
$$;

revoke all on procedure audio_queue.apply_privileges() from public;
call audio_queue.apply_privileges();

