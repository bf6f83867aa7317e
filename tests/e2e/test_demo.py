"""The newcomer command: what ``bash .ci/demo`` runs after its installs, in a clean environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support.audio import probe
from worker.local.pg import LOCAL_URL, answers

REPO = Path(__file__).resolve().parents[2]
CONFIG_PREFIXES = ("DATABASE_URL", "LISTEN_DATABASE_URL", "SUPABASE_", "STORAGE_", "JOB_HANDLER", "RENDER_")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any worker configuration: what a newcomer has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    return env | extra


def run_demo(
    *args: str, env: dict[str, str], timeout: float = 180
) -> tuple[subprocess.CompletedProcess, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "demo", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the demo did not finish in {timeout} s:\n{out}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, ""), proc.pid


def printed_path(out: str, label: str) -> Path:
    m = re.search(rf"^{label}:\s+(\S+)", out, re.MULTILINE)
    assert m, f"no {label!r} line in:\n{out}"
    return Path(m.group(1))


@pytest.mark.timeout(240)
def test_demo_renders_the_example_meditation_on_throwaway_services(tmp_path):
    out_dir = tmp_path / "out"
    done, pid = run_demo("--out", str(out_dir), env=clean_env())
    assert done.returncode == 0, done.stdout
    master, preview = printed_path(done.stdout, "master"), printed_path(done.stdout, "preview")
    assert master.parent == out_dir.resolve() and preview.parent == out_dir.resolve()
    spec = json.loads((REPO / "worker/render/examples/guided-meditation.json").read_text())
    m, p = probe(master), probe(preview)
    assert abs(float(m["format_duration"]) - spec["duration_s"]) < 0.1
    assert m["codec_name"] == "pcm_s24le"
    assert p["codec_name"] == "mp3"
    assert abs(float(p["format_duration"]) - spec["output"]["preview"]["seconds"]) < 0.5
    assert re.search(r"^duration: 600\.0 s$", done.stdout, re.MULTILINE)
    lufs = re.search(
        r"^loudness: (-?\d+\.\d) LUFS speech .* true peak (-?\d+\.\d) dBTP", done.stdout, re.MULTILINE
    )
    assert lufs, done.stdout
    assert abs(float(lufs.group(1)) - spec["loudness"]["target_lufs"]) <= 1.0
    assert float(lufs.group(2)) <= spec["loudness"]["true_peak_dbtp"] + 0.2
    # Everything it started is gone: its throwaway database (or cluster dir) and its worker.
    if "127.0.0.1:5432" in done.stdout and answers(LOCAL_URL):
        with psycopg.connect(LOCAL_URL) as conn:
            left = conn.execute(
                "select count(*) from pg_database where datname like %s", (f"aw_demo_{pid}_%",)
            ).fetchone()[0]
        assert left == 0, "the demo's throwaway database was not dropped"
    cluster = re.search(r"cluster in (\S+) on", done.stdout)
    if cluster:
        assert not Path(cluster.group(1)).exists()
    worker_pid = int(re.search(r"\(pid (\d+),", done.stdout).group(1))
    assert (
        not Path(f"/proc/{worker_pid}").exists() or "zombie" in Path(f"/proc/{worker_pid}/status").read_text()
    )


@pytest.mark.timeout(120)
def test_demo_uses_database_url_when_set_and_a_short_spec(db_url, conn, tmp_path):
    spec = json.loads((REPO / "worker/render/examples/guided-meditation.json").read_text())
    spec["duration_s"] = 20
    for part in (spec, *spec["layers"]):
        for key in ("fade_in_s", "fade_out_s"):
            if key in part:
                part[key] = 2
    spec["layers"][0]["text"] = "Breathe in. Breathe out."
    spec["layers"][1]["schedule"] = [{"t_s": 0, "beat_hz": 10}, {"t_s": 20, "beat_hz": 6}]
    spec["output"]["preview"]["seconds"] = 5
    path = tmp_path / "short.json"
    path.write_text(json.dumps(spec))
    done, _ = run_demo("--out", str(tmp_path / "o"), "--spec", str(path), env=clean_env(DATABASE_URL=db_url))
    assert done.returncode == 0, done.stdout
    assert "database: DATABASE_URL" in done.stdout
    assert abs(float(probe(printed_path(done.stdout, "master"))["format_duration"]) - 20) < 0.1
    row = conn.execute("select status from audio_queue.jobs").fetchall()
    assert row == [("completed",)], "the job ran in the DATABASE_URL database"


def test_demo_refuses_a_bad_spec_before_starting_anything(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"spec_version": 1, "duration_s": 10, "layers": [{"type": "tone"}]}))
    done, _ = run_demo("--spec", str(bad), env=clean_env(), timeout=60)
    assert done.returncode == 1
    assert "layers[0].type" in done.stdout
    assert "database:" not in done.stdout


def test_demo_without_moto_says_how_to_get_it(tmp_path):
    """On a Heroku dyno the dev group (moto) is not installed: the demo explains instead of a traceback."""
    shadow = tmp_path / "shadow" / "moto"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'moto'\")\n")
    env = clean_env(PYTHONPATH=str(tmp_path / "shadow"))
    done, _ = run_demo(env=env, timeout=60)
    assert done.returncode != 0
    assert "the local S3 server needs moto" in done.stdout and "uv sync" in done.stdout, done.stdout
    assert "Traceback" not in done.stdout
