"""A PostgreSQL server for the tests: the one given, the local one, or a throwaway cluster.

Order: TEST_DATABASE_URL (an admin URL) if set; else postgres@127.0.0.1:5432 if it answers; else
``initdb`` into a temp dir and start it on a free 127.0.0.1 port (as the ``postgres`` system user
when run as root), stopped by pid at the end. Each test run works in a database of its own,
dropped at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class TempCluster:
    """initdb + pg_ctl in a temp dir; trust auth, 127.0.0.1 only."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("no PostgreSQL server answers on 127.0.0.1:5432 and initdb is not installed; "
                               "run `bash .ci/test` (it installs PostgreSQL) or set TEST_DATABASE_URL")
        self.pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="aw-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            self.user = "postgres" if _user_exists("postgres") else "nobody"
            shutil.chown(self.dir, self.user)
        self._run([initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=200"
        self._run([pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        print(f"[tests] started a throwaway PostgreSQL cluster in {self.dir} on 127.0.0.1:{self.port}")

    def _run(self, cmd: list[str]) -> None:
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class TestDatabases:
    """Hands out throwaway databases on one server and drops them all at the end."""

    def __init__(self) -> None:
        self.cluster: TempCluster | None = None
        admin = os.environ.get("TEST_DATABASE_URL")
        if admin:
            self.admin_url = admin
        elif _answers(LOCAL_URL):
            self.admin_url = LOCAL_URL
        else:
            self.cluster = TempCluster()
            self.admin_url = self.cluster.url
        self.created: list[str] = []

    def create(self, prefix: str = "aw_test") -> str:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        self.created.append(name)
        return make_conninfo(self.admin_url, dbname=name) if "=" in self.admin_url and "://" not in self.admin_url \
            else _with_dbname(self.admin_url, name)

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


def _with_dbname(url: str, name: str) -> str:
    head, _, tail = url.partition("://")
    rest = tail.split("/", 1)
    query = ""
    if len(rest) == 2 and "?" in rest[1]:
        query = "?" + rest[1].split("?", 1)[1]
    return f"{head}://{rest[0]}/{name}{query}"
