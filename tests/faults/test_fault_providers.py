"""Provider fakes misbehaving under a real pipeline worker: 429 and slow replies are retried within
the call, 5xx and garbage audio outliving MAX_RETRIES send the job back to the queue (it completes
on the next attempt), an exhausted quota fails the job at once; nothing is left in storage."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env
from tests.fakes import FakeOpenAI, Reply
from tests.fakes.audio import sample_audio
from tests.faults.conftest import FAST
from tests.support.workers import wait_until

pytestmark = pytest.mark.timeout(90)

GARBAGE = Reply(200, b"\x00garbage" * 200, content_type="audio/mpeg")


def speech(n: int) -> dict:
    return {
        "spec_version": 1,
        "duration_s": "fit",
        "tail_s": 0.5,
        "layers": [{"type": "speech", "text": f"Fault test number {n}.", "provider": "openai"}],
    }


def test_rate_limits_5xx_slow_and_garbage_are_retried_and_quota_fails_at_once(
    conn, fleet, s3, tmp_path, fast_retries
):
    cases = [  # (scripted replies, requests expected, final status, attempts)
        ([FakeOpenAI.rate_limited(retry_after=0.2)], 2, "completed", 1),
        ([FakeOpenAI.server_error(503)] * 3, 4, "completed", 2),
        ([Reply(200, delay=2.0)], 2, "completed", 1),
        ([GARBAGE] * 3, 4, "completed", 2),
        ([FakeOpenAI.quota_exceeded()], 1, "failed", 1),
    ]
    sample_audio("mp3")  # encoded once before the clock runs: on a loaded machine the first
    # encode inside a reply took longer than the 0.5 s read timeout these cases use
    with FakeOpenAI() as openai:
        w = fleet.start(
            **pipeline_env(
                s3,
                tmp_path,
                openai,
                MAX_RETRIES=2,
                PROVIDER_READ_TIMEOUT_S=0.5,
                MAX_CONCURRENT_JOBS=1,
                **FAST,
            )
        )
        completed = []
        for n, (replies, requests, status, attempts) in enumerate(cases):
            before = len(openai.requests)
            openai.script(*replies)
            jid = enqueue(conn, speech(n))
            row = wait_until(
                lambda: (r := job(conn, jid))["status"] in ("completed", "failed") and r,  # noqa: B023 (called at once)
                timeout=30,
                what=f"case {n} to end",
            )
            assert (row["status"], row["attempts"]) == (status, attempts), (
                n,
                row["error_message"],
                w.log[-2000:],
            )
            assert len(openai.requests) - before == requests, n
            if status == "completed":
                completed.append(row)
            else:
                assert "insufficient_quota" in row["error_message"] and row["wav_url"] is None
    expected = sorted(
        f"{o['bucket']}/{o['key']}"
        for r in completed
        for o in (r["result"]["master"], r["result"]["preview"])
    )
    assert sorted(all_keys(s3)) == expected
