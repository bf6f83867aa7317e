"""The fakes themselves: usable from other tests (and by a worker running as a subprocess)."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.fakes import FakeOpenAI, Reply

pytestmark = pytest.mark.timeout(30)


def test_fake_lifecycle_env_always_and_wait():
    with FakeOpenAI(api_key="sk-e2e") as fake:
        assert fake.url.startswith("http://127.0.0.1:")
        assert fake.env() == {"OPENAI_BASE_URL": f"{fake.url}/v1", "OPENAI_API_KEY": "sk-e2e"}
        fake.always(Reply(503, {"error": {"message": "down", "type": "server_error"}}))
        fake.script(Reply(418, b"teapot", content_type="text/plain"))
        url = f"{fake.url}/v1/audio/speech"
        statuses: list[int] = []
        client = threading.Timer(
            0.1, lambda: statuses.extend(httpx.post(url, json={}).status_code for _ in range(3))
        )
        client.start()
        reqs = fake.wait_for_requests(3, timeout=5)
        assert [r.path for r in reqs] == ["/v1/audio/speech"] * 3
        client.join(10)
        assert statuses == [418, 503, 503]
        fake.always(None)
        ok = httpx.post(
            url,
            json={"model": "tts-1", "input": "x", "voice": "alloy"},
            headers={"Authorization": "Bearer sk-e2e"},
        )
        assert ok.status_code == 200 and ok.headers["content-type"] == "audio/mpeg" and len(ok.content) > 500
        with pytest.raises(TimeoutError):
            fake.wait_for_requests(10, timeout=0.1)
