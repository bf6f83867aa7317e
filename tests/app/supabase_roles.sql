-- Supabase's API roles, created as Supabase creates them (supabase/postgres init scripts). Roles are
-- cluster-wide: this runs once on the tests' own throwaway cluster, never on a shared server.
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit;
grant anon to authenticator;
grant authenticated to authenticator;
grant service_role to authenticator;
