"""Who may call or read what the migrations created: the check behind test_privileges.py.

Generic on purpose: it looks at every function, relation and schema the migrations created
(anything not in the database before them), in whatever schema, so a later migration is covered
without anyone remembering to list it. The only list is CLIENT_API: what signed-in users may call.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# The client API: EXECUTE for `authenticated`, nothing else anywhere for the API roles.
CLIENT_API = frozenset(
    {
        "audio_api.get_job(uuid)",
        "audio_api.list_jobs(integer,timestamp with time zone,uuid,text[])",
        "audio_api.cancel_job(uuid)",
        "audio_api.can_download(text,text)",
        "audio_api.can_watch(text)",
    }
)
CLIENT_SCHEMA = "audio_api"
API_ROLES = ("anon", "authenticated")
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT", "UPDATE")


@dataclass(frozen=True)
class Snapshot:
    """Oids of the functions, relations and schemas present at one moment."""

    functions: frozenset[int]
    relations: frozenset[int]
    schemas: frozenset[int]


def snapshot(conn: psycopg.Connection) -> Snapshot:
    def oids(sql: str) -> frozenset[int]:
        return frozenset(r[0] for r in conn.execute(sql))

    return Snapshot(
        oids("select oid::int8 from pg_proc"),
        oids("select oid::int8 from pg_class"),
        oids("select oid::int8 from pg_namespace"),
    )


def violations(conn: psycopg.Connection, before: Snapshot) -> list[str]:
    """Every way anon or authenticated can reach something created after ``before``, beyond
    CLIENT_API (callable by authenticated) and USAGE on the client schema (authenticated)."""
    out: list[str] = []
    functions = conn.execute(
        "select p.oid::int8, regexp_replace(p.oid::regprocedure::text, ',\\s+', ',', 'g') from pg_proc p "
        "where not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass "
        "                  and d.objid = p.oid and d.deptype = 'e')"
    ).fetchall()
    created = {sig: oid for oid, sig in functions if oid not in before.functions}
    for sig, oid in sorted(created.items()):
        for role in API_ROLES:
            can = conn.execute(
                "select has_function_privilege(%s, %s::oid, 'EXECUTE')", (role, oid)
            ).fetchone()
            allowed = role == "authenticated" and sig in CLIENT_API
            if can and can[0] and not allowed:
                out.append(f"{role} may execute {sig}")
            if allowed and not (can and can[0]):
                out.append(f"{role} may not execute the client function {sig}")
    out.extend(f"client function {sig} does not exist" for sig in sorted(CLIENT_API - created.keys()))

    relations = conn.execute(
        "select c.oid::int8, c.oid::regclass::text, c.relkind from pg_class c "
        "where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')"
    ).fetchall()
    for oid, name, kind in relations:
        if oid in before.relations:
            continue
        privileges = SEQUENCE_PRIVILEGES if kind == "S" else TABLE_PRIVILEGES
        for role in API_ROLES:
            for priv in privileges:
                check = "has_sequence_privilege" if kind == "S" else "has_table_privilege"
                row = conn.execute(f"select {check}(%s, %s::oid, %s)", (role, oid, priv)).fetchone()
                if row and row[0]:
                    out.append(f"{role} has {priv} on {name}")
            if kind != "S":
                for priv in ("SELECT", "INSERT", "UPDATE", "REFERENCES"):
                    row = conn.execute(
                        "select has_any_column_privilege(%s, %s::oid, %s)", (role, oid, priv)
                    ).fetchone()
                    if row and row[0] and not any(v.startswith(f"{role} has {priv} on {name}") for v in out):
                        out.append(f"{role} has {priv} on columns of {name}")

    schemas = conn.execute("select oid::int8, nspname from pg_namespace").fetchall()
    for oid, name in schemas:
        if oid in before.schemas:
            continue
        for role in API_ROLES:
            for priv in ("USAGE", "CREATE"):
                row = conn.execute(
                    "select has_schema_privilege(%s, %s::oid, %s)", (role, oid, priv)
                ).fetchone()
                allowed = role == "authenticated" and priv == "USAGE" and name == CLIENT_SCHEMA
                if row and row[0] and not allowed:
                    out.append(f"{role} has {priv} on schema {name}")
    return out
