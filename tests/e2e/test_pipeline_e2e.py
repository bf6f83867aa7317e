"""The whole path a user's job takes: SQL enqueue -> worker process -> espeak + ffmpeg -> S3 ->
completed row whose URLs point at files that sound as the spec asked.

The track is 120 s so the render lasts a few seconds even on a quiet machine (45 s rendered in
under a second here and the test saw no progress): progress reaches the row at most once a
second, and the test must be able to watch it move.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import all_keys, enqueue, job, job_temp_dirs, pipeline_env
from tests.support.audio import decode, ebur128, peak_hz_per_channel, probe, window

SECONDS = 120.0
SPEC = {
    "spec_version": 1,
    "duration_s": SECONDS,
    "loudness": {"target_lufs": -16, "true_peak_dbtp": -1.5},
    "layers": [
        {
            "type": "speech",
            "text": "Breathe in slowly. And breathe out.",
            "provider": "espeak",
            "gain_db": -4,
        },
        {"type": "binaural", "carrier_hz": 200, "schedule": [{"t_s": 0, "beat_hz": 10}]},
        {"type": "solfeggio", "frequency_hz": 528, "gain_db": -6},
        {"type": "noise", "color": "pink", "gain_db": -24},
    ],
}


@pytest.mark.timeout(90)
def test_job_is_rendered_uploaded_and_completed_with_urls_and_loudness(conn, fleet, s3, tmp_path):
    jid = enqueue(conn, SPEC)
    w = fleet.start(**pipeline_env(s3, tmp_path))
    seen: list[tuple[str | None, int]] = []
    deadline = time.monotonic() + 60
    while (row := job(conn, jid))["status"] in ("pending", "processing"):
        if row["status"] == "processing" and (row["stage"], row["progress"]) not in seen[-1:]:
            seen.append((row["stage"], row["progress"]))
        assert time.monotonic() < deadline, f"job still {row['status']} after 60 s:\n{w.log[-3000:]}"
        time.sleep(0.05)
    assert row["status"] == "completed", f"{row['error_message']}\n{w.log[-3000:]}"

    # progress moved forward through the stages while it ran
    stages = {s for s, _ in seen}
    assert "render" in stages, seen
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and progress[-1] > 0, seen
    assert row["progress"] == 100

    result = row["result"]
    master, preview = result["master"], result["preview"]
    assert row["wav_url"] == result["wav_url"] == master["url"]
    assert row["mp3_url"] == row["result_url"] == result["mp3_url"] == preview["url"]
    assert master["bucket"] == s3.bucket and preview["bucket"] == s3.preview_bucket
    assert master["key"].endswith(".wav") and preview["key"].endswith(".mp3") and str(jid) in master["key"]
    assert sorted(all_keys(s3)) == sorted(
        [f"{s3.bucket}/{master['key']}", f"{s3.preview_bucket}/{preview['key']}"]
    )
    assert result["duration_s"] == pytest.approx(SECONDS, abs=0.001) and result["sample_rate"] == 44100
    assert result["loudness"]["target_lufs"] == -16 and result["loudness"]["on_target"] is True

    # download what a user would fetch and listen to it
    client = s3.client()
    wav, mp3 = tmp_path / "master.wav", tmp_path / "preview.mp3"
    client.download_file(master["bucket"], master["key"], str(wav))
    client.download_file(preview["bucket"], preview["key"], str(mp3))
    assert wav.stat().st_size == master["size"] and mp3.stat().st_size == preview["size"]

    x, sr = decode(wav)
    assert x.shape[1] == 2 and abs(x.shape[0] / sr - SECONDS) <= 0.01
    tail = window(x, sr, 10.0, 8.0)  # after the speech: tones and noise only
    left, right = peak_hz_per_channel(tail, sr, 150, 260)
    assert left == pytest.approx(200, abs=0.5) and right == pytest.approx(210, abs=0.5)
    assert all(f == pytest.approx(528, abs=0.5) for f in peak_hz_per_channel(tail, sr, 400, 700))
    loud = ebur128(wav)
    assert abs(loud.integrated_lufs - -16) <= 1.0 and loud.true_peak_dbtp <= -1.0
    assert loud.integrated_lufs == pytest.approx(result["loudness"]["integrated_lufs"], abs=0.3)

    info = probe(mp3)
    assert info["codec_name"] == "mp3" and float(info["format_duration"]) == pytest.approx(SECONDS, abs=0.15)
    y, _ = decode(mp3)
    assert y.shape[0] > (SECONDS - 1) * sr

    assert job_temp_dirs(tmp_path / "render-tmp") == []  # the job's temp dir is gone
