"""A real PgBouncer (Debian's ``/usr/sbin/pgbouncer``) in front of the test server, for the tests.

Supabase's transaction pooler is the connection most users paste; the worker must behave through
one exactly as it does direct. :class:`PgBouncer` starts one on a free 127.0.0.1 port with its own
temp dir, config and auth file, in ``transaction`` (default, pool size 2) or ``session`` mode, and
stops it by pid. As root it drops to the ``postgres`` (or ``nobody``) user, as PgBouncer refuses to
run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from worker.local.ports import free_port

PGBOUNCER = os.environ.get("PGBOUNCER_BIN", "/usr/sbin/pgbouncer")
START_TIMEOUT_S = 10.0


def available() -> bool:
    return os.access(PGBOUNCER, os.X_OK)


def _run_as() -> str | None:
    """The user PgBouncer drops to when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists for PgBouncer")


class PgBouncer:
    """PgBouncer on 127.0.0.1:<free port> forwarding every database to ``server_url``'s server."""

    def __init__(self, server_url: str, pool_mode: str = "transaction", pool_size: int = 2) -> None:
        if not available():
            raise RuntimeError(f"PgBouncer is not installed at {PGBOUNCER} (apt-get install pgbouncer)")
        server = conninfo_to_dict(server_url)
        self.user = str(server.get("user") or "postgres")
        self.pool_mode = pool_mode
        self.dir = Path(tempfile.mkdtemp(prefix="aw-pgbouncer-"))
        self.port = free_port()
        self.pidfile = self.dir / "pgbouncer.pid"
        self.logfile = self.dir / "pgbouncer.log"
        run_as = _run_as()
        # trust for our clients; the password (if the server wants one) is what PgBouncer logs in with.
        (self.dir / "userlist.txt").write_text(f'"{self.user}" "{server.get("password") or ""}"\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.get('host', '127.0.0.1')} port={server.get('port', 5432)}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = {pool_mode}\n"
            f"default_pool_size = {pool_size}\n"
            "min_pool_size = 0\n"
            "reserve_pool_size = 0\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.logfile}\n"
            f"pidfile = {self.pidfile}\n" + (f"user = {run_as}\n" if run_as else "")
        )
        if run_as:
            shutil.chown(self.dir, run_as)
            for f in self.dir.iterdir():
                shutil.chown(f, run_as)
        self.proc = subprocess.Popen(
            [PGBOUNCER, str(self.dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.server_url = server_url
        try:
            self._wait_ready(str(server.get("dbname") or "postgres"))
        except BaseException:
            self.stop()
            raise

    def url(self, database_url: str) -> str:
        """``database_url`` (a database on the proxied server) reached through this PgBouncer."""
        return make_conninfo(database_url, host="127.0.0.1", port=str(self.port))

    @property
    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, dbname: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = make_conninfo(self.server_url, host="127.0.0.1", port=str(self.port), dbname=dbname)
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: {err}{self.log}")
            try:
                with psycopg.connect(probe, connect_timeout=2, prepare_threshold=None, autocommit=True) as c:
                    c.execute("select 1")
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not answer on port {self.port}: {self.log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (immediate shutdown) to the pid we started, SIGKILL if it lingers; remove the temp dir."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
