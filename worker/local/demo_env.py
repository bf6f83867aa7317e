"""The demo's environment: the configured database and storage, or throwaway local ones.

With no DATABASE_URL, a throwaway database (on the local server if it answers as postgres
without a password, else a temp ``initdb`` cluster); with no storage settings (SUPABASE_URL,
STORAGE_S3_ENDPOINT), a local S3 server. Whatever is started here is stopped by :meth:`close`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from worker.local.pg import LocalDatabases
from worker.local.s3 import LocalS3

STORAGE_VARS = ("SUPABASE_URL", "STORAGE_S3_ENDPOINT")
PG_HINT = (
    "no DATABASE_URL, no PostgreSQL answering on 127.0.0.1:5432 and initdb is not installed: "
    "run `bash .ci/demo` (it installs PostgreSQL) or set DATABASE_URL"
)


class DemoEnvironment:
    """Database URL and storage variables for the demo's worker; ``close()`` stops what it started."""

    def __init__(self, environ: Mapping[str, str] | None = None, say: Callable[[str], None] = print) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.say = say
        self.databases: LocalDatabases | None = None
        self.s3: LocalS3 | None = None
        self.database_url = ""
        self.env: dict[str, str] = {}  # variables the worker process gets on top of environ

    def start(self) -> DemoEnvironment:
        try:
            self._database()
            self._storage()
        except BaseException:
            self.close()
            raise
        return self

    def _database(self) -> None:
        given = self.environ.get("DATABASE_URL", "").strip()
        if given:
            from worker.queue.db.connect import safe_dsn

            self.database_url = given
            self.say(f"database: DATABASE_URL ({safe_dsn(given)})")
            return
        try:
            self.databases = LocalDatabases(label="demo", missing_hint=PG_HINT)
        except RuntimeError as exc:
            raise SystemExit(f"demo: {exc}") from None
        self.database_url = self.databases.create("aw_demo")
        where = (
            f"a throwaway PostgreSQL cluster on 127.0.0.1:{self.databases.cluster.port}"
            if self.databases.cluster
            else "the PostgreSQL server on 127.0.0.1:5432"
        )
        self.say(f"database: a throwaway database in {where}")
        self.env["DATABASE_URL"] = self.database_url

    def _storage(self) -> None:
        if any(self.environ.get(v, "").strip() for v in STORAGE_VARS):
            self.say("storage: the configured storage (SUPABASE_URL / STORAGE_S3_ENDPOINT)")
            return
        try:
            self.s3 = LocalS3().start()
        except RuntimeError as exc:
            raise SystemExit(f"demo: {exc}") from None
        self.say(
            f"storage: a local S3 server (moto) on {self.s3.endpoint}, buckets {', '.join(self.s3.buckets)}"
        )
        self.env.update(self.s3.env())

    def close(self, keep_database: bool = False) -> None:
        """Stop the S3 server; drop the throwaway database and stop a temp cluster (unless kept)."""
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None
        if self.databases is not None and not keep_database:
            self.databases.close()
            self.databases = None
