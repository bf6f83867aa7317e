"""``python -m worker render``: renders locally and prints paths, duration and loudness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.audio import probe
from worker.commands.render import main


def write(tmp_path: Path, payload: dict) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(payload))
    return path


def test_cli_renders_with_supplied_input(
    tmp_path: Path, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path, {"spec_version": 1, "duration_s": "fit", "tail_s": 1, "layers": [
        {"type": "speech", "text": "(supplied)"}, {"type": "binaural", "carrier_hz": 180, "beat_hz": 8, "gain_db": -12}]})  # fmt: skip
    out = tmp_path / "out"
    assert main([str(spec), "--out", str(out), "--input", f"layers[0]={speech_wav}"]) == 0
    printed = capsys.readouterr()
    assert (
        f"master:   {out / 'master.wav'}" in printed.out and f"preview:  {out / 'preview.mp3'}" in printed.out
    )
    assert (
        "(target -16)" in printed.out
        and "LUFS integrated" in printed.out
        and "rendering 100.0%" in printed.err
    )
    assert float(probe(out / "master.wav")["duration"]) == pytest.approx(
        float(probe(speech_wav)["duration"]) + 1, abs=0.02
    )


def test_cli_speaks_text_itself_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, {"spec_version": 1, "duration_s": "fit", "tail_s": 0.5,
                            "layers": [{"type": "speech", "text": "Hello there."}]})  # fmt: skip
    assert main([str(spec), "--out", str(tmp_path / "out"), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["master"]).is_file() and abs(result["integrated_lufs"] + 16) <= 1


def test_cli_reports_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(
        tmp_path,
        {"spec_version": 1, "duration_s": 5, "layers": [{"type": "binaural", "carrier_hz": 5, "beat_hz": 4}]},
    )
    assert main([str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "invalid payload: layers[0].carrier_hz: must be between 20 and 20000 Hz" in capsys.readouterr().err


def test_cli_writes_the_deliverables_with_a_cover_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))  # a JPEG's signature is all the check reads
    spec = write(tmp_path, {"spec_version": 1, "duration_s": 2, "layers": [{"type": "solfeggio"}],
                            "tags": {"title": "Local", "cover": "covers/x.jpg"}, "output": {"full": True, "peaks": True}})  # fmt: skip
    out = tmp_path / "out"
    assert main([str(spec), "--out", str(out), "--quiet"]) == 2  # the cover is a storage object
    assert "tags.cover: a storage object: pass --input tags.cover=FILE" in capsys.readouterr().err
    assert main([str(spec), "--out", str(out), "--quiet", "--json", "--input", f"tags.cover={cover}"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["full"] == str(out / "full.mp3") and doc["peaks"] == str(out / "peaks.json")
    assert json.loads((out / "peaks.json").read_text())["length"] == 20


def test_a_render_killed_with_sigkill_leaves_files_the_next_render_removes(tmp_path: Path) -> None:
    """`python -m worker render` keeps its scratch files in the worker's locked scheme: SIGKILL
    cannot clean up, so the next render on the machine removes what the dead one left."""
    import os
    import subprocess
    import sys
    import time

    scratch = tmp_path / "scratch"
    env = {**os.environ, "RENDER_TMP_DIR": str(scratch)}
    long = write(tmp_path, {"spec_version": 1, "duration_s": 1800, "layers": [
        {"type": "speech", "text": "Breathe in."}, {"type": "noise", "color": "pink"}]})  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "render", str(long), "--out", str(tmp_path / "a"), "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(scratch.glob("audio-worker-*/render-cli-*/*")):
            assert time.monotonic() < deadline, "the render never wrote a file"
            assert proc.poll() is None, "the render ended before it was killed"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    subprocess.run(["pkill", "-KILL", "-f", str(tmp_path / "a")], check=False)  # its ffmpeg, if any
    left = list(scratch.glob("audio-worker-*/render-cli-*"))
    assert left, "SIGKILL left nothing: the test proves nothing"

    short = write(
        tmp_path, {"spec_version": 1, "duration_s": 1, "layers": [{"type": "noise", "color": "pink"}]}
    )
    done = subprocess.run(
        [sys.executable, "-m", "worker", "render", str(short), "--out", str(tmp_path / "b"), "--quiet"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in left)
    assert list(scratch.glob("audio-worker-*/render-cli-*")) == []  # the second one cleaned up after itself
