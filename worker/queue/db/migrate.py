"""The migration runner: applies ``migrations/NNNN_name.sql`` in order, once each.

- Each pending file runs in its own transaction, which first takes a transaction-scoped advisory
  lock, so several dynos (or the Heroku release phase) may run it at once, also through a
  transaction pooler (no session state is relied on).
- Applied versions are recorded with the file's sha256. A recorded file that changed since stops the
  run: landed migrations are immutable, changes go in a new file.
- Files applied by hand with ``psql -f`` record their version without a checksum; the runner adopts
  the current file's checksum for them.
- A landed file that was edited anyway (0001 once was) ships a bridge in ``migrations/revisions/``,
  named ``<migration>.<first 12 hex of the old sha256>.sql``: for a database that applied that
  earlier revision the runner runs the bridge and records the current checksum, then goes on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = "audio_queue.migrate"


class MigrationError(Exception):
    """The database and the migration files disagree; nothing was applied past this point."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; refuses gaps, duplicates and misnamed .sql files."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_lowercase_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is also used by {found[version].path.name}")
        found[version] = Migration(version, path.stem, path)
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must run 1, 2, 3... without gaps; found {versions}")
    return [found[v] for v in versions]


def required_version(directory: Path = MIGRATIONS_DIR) -> int:
    """The schema version this code needs: the newest migration it ships."""
    migrations = discover(directory)
    return migrations[-1].version if migrations else 0


def _recorded(conn: psycopg.Connection) -> dict[int, str | None]:
    exists = conn.execute("select to_regclass('audio_queue.schema_migrations') is not null").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("select version, checksum from audio_queue.schema_migrations").fetchall()
    return {int(v): c for v, c in rows}


def revision_bridge(m: Migration, recorded_checksum: str) -> Path | None:
    """The file that upgrades ``m`` as applied at ``recorded_checksum`` to the current file, if any."""
    bridge = m.path.parent / "revisions" / f"{m.path.stem}.{recorded_checksum[:12]}.sql"
    return bridge if bridge.is_file() else None


def _verify(recorded: dict[int, str | None], migrations: list[Migration]) -> None:
    for m in migrations:
        chk = recorded.get(m.version)
        if chk is not None and chk != m.checksum and revision_bridge(m, chk) is None:
            raise MigrationError(
                f"{m.path.name} changed after it was applied to this database "
                f"(recorded sha256 {chk[:12]}..., file {m.checksum[:12]}...). Landed migrations never "
                "change: restore the file and put the change in a new numbered migration."
            )


def migrate(url: str, directory: Path = MIGRATIONS_DIR, log: Callable[[str], object] = print) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    migrations = discover(directory)
    applied: list[str] = []
    with psycopg.connect(
        url, autocommit=False, prepare_threshold=None, application_name="audio-worker migrate"
    ) as conn:
        for m in migrations:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (_LOCK_KEY,))
                recorded = _recorded(conn)
                _verify(recorded, migrations)
                if m.version in recorded:
                    old = recorded[m.version]
                    if old != m.checksum:  # _verify allowed it: applied by hand, or a bridged revision
                        bridge = revision_bridge(m, old) if old is not None else None
                        if bridge is not None and old is not None:
                            conn.execute(bridge.read_bytes())
                            applied.append(bridge.stem)
                            log(
                                f"upgraded {m.path.name} from its earlier revision {old[:12]} ({bridge.name})"
                            )
                        else:
                            log(f"adopted {m.path.name} (applied by hand earlier)")
                        conn.execute(
                            "update audio_queue.schema_migrations set checksum = %s where version = %s",
                            (m.checksum, m.version),
                        )
                    continue
                conn.execute(m.sql.encode())
                conn.execute(
                    "insert into audio_queue.schema_migrations (version, name, checksum) values (%s, %s, %s) "
                    "on conflict (version) do update set checksum = excluded.checksum",
                    (m.version, m.name, m.checksum),
                )
                applied.append(m.name)
                log(f"applied {m.path.name}")
    return applied


def schema_problem(conn_version: int | None, required: int) -> str | None:
    """A message for an operator when the database schema is not what this code needs."""
    if conn_version is None:
        return (
            "the database has no audio_queue schema yet: run `python -m worker migrate` "
            "(Heroku runs it in the release phase)"
        )
    if conn_version < required:
        return (
            f"the database schema is at version {conn_version} but this worker needs {required}: "
            "run `python -m worker migrate`"
        )
    return None
