"""``python -m worker demo``: the whole path on one machine, nothing to configure.

Brings up a throwaway PostgreSQL and a local S3 server (unless DATABASE_URL / storage settings are
set: then it uses those), migrates, enqueues the example meditation spec, runs ``python -m worker
run`` until the job is done, downloads master and preview into ``--out`` and prints their paths,
duration and loudness. Everything it started is stopped (by pid) and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from worker.queue.db.queries import q

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = REPO / "worker" / "render" / "examples" / "guided-meditation.json"
HANDLER = "worker.job.pipeline:render_job"
FINAL = {"completed", "failed", "cancelled"}


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m worker demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--out", type=Path, default=Path("out"), help="where master and preview go (default ./out)"
    )
    ap.add_argument(
        "--spec",
        type=Path,
        default=DEFAULT_SPEC,
        help="render spec to run (default worker/render/examples/guided-meditation.json)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the throwaway database (and its server) and the worker log"
    )
    ap.add_argument(
        "--timeout", type=float, default=900, help="give up after this many seconds (default 900)"
    )
    return ap


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        payload = json.loads(args.spec.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"demo: cannot read the spec {args.spec}: {exc}", file=sys.stderr)
        return 1
    from worker.errors import PayloadError
    from worker.render import parse_spec

    try:
        spec = parse_spec(payload)
    except PayloadError as exc:
        print(f"demo: {args.spec}: {exc}", file=sys.stderr)
        return 1

    from worker.local.demo_env import DemoEnvironment

    started = time.monotonic()
    env = DemoEnvironment(say=say).start()
    work = Path(tempfile.mkdtemp(prefix="aw-demo-"))
    proc: subprocess.Popen[bytes] | None = None
    ok = False
    try:
        from worker.queue.db.migrate import migrate

        migrate(env.database_url, log=lambda m: say(f"migrate: {m}"))
        with psycopg.connect(env.database_url, autocommit=True, prepare_threshold=None) as conn:
            row = conn.execute(
                q("enqueue_job"),
                {
                    "payload": Jsonb(payload),
                    "priority": 0,
                    "run_at": None,
                    "idempotency_key": None,
                    "max_attempts": 1,
                    "track_id": None,
                    "user_id": None,
                },
            ).fetchone()
            assert row is not None  # enqueue_job returns the new id
            job_id = row[0]
            say(
                f"enqueued {args.spec.name} ({spec.duration_s:g} s, {len(spec.layers)} layers) as job {job_id}"
            )
            log_path = work / "worker.log"
            proc = _start_worker(env.env, log_path)
            say(f"worker: python -m worker run (pid {proc.pid}, JOB_HANDLER={HANDLER}), log {log_path}")
            job = _follow(conn, job_id, proc, log_path, started + args.timeout)
        if job is None:
            return 1
        if job["status"] != "completed":
            say(f"job {job['status']}: {job.get('error_message') or job.get('last_error') or 'no message'}")
            _tail(log_path)
            return 1
        files = _download(job["result"], env, args.out, args.spec.stem)
        _summary(job["result"], files, time.monotonic() - started)
        ok = True
        return 0
    finally:
        if proc is not None:
            _stop(proc)
        env.close(keep_database=args.keep)
        if args.keep:
            say(f"kept: database {env.database_url}, worker log in {work}")
            if env.databases is not None and env.databases.cluster is not None:
                c = env.databases.cluster
                as_user = f"runuser -u {c.user} -- " if c.user else ""
                say(
                    f"kept: PostgreSQL cluster pid {c.pid}; stop it with: {as_user}{c.pg_ctl} -D {c.data} stop"
                )
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            if not ok:
                say("stopped the worker and removed the throwaway database and temp files")


def _start_worker(extra: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **extra, "JOB_HANDLER": HANDLER}
    env.setdefault("LOG_LEVEL", "info")
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the worker's graceful shutdown), SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(log_path: Path, lines: int = 25) -> None:
    try:
        text = log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    if text:
        say("worker log (last lines):")
        for line in text:
            print(f"    {line}")


def _follow(
    conn: psycopg.Connection, job_id: Any, proc: subprocess.Popen[bytes], log_path: Path, deadline: float
) -> dict[str, Any] | None:
    """Poll the job, printing stage changes and every 10%, until final; None if the worker died
    or the deadline passed."""
    shown: tuple[Any, int] | None = None
    while True:
        with conn.cursor(row_factory=dict_row) as cur:
            job = cur.execute(q("get_job"), {"job_id": job_id}).fetchone()
        assert job is not None
        step = (job["stage"], job["progress"] // 10)
        if job["status"] == "processing" and step != shown:
            say(f"  {job['stage'] or 'starting'} {job['progress']}%")
            shown = step
        if job["status"] in FINAL:
            return job
        if proc.poll() is not None:
            say(f"the worker exited with status {proc.returncode} before the job finished")
            _tail(log_path)
            return None
        if time.monotonic() > deadline:
            say(f"the job is still {job['status']} at the time limit (--timeout)")
            _tail(log_path)
            return None
        time.sleep(0.3)


def _download(result: dict[str, Any], env: Any, out: Path, stem: str) -> dict[str, Path]:
    """Fetch master and preview through the S3 API (works for private buckets too)."""
    import boto3
    from botocore.config import Config

    from worker.config import load_settings
    from worker.storage import StorageSettings

    fields = StorageSettings.model_fields
    s = load_settings(StorageSettings, **{k.lower(): v for k, v in env.env.items() if k.lower() in fields})
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s.endpoint,
        region_name=s.storage_s3_region,
        aws_access_key_id=s.storage_s3_access_key_id,
        aws_secret_access_key=s.storage_s3_secret_access_key.get_secret_value(),
        config=Config(s3={"addressing_style": "path"}),
    )
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, suffix in (("master", ""), ("preview", "-preview")):
        obj = result[name]
        ext = obj["key"].rsplit(".", 1)[-1]
        path = out / f"{stem}{suffix}.{ext}"
        client.download_file(obj["bucket"], obj["key"], str(path))
        files[name] = path
    return files


def _summary(result: dict[str, Any], files: dict[str, Path], elapsed: float) -> None:
    loud = result.get("loudness", {})
    details = result.get("render", {})
    mb = files["master"].stat().st_size / 1e6
    say(f"done in {elapsed:.1f} s")
    print(
        f"master:   {files['master'].resolve()}  ({result['duration_s']:.1f} s, "
        f"{details.get('master_format', '?')} {details.get('master_bit_depth', '?')}-bit, {mb:.1f} MB)"
    )
    print(f"preview:  {files['preview'].resolve()}  ({details.get('preview_duration_s', 0):.1f} s mp3)")
    print(f"duration: {result['duration_s']:.1f} s")
    anchor = loud.get("anchor") or "mix"
    anchored = loud.get("speech_lufs") if anchor == "speech" else loud.get("integrated_lufs")
    print(
        f"loudness: {anchored:.1f} LUFS {anchor} (target {loud.get('target_lufs'):g}), "
        f"{loud.get('integrated_lufs'):.1f} LUFS integrated, true peak {loud.get('true_peak_dbtp'):.1f} dBTP"
    )
