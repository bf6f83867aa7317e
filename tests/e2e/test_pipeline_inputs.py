"""Where a layer's audio comes from: storage objects, URLs, providers; errors name the layer's
field and say whether a retry can help."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.conftest import all_keys, job_temp_dirs
from tests.e2e.test_pipeline_cancel import make_job
from tests.fakes.audio import sample_audio
from tests.fakes.server import Reply
from tests.support.audio import decode, peak_hz_per_channel, window
from worker.errors import PayloadError, RetryableError
from worker.job import pipeline
from worker.job.inputs import download_url, fetch_input
from worker.providers import ProviderSettings
from worker.queue.handlers import JobContext
from worker.render import RenderSettings, parse_spec
from worker.storage import Storage

pytestmark = pytest.mark.timeout(60)


def music(**source) -> object:
    spec = parse_spec(
        {"spec_version": 1, "duration_s": 2, "layers": [{"type": "solfeggio"}, {"type": "music", **source}]}
    )
    return spec.input_layers()[0]


def fetch(layer, tmp_path: Path, storage: Storage | None = None, **provider_settings) -> Path:
    providers = ProviderSettings(provider_cache_dir=tmp_path / "cache", **provider_settings)
    return asyncio.run(fetch_input(layer, tmp_path, providers=providers, storage=storage))


def test_music_from_storage_by_key_or_bucket_and_key(s3, tmp_path):
    s3.client().put_object(Bucket=s3.bucket, Key="beds/calm.mp3", Body=sample_audio("mp3", freq=300.0))
    storage = Storage(s3.settings())
    for ref in ("beds/calm.mp3", f"{s3.bucket}/beds/calm.mp3"):
        path = fetch(music(object=ref), tmp_path, storage)
        assert path.parent == tmp_path and path.suffix == ".mp3"
        assert path.read_bytes() == sample_audio("mp3", freq=300.0)
    with pytest.raises(PayloadError) as err:
        fetch(music(object="beds/missing.mp3"), tmp_path, storage)
    assert err.value.field == "layers[1].object" and "beds/missing.mp3" in err.value.rule


def test_music_from_a_url_and_its_failures(host, tmp_path):
    # The local host is a private address: allowed here (the SSRF guard: test_pipeline_url_guard.py).
    path = fetch(music(url=f"{host.url}/bed.mp3?token=abc"), tmp_path, input_url_allow_private=True)
    assert path.suffix == ".mp3" and path.stat().st_size > 1000

    host.script(Reply(404, b"not here"))
    with pytest.raises(PayloadError) as err:
        fetch(music(url=f"{host.url}/gone.mp3"), tmp_path, input_url_allow_private=True)
    assert err.value.field == "layers[1].url" and "HTTP 404" in err.value.rule

    host.script(Reply(503, b"busy"))
    with pytest.raises(RetryableError, match=r"layers\[1\]\.url: 127\.0\.0\.1 answered HTTP 503"):
        fetch(music(url=f"{host.url}/busy.mp3"), tmp_path, input_url_allow_private=True)

    host.script(Reply(200, content_type="audio/mpeg", delay=3))
    with pytest.raises(RetryableError, match="timed out"):
        asyncio.run(
            download_url(f"{host.url}/slow.mp3", tmp_path, "layers[1].url", timeout_s=0.5, allow_private=True)
        )

    with pytest.raises(PayloadError, match="larger than"):
        asyncio.run(
            download_url(f"{host.url}/big.mp3", tmp_path, "layers[1].url", max_bytes=100, allow_private=True)
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("input-")) == [path.name]


def test_provider_field_errors_name_the_layer(tmp_path):
    spec = parse_spec(
        {
            "spec_version": 1,
            "duration_s": 2,
            "layers": [
                {"type": "solfeggio"},
                {"type": "speech", "text": "Hi.", "provider": "espeak", "voice": "no-such-voice"},
            ],
        }
    )
    with pytest.raises(PayloadError) as err:
        fetch(spec.input_layers()[0], tmp_path)
    assert err.value.field == "layers[1].voice"


def test_render_job_mixes_storage_and_url_music(s3, host, tmp_path, monkeypatch):
    s3.client().put_object(
        Bucket=s3.bucket, Key="beds/low.mp3", Body=sample_audio("mp3", seconds=1.0, freq=150.0)
    )
    storage = Storage(s3.settings())
    monkeypatch.setattr(
        pipeline,
        "_config",
        pipeline.PipelineConfig(
            render=RenderSettings(tmp_dir=tmp_path / "render-tmp"),
            providers=ProviderSettings(provider_cache_dir=tmp_path / "cache", input_url_allow_private=True),
            storage=storage,
        ),
    )
    payload = {
        "spec_version": 1,
        "duration_s": 4,
        "layers": [
            {"type": "music", "object": "beds/low.mp3"},
            {"type": "music", "url": f"{host.url}/bed.mp3"},
        ],
    }
    ctx = JobContext(worker_id="test")
    result = asyncio.run(pipeline.render_job(make_job(payload), ctx))
    assert ctx.stage == "upload" and ctx.progress >= 90
    assert result["duration_s"] == pytest.approx(4.0, abs=0.001) and result["loudness"]["on_target"]
    assert f"{s3.bucket}/{result['master']['key']}" in all_keys(s3)
    wav = tmp_path / "m.wav"
    s3.client().download_file(s3.bucket, result["master"]["key"], str(wav))
    x, sr = decode(wav)
    assert peak_hz_per_channel(window(x, sr, 0.5, 3.0), sr, 100, 200)[0] == pytest.approx(150, abs=2)
    assert peak_hz_per_channel(window(x, sr, 0.5, 3.0), sr, 250, 400)[0] == pytest.approx(300, abs=2)
    assert job_temp_dirs(tmp_path / "render-tmp") == []
