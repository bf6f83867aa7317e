"""Real worker processes for tests: start, signal and reap ``python -m worker run`` by pid."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def wait_until(cond: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class WorkerProcess:
    """One ``python -m worker run`` with its own log file; own process group so kill hits only it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def catches_sigterm(self) -> bool:
        """True once the worker's own code has installed a SIGTERM handler (SigCgt in /proc):
        before that the interpreter itself is starting and SIGTERM's default action applies."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                mask = next(line.split()[1] for line in f if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return False
        return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))

    def kill(self) -> None:
        """kill -9 of the worker and of anything it started (its process group)."""
        if self.proc.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    @property
    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._log.close()


class WorkerFleet:
    """Starts workers against one database; everything it started is killed at teardown."""

    def __init__(self, db_url: str, tmp: Path) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.exec_dir = tmp / "exec"
        self.exec_dir.mkdir(exist_ok=True)
        self.started: list[WorkerProcess] = []

    def start(self, **env: object) -> WorkerProcess:
        full = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": self.db_url,
            "JOB_HANDLER": "tests.handlers:record",
            "EXEC_LOG_DIR": str(self.exec_dir),
            "POLL_INTERVAL_MS": "1000",
            "LOG_LEVEL": "debug",
        }
        full.update({k: str(v) for k, v in env.items()})
        w = WorkerProcess(full, self.tmp / f"worker-{len(self.started)}.log")
        self.started.append(w)
        return w

    def executions(self, event: str = "done") -> collections.Counter[str]:
        """How many times each job id reached ``event`` across all workers."""
        counts: collections.Counter[str] = collections.Counter()
        for f in self.exec_dir.glob("*.log"):
            for line in f.read_text().splitlines():
                ev, job_id, _attempt = line.split()
                if ev == event:
                    counts[job_id] += 1
        return counts

    def close(self) -> None:
        for w in self.started:
            w.close()
