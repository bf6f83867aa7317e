"""The example Edge Functions (examples/supabase/functions), run by Deno against the test database:
the enqueue function takes the user from Supabase Auth (a stand-in answering /auth/v1/user), never
from the body, and passes the live-job limit on; the Stripe webhook checks real HMAC signatures
and enqueues once per checkout session, only once it is paid.

Deno comes from PATH, or from the npm registry (`npm install deno`, cached under ~/.cache); where
neither is reachable the test is skipped (the SQL the functions call is tested in
test_live_job_limit.py either way)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from worker.local.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "examples" / "supabase" / "functions"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "audio-worker" / "deno"
WEBHOOK_SECRET = "whsec_placeholder_for_tests"
USER = uuid.UUID(int=0xC0FFEE)
OTHER = uuid.UUID(int=0xBAD)


def deno() -> str | None:
    """The deno executable: on PATH, cached, or installed from the npm registry into the cache."""
    found = shutil.which("deno")
    if found:
        return found
    exe = CACHE / "node_modules" / ".bin" / "deno"
    if not exe.exists() and shutil.which("npm"):
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--silent", "deno@2"],
            capture_output=True,
            timeout=180,
            check=False,
        )
    return str(exe) if exe.exists() else None


class AuthStandIn(BaseHTTPRequestHandler):
    """Supabase Auth's GET /auth/v1/user: "Bearer token-for-<uuid>" is that user, anything else 401."""

    def do_GET(self) -> None:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.path == "/auth/v1/user" and token.startswith("token-for-") and self.headers.get("apikey"):
            status, body = 200, {"id": token.removeprefix("token-for-"), "role": "authenticated"}
        else:
            status, body = 401, {"code": 401, "msg": "invalid JWT"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def functions(supa_url: str) -> Iterator[str]:
    exe = deno()
    if exe is None:
        pytest.skip("no Deno runtime reachable (not on PATH, npm registry unreachable)")
    auth = ThreadingHTTPServer(("127.0.0.1", 0), AuthStandIn)
    threading.Thread(target=auth.serve_forever, daemon=True).start()
    port = free_port()
    env = {
        **os.environ,
        "DENO_DIR": str(CACHE / "deno-dir"),
        "NO_COLOR": "1",
        "SUPABASE_URL": f"http://127.0.0.1:{auth.server_address[1]}",
        "SUPABASE_ANON_KEY": "anon-key-placeholder",
        "SUPABASE_DB_URL": supa_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    proc = subprocess.Popen(
        [
            exe,
            "run",
            "-A",
            "--quiet",
            str(Path(__file__).with_name("serve_examples.ts")),
            str(port),
            FUNCTIONS.as_uri(),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120  # the first run downloads npm:postgres into the cache
        assert proc.stdout
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            if "listening" in line:
                break
        if "listening" not in line:
            pytest.skip(
                f"the example functions did not start under Deno (npm registry unreachable?): {line.strip()}"
            )
        # Keep reading its output (console.error of failures) so a full pipe never blocks it.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield f"http://127.0.0.1:{port}/functions/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        auth.shutdown()


def user_jobs(conn: Any, user: uuid.UUID) -> list[dict[str, Any]]:
    rows = conn.execute(
        "select id, user_id, payload, track_id, status, idempotency_key from audio_queue.jobs where user_id = %s",
        (user,),
    ).fetchall()
    return [
        dict(zip(("id", "user_id", "payload", "track_id", "status", "key"), r, strict=True)) for r in rows
    ]


def test_enqueue_track_enqueues_for_the_signed_in_user_only(functions, supa):
    url = f"{functions}/enqueue-track"
    as_user = {"Authorization": f"Bearer token-for-{USER}"}
    assert httpx.post(url, json={"text": "Breathe."}).status_code == 401
    assert (
        httpx.post(url, json={"text": "Breathe."}, headers={"Authorization": "Bearer forged"}).status_code
        == 401
    )
    bad = httpx.post(url, json={"text": "Breathe.", "minutes": 600}, headers=as_user)
    assert bad.status_code == 400 and bad.json()["message"].startswith("minutes:")

    body = {
        "text": "Breathe.",
        "minutes": 2,
        "noise": "pink",
        "user_id": str(OTHER),
        "layers": [{"type": "url"}],
    }
    ok = httpx.post(url, json=body, headers={**as_user, "Idempotency-Key": "k1"})
    assert ok.status_code == 202, ok.text
    again = httpx.post(url, json=body, headers={**as_user, "Idempotency-Key": "k1"})
    assert again.json() == ok.json()
    (job,) = user_jobs(supa, USER)
    assert str(job["id"]) == ok.json()["job_id"] and job["status"] == "pending"
    assert job["payload"]["duration_s"] == 120 and [layer["type"] for layer in job["payload"]["layers"]] == [
        "speech",
        "binaural",
        "noise",
    ]
    assert user_jobs(supa, OTHER) == []

    supa.execute("update audio_queue.settings set max_live_jobs_per_user = 1")
    limited = httpx.post(url, json={"text": "Again."}, headers=as_user)
    assert limited.status_code == 429 and limited.json()["error"] == "too_many_live_jobs"
    assert "live job limit reached" in limited.json()["message"]


def stripe_signature(body: bytes, t: int | None = None, secret: str = WEBHOOK_SECRET) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def test_stripe_webhook_checks_the_signature_and_enqueues_once_per_session(functions, supa):
    url = f"{functions}/stripe-webhook"
    track = uuid.uuid4()
    event = {
        "id": "evt_1",
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": "cs_test_1",
                "client_reference_id": str(USER),
                "payment_status": "paid",
                "metadata": {"minutes": "3", "track_id": str(track)},
            }
        },
    }
    body = json.dumps(event).encode()

    def post(signature: str) -> httpx.Response:
        return httpx.post(
            url, content=body, headers={"Stripe-Signature": signature, "Content-Type": "application/json"}
        )

    assert post(stripe_signature(body, secret="whsec_wrong")).status_code == 400
    assert post(stripe_signature(body, t=int(time.time()) - 3600)).status_code == 400  # replayed
    assert post("t=1,v1=00").status_code == 400
    assert user_jobs(supa, USER) == []

    first = post(stripe_signature(body))
    assert first.status_code == 200, first.text
    supa.execute("update audio_queue.jobs set status = 'completed', completed_at = now()")
    redelivered = post(stripe_signature(body))  # Stripe delivers again after the job finished
    assert redelivered.json()["job_id"] == first.json()["job_id"]
    (job,) = user_jobs(supa, USER)
    assert job["track_id"] == track and job["key"] == "stripe-checkout:cs_test_1"
    assert job["payload"]["duration_s"] == 180

    other = json.dumps({"id": "evt_2", "type": "invoice.paid", "data": {"object": {}}}).encode()
    ignored = httpx.post(url, content=other, headers={"Stripe-Signature": stripe_signature(other)})
    assert ignored.status_code == 200 and ignored.json()["ignored"] == "invoice.paid"


def checkout(
    event_type: str, session_id: str, payment_status: str, user: str | None = str(USER)
) -> dict[str, Any]:
    """A Stripe event about a Checkout Session, as Stripe sends it (the fields the webhook reads)."""
    session = {"id": session_id, "client_reference_id": user, "payment_status": payment_status}
    return {
        "id": f"evt_{uuid.uuid4().hex[:8]}",
        "type": event_type,
        "data": {"object": {**session, "metadata": {"minutes": "2"}}},
    }


def deliver(functions: str, event: dict[str, Any]) -> httpx.Response:
    """Stripe delivering ``event`` to the webhook, signed with the endpoint's secret."""
    body = json.dumps(event).encode()
    return httpx.post(
        f"{functions}/stripe-webhook",
        content=body,
        headers={"Stripe-Signature": stripe_signature(body), "Content-Type": "application/json"},
    )


def test_stripe_webhook_enqueues_a_delayed_payment_only_when_it_succeeds(functions, supa):
    # SEPA debit, ACH, ...: the session completes unpaid; the money comes days later, or never.
    unpaid = deliver(functions, checkout("checkout.session.completed", "cs_delayed", "unpaid"))
    assert unpaid.status_code == 200 and unpaid.json()["enqueued"] is False
    assert user_jobs(supa, USER) == []

    paid = deliver(functions, checkout("checkout.session.async_payment_succeeded", "cs_delayed", "paid"))
    assert paid.status_code == 200, paid.text
    again = deliver(functions, checkout("checkout.session.async_payment_succeeded", "cs_delayed", "paid"))
    (job,) = user_jobs(supa, USER)
    assert paid.json()["job_id"] == again.json()["job_id"] == str(job["id"])
    assert job["key"] == "stripe-checkout:cs_delayed"

    failed = deliver(functions, checkout("checkout.session.async_payment_failed", "cs_bounced", "unpaid"))
    assert failed.status_code == 200 and "job_id" not in failed.json()
    free = deliver(functions, checkout("checkout.session.completed", "cs_coupon", "no_payment_required"))
    assert free.status_code == 200 and "job_id" in free.json()
    assert sorted(job["key"] for job in user_jobs(supa, USER)) == [
        "stripe-checkout:cs_coupon",
        "stripe-checkout:cs_delayed",
    ]


def test_stripe_webhook_asks_for_a_retry_at_the_live_job_limit(functions, supa):
    supa.execute("update audio_queue.settings set max_live_jobs_per_user = 1")
    first = deliver(functions, checkout("checkout.session.completed", "cs_one", "paid"))
    assert first.status_code == 200, first.text

    limited = deliver(functions, checkout("checkout.session.completed", "cs_two", "paid"))
    assert limited.status_code == 503 and limited.json() == {"error": "try_again_later"}
    assert [job["key"] for job in user_jobs(supa, USER)] == ["stripe-checkout:cs_one"]

    supa.execute("update audio_queue.jobs set status = 'completed', completed_at = now()")
    retried = deliver(functions, checkout("checkout.session.completed", "cs_two", "paid"))  # Stripe retries
    assert retried.status_code == 200 and "job_id" in retried.json()
    assert len(user_jobs(supa, USER)) == 2


@pytest.mark.parametrize("user", [None, "not-a-user-id"])
def test_stripe_webhook_accepts_a_session_without_a_valid_user_and_enqueues_nothing(functions, supa, user):
    answer = deliver(functions, checkout("checkout.session.completed", "cs_nobody", "paid", user=user))
    assert answer.status_code == 200 and answer.json() == {"received": True, "enqueued": False}
    assert supa.execute("select count(*) from audio_queue.jobs").fetchone()[0] == 0
