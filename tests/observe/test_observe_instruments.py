"""Provider and storage instrumentation: what stream_audio and upload_file report into the metrics."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.storage.conftest import s3  # noqa: F401 - the moto S3 fixture
from tests.support.s3 import S3Server
from worker.errors import PermanentError
from worker.observe import metrics
from worker.providers.base import ProviderFault, TransientError, stream_audio
from worker.storage import Storage

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def m(monkeypatch):
    fresh = metrics.Metrics()
    monkeypatch.setattr(metrics, "_active", fresh)
    return fresh


def value(m: metrics.Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_provider_requests_are_timed_and_errors_counted_by_kind(m, tmp_path):
    answers = iter([httpx.Response(500, json={"error": "boom"}), httpx.Response(401, json={"error": "no"})])

    def handle(request: httpx.Request) -> httpx.Response:
        try:
            return next(answers)
        except StopIteration:
            raise httpx.ConnectError("refused", request=request) from None

    async def call() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
            for expected in (TransientError, PermanentError, httpx.ConnectError):
                with pytest.raises(expected):
                    await stream_audio(
                        client,
                        client.build_request("POST", "https://api.test/tts"),
                        provider="fakeprov",
                        dest=tmp_path / "out.mp3",
                        parse_error=lambda _b: ProviderFault("e", "m"),
                        secrets=[],
                    )

    asyncio.run(call())
    assert value(m, "audio_worker_provider_request_seconds_count", provider="fakeprov") == 3
    for kind in ("transient", "permanent", "network"):
        assert value(m, "audio_worker_provider_errors_total", provider="fakeprov", kind=kind) == 1


def test_uploads_count_bytes_per_bucket_and_failures(m, s3: S3Server, tmp_path):  # noqa: F811
    storage = Storage(s3.settings())
    path = tmp_path / "a.mp3"
    path.write_bytes(b"x" * 1234)
    storage.upload_file(path, bucket=s3.bucket, key="t/a.mp3")
    with pytest.raises(PermanentError):
        storage.upload_file(tmp_path / "missing.mp3", bucket=s3.bucket, key="t/b.mp3")
    with pytest.raises(PermanentError):
        storage.upload_file(path, bucket="no-such-bucket", key="t/c.mp3")
    assert value(m, "audio_worker_upload_bytes_total", bucket=s3.bucket) == 1234
    assert value(m, "audio_worker_upload_failures_total") == 1  # a missing file is not an upload


def test_nothing_is_recorded_when_metrics_are_off(monkeypatch):
    monkeypatch.setattr(metrics, "_active", None)
    metrics.provider_request("p", 1.0, "transient")
    metrics.uploaded("b", 10)
    metrics.upload_failed()
