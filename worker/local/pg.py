"""A throwaway PostgreSQL for the demo and the tests: the server given, the local one, or a temp cluster.

Order: an admin URL if given; else postgres@127.0.0.1:5432 if it answers without a password; else
``initdb`` into a temp dir and start it on a free 127.0.0.1 port (as the ``postgres`` system user
when run as root), stopped by pid-file (``pg_ctl stop``) at the end. Every database handed out is
dropped by :meth:`LocalDatabases.close`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from worker.local.ports import free_port

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MISSING_HINT = (
    "no PostgreSQL server answers on 127.0.0.1:5432 and initdb is not installed; "
    "install PostgreSQL (Debian: apt-get install postgresql)"
)


def answers(url: str) -> bool:
    """True when ``url`` accepts a connection within 3 s."""
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server program on PATH or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class TempCluster:
    """initdb + pg_ctl in a temp dir; trust auth, 127.0.0.1 only."""

    def __init__(self, label: str = "tests", missing_hint: str = MISSING_HINT) -> None:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError(missing_hint)
        self.pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="aw-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            self.user = "postgres" if user_exists("postgres") else "nobody"
            shutil.chown(self.dir, self.user)
        try:
            self._run(
                [initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]
            )
            opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=200"
            self._run([pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"])
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        print(f"[{label}] started a throwaway PostgreSQL cluster in {self.dir} on 127.0.0.1:{self.port}")

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (first line of postmaster.pid), while it runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _run(self, cmd: list[str]) -> None:
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class LocalDatabases:
    """Hands out throwaway databases on one server and drops them all at the end."""

    def __init__(
        self, admin_url: str | None = None, *, label: str = "tests", missing_hint: str = MISSING_HINT
    ) -> None:
        self.cluster: TempCluster | None = None
        if admin_url:
            self.admin_url = admin_url
        elif answers(LOCAL_URL):
            self.admin_url = LOCAL_URL
        else:
            self.cluster = TempCluster(label, missing_hint)
            self.admin_url = self.cluster.url
        self.created: list[str] = []

    def create(self, prefix: str = "aw_test") -> str:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        self.created.append(name)
        return (
            make_conninfo(self.admin_url, dbname=name)
            if "=" in self.admin_url and "://" not in self.admin_url
            else with_dbname(self.admin_url, name)
        )

    def drop(self, url: str) -> None:
        name = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        deadline = time.monotonic() + 30
        for name in list(self.created):
            while True:
                try:
                    with psycopg.connect(self.admin_url, autocommit=True) as conn:
                        conn.execute(f'drop database if exists "{name}" with (force)')
                    break
                except psycopg.Error:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
        self.created.clear()
        if self.cluster:
            self.cluster.stop()


def with_dbname(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name`` (query string kept)."""
    head, _, tail = url.partition("://")
    rest = tail.split("/", 1)
    query = ""
    if len(rest) == 2 and "?" in rest[1]:
        query = "?" + rest[1].split("?", 1)[1]
    return f"{head}://{rest[0]}/{name}{query}"
