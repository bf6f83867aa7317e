"""A job asking for the extra deliverables: the full-length tagged MP3 with chapters and cover art
from storage, and the waveform peaks, uploaded, noted for cleanup and listed in the result."""

from __future__ import annotations

import json
import subprocess

import pytest
from mutagen.id3 import ID3

from tests.e2e.conftest import all_keys, enqueue, job, pipeline_env
from tests.support.workers import wait_until

pytestmark = pytest.mark.timeout(90)

SPEC = {
    "spec_version": 1,
    "duration_s": 4,
    "layers": [{"type": "solfeggio", "frequency_hz": 528}],
    "output": {"full": True, "peaks": True, "preview": {"seconds": 2}},
    "tags": {"title": "Night walk", "artist": "Quiet Studio", "cover": "covers/night.png"},
    "chapters": [{"start_s": 0, "title": "Start"}, {"start_s": 3, "title": "End"}],
}


def ended(conn, jid) -> dict:
    return wait_until(
        lambda: (r := job(conn, jid))["status"] in ("completed", "failed") and r, timeout=60, what="the job"
    )


def test_full_mp3_and_peaks_are_uploaded_tagged_and_listed(conn, fleet, s3, tmp_path):
    cover = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=16x16", "-frames:v", "1",
         "-f", "image2pipe", "-c:v", "png", "-"],
        check=True, capture_output=True, timeout=30,
    ).stdout  # fmt: skip
    s3.client().put_object(Bucket=s3.bucket, Key="covers/night.png", Body=cover)
    jid = enqueue(conn, SPEC)
    w = fleet.start(**pipeline_env(s3, tmp_path))
    row = ended(conn, jid)
    assert row["status"] == "completed", f"{row['error_message']}\n{w.log[-3000:]}"
    result = row["result"]
    full, peaks = result["full"], result["peaks"]
    assert (
        full["bucket"] == s3.bucket
        and full["key"].endswith("_full.mp3")
        and full["content_type"] == "audio/mpeg"
    )
    assert peaks["bucket"] == s3.preview_bucket and peaks["key"].endswith("_peaks.json")
    assert peaks["content_type"] == "application/json" and peaks["url"]
    assert result["chapters"] == [
        {"title": "Start", "start_s": 0.0, "end_s": 3.0},
        {"title": "End", "start_s": 3.0, "end_s": 4.0},
    ]
    objects = [result[n] for n in ("master", "preview", "full", "peaks")]
    assert sorted(all_keys(s3)) == sorted(
        [f"{o['bucket']}/{o['key']}" for o in objects] + [f"{s3.bucket}/covers/night.png"]
    )

    client = s3.client()
    mp3 = tmp_path / "full.mp3"
    client.download_file(full["bucket"], full["key"], str(mp3))
    tags = ID3(mp3)
    assert str(tags["TIT2"]) == "Night walk" and tags.getall("APIC")[0].data == cover
    assert [c.start_time for c in tags.getall("CHAP")] == [0, 3000]
    doc = json.loads(client.get_object(Bucket=peaks["bucket"], Key=peaks["key"])["Body"].read())
    assert doc["version"] == 2 and doc["samples_per_pixel"] == 4410 and doc["length"] == 40
