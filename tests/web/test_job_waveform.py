"""The job page draws the preview's waveform for jobs completed the way the pipeline completes them:
the result holds file references (``preview``, and ``peaks`` only when the spec asked for
``output.peaks``), never inline numbers. With a peaks file the page draws it; without one it
computes the peaks from the preview object; a page whose objects are gone or whose storage is down
still renders, without a waveform and with a note saying why."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.test_pipeline_cancel import pipeline_on
from tests.web.conftest import Dash, _enqueue, web_process
from worker.job import pipeline
from worker.local.ports import free_port
from worker.queue.db import queue
from worker.queue.handlers import JobContext

pytestmark = pytest.mark.timeout(120)

# Silent for its first half, a tone in the second: a waveform drawn from the audio shows it.
HALF_SILENT = {
    "spec_version": 1,
    "duration_s": 4,
    "layers": [{"type": "solfeggio", "frequency_hz": 528, "start_s": 2}],
    "output": {"preview": {"bitrate_kbps": 64}},
}
# 128 samples a pixel: more pixels than a 4-second track has at the default ten a second.
WITH_PEAKS_FILE = {**HALF_SILENT, "output": {**HALF_SILENT["output"], "peaks": {"samples_per_pixel": 128}}}


def complete_through_the_pipeline(
    dash: Dash, payload: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, dict[str, Any]]:
    """Enqueue ``payload``, claim it, render and upload it with the real pipeline into the
    dashboard's storage and complete it with the worker's own call: the job as a worker leaves it.
    The job waits far in the future until this claim, so another test's worker never takes it."""
    pipeline_on(dash.s3, tmp_path, monkeypatch)
    with dash.conn() as c:
        job_id = _enqueue(c, payload, run_at="infinity", priority=1000)

    async def run() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(dash.db_url) as conn:
            async with conn.transaction():  # due and claimed in one transaction: nobody else sees it due
                await conn.execute("update audio_queue.jobs set run_at = now() where id = %s", (job_id,))
                (job,) = await queue.get_next_pending_job(conn, "web-test-pipeline", 1, 600)
            assert str(job.id) == job_id
            result = await pipeline.render_job(job, JobContext(worker_id="web-test-pipeline"))
            async with conn.transaction():
                assert await queue.complete_job_v2(conn, job, result=result) == "completed"
            return result

    result = asyncio.run(run())
    assert dash.status(job_id) == "completed"
    return job_id, result


def bars(html: str) -> list[float]:
    """The heights of the waveform's bars on a job page (0-80), in time order; [] without one."""
    m = re.search(r'<svg class="waveform"[^>]*><path d="([^"]+)"', html)
    if m is None:
        return []
    return [float(y2) - float(y1) for _x, y1, y2 in re.findall(r"M([\d.]+),([\d.]+)V([\d.]+)", m.group(1))]


def assert_drawn_from_the_audio(heights: list[float]) -> None:
    """Many bars; the silent first half near the axis, the tone's second half tall (but for the
    track's short fade-out at its very end)."""
    assert len(heights) >= 100, heights
    n = len(heights)
    first, last = heights[: n * 2 // 5], heights[n * 3 // 5 : n * 9 // 10]
    assert max(first) < 8, first  # of 80: silence (MP3 coding noise at most)
    assert min(last) > 40, last


def delete_object(dash: Dash, ref: dict[str, Any]) -> None:
    dash.s3.client().delete_object(Bucket=ref["bucket"], Key=ref["key"])


def note(html: str) -> str:
    m = re.search(r'id="waveform-note"[^>]*>([^<]*)<', html)
    return m.group(1) if m else ""


def test_a_pipeline_job_shows_the_waveform_of_its_preview(
    dash: Dash, client: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, result = complete_through_the_pipeline(dash, HALF_SILENT, tmp_path, monkeypatch)
    assert "peaks" not in result and result["preview"]["key"].endswith(".mp3")  # what the pipeline stores
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert_drawn_from_the_audio(bars(page.text))
    assert note(page.text) == ""
    assert 'id="lufs"' in page.text and 'id="true-peak"' in page.text
    # Computed once: the next view draws the same waveform without reading the preview again.
    delete_object(dash, result["preview"])
    again = client.get(f"/jobs/{job_id}")
    assert again.status_code == 200 and bars(again.text) == bars(page.text)


def test_a_job_with_a_peaks_file_is_drawn_from_it(
    dash: Dash, client: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, result = complete_through_the_pipeline(dash, WITH_PEAKS_FILE, tmp_path, monkeypatch)
    assert result["peaks"]["key"].endswith("_peaks.json")
    delete_object(dash, result["preview"])  # the waveform cannot come from the preview
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert_drawn_from_the_audio(bars(page.text))


def test_a_job_whose_preview_is_gone_still_renders(
    dash: Dash, client: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, result = complete_through_the_pipeline(dash, HALF_SILENT, tmp_path, monkeypatch)
    delete_object(dash, result["preview"])
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert bars(page.text) == []
    assert "no longer in storage" in note(page.text)
    assert 'id="lufs"' in page.text and f"{result['duration_s']:.1f} s" in page.text


def test_storage_down_shows_the_page_without_a_waveform(
    dash: Dash, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, _ = complete_through_the_pipeline(dash, HALF_SILENT, tmp_path, monkeypatch)
    down = {  # the same dashboard, its storage endpoint a port nothing listens on
        **dash.env,
        "STORAGE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "DASHBOARD_PORT": str(free_port()),
    }
    with web_process(down, tmp_path / "web.log") as url, httpx.Client(base_url=url, timeout=30) as c:
        dash.login(c)
        page = c.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert bars(page.text) == []
    assert "storage could not be read" in note(page.text)
    assert 'id="preview"' in page.text and 'id="lufs"' in page.text
