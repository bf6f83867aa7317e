"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against the
real ``python -m worker web`` and a real worker process: an operator signs in, finds a failed job
by its error text, requeues it, watches it complete, plays its preview (served through a signed URL
of the local S3 server), and cancels a running job. Screenshots of each page land in tmp_path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import DASHBOARD_PASSWORD, Dash, wait_for

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, dash: Dash) -> Iterator[Any]:
    context = browser.new_context(base_url=dash.url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    p = context.new_page()
    p.on("dialog", lambda dialog: dialog.accept())  # the actions' confirmations: yes
    try:
        yield p
    finally:
        context.close()


def shot(page: Any, out: Path, name: str) -> None:
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def test_an_operator_finds_requeues_hears_and_cancels_jobs(page: Any, dash: Dash, tmp_path: Path) -> None:
    # Signing in.
    page.goto("/jobs")
    assert page.url.endswith("/login")
    shot(page, tmp_path, "login")
    page.fill("input[name=password]", DASHBOARD_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{dash.url}/")
    tiles = page.locator(".tiles").inner_text()
    assert "stuck" in tiles and "scheduled later" in tiles
    assert page.locator("svg.chart rect.bad").count() > 0  # the history's failures are on the chart
    shot(page, tmp_path, "overview")

    # Repair: the job of the dead 'ghost' worker goes back to the queue (after a confirmation).
    page.click("form[action='/actions/reset-stuck'] button")
    assert "1 job(s)" in page.locator(".flash").inner_text()
    worker = dash.start_worker()  # a real worker from now on (it would have rescued that job itself)

    # Finding the failed job by a few words of its error, and opening it.
    page.goto("/jobs")
    page.fill("input[name=error]", "storage unreachable")
    page.click(".filters button[type=submit]")
    rows = page.locator("table.jobs tr:has(td)")
    assert rows.count() == 1
    shot(page, tmp_path, "jobs")
    rows.locator("a").first.click()
    failed = dash.jobs["failed"]
    page.wait_for_url(f"{dash.url}/jobs/{failed}")
    assert page.locator("#job-status").inner_text() == "failed"
    assert "storage unreachable" in page.locator("#job-error").inner_text()
    shot(page, tmp_path, "job-failed")

    # Requeue it; a real worker renders it this time; the page follows it to completed.
    page.click(f"form[action='/jobs/{failed}/requeue'] button")
    assert "queued again" in page.locator(".flash").inner_text()
    # The job page reloads itself while the job is live.
    sync_api.expect(page.locator("#job-status")).to_have_text("completed", timeout=90_000)
    assert dash.status(failed) == "completed", worker.log
    timeline = page.locator(".timeline").inner_text()
    assert "requeued" in timeline and "(dashboard:admin)" in timeline and "completed" in timeline

    # Its preview plays from a signed URL of the local S3 server, with the measured loudness.
    audio = page.locator("audio#preview")
    src = audio.get_attribute("src") or ""
    assert src.startswith(dash.s3.endpoint) and "X-Amz-Signature=" in src
    page.wait_for_function(
        "() => { const a = document.querySelector('#preview'); return a.readyState >= 1 && a.duration > 2; }"
    )
    page.evaluate("() => document.querySelector('#preview').play()")
    page.wait_for_function("() => document.querySelector('#preview').currentTime > 0.2")
    assert "LUFS" in page.locator("#lufs").inner_text() and "dBTP" in page.locator("#true-peak").inner_text()
    assert page.locator("svg.waveform path").count() == 1  # measured from the preview the worker stored
    shot(page, tmp_path, "job-completed")

    # The seeded job whose result carries its peaks inline draws them.
    page.goto(f"/jobs/{dash.jobs['completed']}")
    assert page.locator("svg.waveform path").count() == 1
    page.wait_for_function("() => document.querySelector('#preview').duration > 1.5")
    shot(page, tmp_path, "job-waveform")

    # A running job shows live progress on the overview; cancelling it stops its worker.
    with dash.conn() as c:
        row = c.execute("select audio_queue.enqueue_job('{\"sleep_ms\": 60000}'::jsonb)").fetchone()
    assert row is not None
    running = str(row[0])
    page.goto("/")
    bar = page.locator(f"tr[data-job='{running}'] progress")
    bar.wait_for()
    first = float(bar.get_attribute("value") or 0)
    page.wait_for_function(
        f"() => Number(document.querySelector(\"tr[data-job='{running}'] progress\")?.value) > {first}"
    )  # the overview refreshes itself
    assert "web-test-dyno.1" in page.locator("#live").inner_text()
    shot(page, tmp_path, "overview-running")
    page.goto(f"/jobs/{running}")
    page.click(f"form[action='/jobs/{running}/cancel'] button")
    assert "done" in page.locator(".flash").inner_text()
    wait_for(lambda: dash.status(running) == "cancelled", 30, "the worker to stop the cancelled job")
    page.goto(f"/jobs/{running}")
    assert page.locator("#job-status").inner_text() == "cancelled"
    assert "cancel requested" in page.locator(".timeline").inner_text()
    shot(page, tmp_path, "job-cancelled")
