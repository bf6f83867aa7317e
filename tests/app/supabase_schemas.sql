-- A minimal Supabase, per database, faithful to the definitions the migrations rely on:
-- * public's default privileges (Supabase grants the API roles everything created there);
-- * auth.uid() exactly as Supabase defines it (request.jwt.claim.sub, else request.jwt.claims' sub);
-- * storage.buckets / storage.objects (columns as Storage's migrations make them, RLS on, the API
--   roles granted all: RLS policies decide);
-- * realtime.messages (partitioned by inserted_at, with a default partition), realtime.topic(),
--   realtime.send() and realtime.broadcast_changes() as supabase/realtime's migrations define them,
--   with its grants and RLS on.
grant usage on schema public to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to postgres, anon, authenticated, service_role;
-- Harsher than Supabase: the API roles get everything the migration role creates in ANY schema, so
-- only the migrations' own revokes (apply_privileges) keep them out of the queue.
alter default privileges grant all on tables to anon, authenticated;
alter default privileges grant all on functions to anon, authenticated;
alter default privileges grant all on sequences to anon, authenticated;

create schema auth;
grant usage on schema auth to anon, authenticated, service_role;
create function auth.uid() returns uuid language sql stable as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create function auth.role() returns text language sql stable as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
create function auth.jwt() returns jsonb language sql stable as $$
  select
    coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

create schema storage;
grant usage on schema storage to anon, authenticated, service_role;
create table storage.buckets (
    id text primary key,
    name text not null,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now(),
    public boolean default false,
    avif_autodetection boolean default false,
    file_size_limit bigint,
    allowed_mime_types text[],
    owner_id text
);
create unique index bname on storage.buckets using btree (name);
create table storage.objects (
    id uuid not null default gen_random_uuid() primary key,
    bucket_id text references storage.buckets (id),
    name text,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now(),
    last_accessed_at timestamptz default now(),
    metadata jsonb,
    path_tokens text[] generated always as (string_to_array(name, '/')) stored,
    version text,
    owner_id text,
    user_metadata jsonb
);
create unique index bucketid_objname on storage.objects using btree (bucket_id, name);
alter table storage.objects enable row level security;
alter table storage.buckets enable row level security;
grant all on storage.objects to anon, authenticated, service_role;
grant all on storage.buckets to anon, authenticated, service_role;

create schema realtime;
create table realtime.messages (
    topic text not null,
    extension text not null,
    payload jsonb,
    event text,
    private boolean default false,
    updated_at timestamp without time zone default now() not null,
    inserted_at timestamp without time zone default now() not null,
    id uuid default gen_random_uuid() not null,
    primary key (id, inserted_at)
) partition by range (inserted_at);
create table realtime.messages_default partition of realtime.messages default;
create index messages_inserted_at_topic_index on only realtime.messages using btree (inserted_at desc, topic)
    where ((extension = 'broadcast'::text) and (private is true));

create function realtime.topic() returns text language sql stable as $func$
select nullif(current_setting('realtime.topic', true), '')::text;
$func$;

create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
returns void language plpgsql as $func$
declare
  generated_id uuid;
  final_payload jsonb;
begin
  begin
    generated_id := gen_random_uuid();

    if payload ? 'id' then
      final_payload := payload;
    else
      final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
    end if;

    execute format('SET LOCAL realtime.topic TO %L', topic);

    insert into realtime.messages (id, payload, event, topic, private, extension)
    values (generated_id, final_payload, event, topic, private, 'broadcast');
  exception
    when others then
      raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
  end;
end;
$func$;

create function realtime.broadcast_changes(
    topic_name text, event_name text, operation text, table_name text, table_schema text,
    new record, old record, level text default 'ROW'::text)
returns void language plpgsql as $func$
declare
    row_data jsonb := '{}'::jsonb;
begin
    if level = 'STATEMENT' then
        raise exception 'function can only be triggered for each row, not for each statement';
    end if;
    if operation = 'INSERT' or operation = 'UPDATE' or operation = 'DELETE' then
        row_data := jsonb_build_object('old_record', old, 'record', new, 'operation', operation,
                                       'table', table_name, 'schema', table_schema);
        perform realtime.send (row_data, event_name, topic_name);
    else
        raise exception 'Unexpected operation type: %', operation;
    end if;
exception
    when others then
        raise exception 'Failed to process the row: %', sqlerrm;
end;
$func$;

grant usage on schema realtime to postgres, anon, authenticated, service_role;
grant select, insert, update on realtime.messages to postgres, anon, authenticated, service_role;
alter table realtime.messages enable row level security;
