"""Configuration: invalid values stop the worker at start, naming the variable and the rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_worker(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "run"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "JOB_HANDLER": "tests.handlers:noop", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("var", "value", "rule"),
    [
        ("MAX_CONCURRENT_JOBS", "11", "MAX_CONCURRENT_JOBS: must be less than or equal to 10"),
        ("MAX_CONCURRENT_JOBS", "two", "MAX_CONCURRENT_JOBS: must be a valid integer"),
        ("POLL_INTERVAL_MS", "500", "POLL_INTERVAL_MS: must be greater than or equal to 1000"),
        ("JOB_TIMEOUT_MS", "9999", "JOB_TIMEOUT_MS: must be greater than or equal to 10000"),
        ("MAX_RETRIES", "11", "MAX_RETRIES: must be less than or equal to 10"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL: must be 'trace', 'debug', 'info'"),
    ],
)
def test_invalid_setting_exits_naming_variable_and_rule(var, value, rule):
    out = run_worker({"DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/db", var: value})
    assert out.returncode != 0
    assert rule in out.stderr, out.stderr


def test_missing_database_url_is_named():
    out = run_worker({})
    assert out.returncode != 0
    assert "DATABASE_URL: is required but not set" in out.stderr


def test_password_never_appears_when_the_database_is_unreachable():
    secret = "s3cr3t-Passw0rd-xyz"
    out = run_worker({"DATABASE_URL": f"postgresql://worker:{secret}@127.0.0.1:1/app"}, timeout=90)
    assert out.returncode == 1
    assert "cannot use the database at worker@127.0.0.1:1/app" in out.stderr
    assert secret not in out.stderr + out.stdout


def test_bad_job_handler_is_named():
    out = run_worker({"DATABASE_URL": "postgresql://u@127.0.0.1:1/db", "JOB_HANDLER": "nope"})
    assert out.returncode != 0 and "JOB_HANDLER: must look like module:function" in out.stderr
