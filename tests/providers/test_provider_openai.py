"""OpenAI TTS against the local fake: the exact request, errors users see, retries, cache, splitting."""

from __future__ import annotations

import time

import pytest

from tests.fakes import Reply
from tests.providers.conftest import run
from worker.errors import PayloadError, PermanentError, RetryableError
from worker.providers import fetch_speech
from worker.providers.audio import probe

pytestmark = pytest.mark.timeout(60)


def speak(settings, out_dir, text="Hello from the audio worker.", **kw):  # type: ignore[no-untyped-def]
    args = {"provider": "openai", "voice": None, "model": None} | kw
    return run(fetch_speech(text=text, out_dir=out_dir, settings=settings, **args))


def test_sends_the_documented_request_and_returns_audio(fake_openai, make_settings, out_dir):
    settings = make_settings(fake_openai)
    path = speak(settings, out_dir, voice="nova", model="tts-1-hd", speed=1.25)

    assert path.parent == out_dir and path.suffix == ".mp3"
    assert run(probe(path)).duration > 0.3
    [req] = fake_openai.requests
    assert (req.method, req.path) == ("POST", "/v1/audio/speech")
    assert req.headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {
        "model": "tts-1-hd",
        "input": "Hello from the audio worker.",
        "voice": "nova",
        "response_format": "mp3",
        "speed": 1.25,
    }


def test_defaults_and_key_selects_openai(fake_openai, make_settings, out_dir):
    settings = make_settings(fake_openai)
    run(
        fetch_speech(
            text="Default voice.", provider=None, voice=None, model=None, out_dir=out_dir, settings=settings
        )
    )
    assert fake_openai.requests[0].json() | {"input": None} == {
        "model": "tts-1",
        "input": None,
        "voice": "alloy",
        "response_format": "mp3",
        "speed": 1.0,
    }


def test_second_identical_call_makes_no_request(fake_openai, make_settings, out_dir, tmp_path):
    settings = make_settings(fake_openai)
    first = speak(settings, out_dir)
    second = speak(settings, tmp_path / "elsewhere")
    assert len(fake_openai.requests) == 1
    assert second.read_bytes() == first.read_bytes() and second.parent == tmp_path / "elsewhere"
    speak(settings, out_dir, voice="echo")  # another voice is other audio
    assert len(fake_openai.requests) == 2


def test_invalid_key_fails_at_once_with_openai_message(fake_openai, make_settings, out_dir):
    settings = make_settings(fake_openai, openai_api_key="placeholder-wrong-openai-key")
    with pytest.raises(PermanentError, match="invalid_api_key: Incorrect API key provided"):
        speak(settings, out_dir)
    assert len(fake_openai.requests) == 1


def test_quota_exhausted_429_is_permanent(fake_openai, make_settings, out_dir):
    fake_openai.script(fake_openai.quota_exceeded())
    with pytest.raises(PermanentError, match="insufficient_quota: You exceeded your current quota"):
        speak(make_settings(fake_openai), out_dir)
    assert len(fake_openai.requests) == 1


def test_moderation_and_validation_400_are_permanent(fake_openai, make_settings, out_dir):
    fake_openai.script(fake_openai.moderation())
    with pytest.raises(PermanentError, match="flagged by our moderation system"):
        speak(make_settings(fake_openai), out_dir)
    with pytest.raises(PermanentError, match="Invalid value for 'voice'"):
        speak(make_settings(fake_openai), out_dir, voice="nobody")


def test_rate_limit_429_honours_retry_after_then_succeeds(fake_openai, make_settings, out_dir):
    fake_openai.script(fake_openai.rate_limited(retry_after=0.3))
    started = time.monotonic()
    path = speak(make_settings(fake_openai), out_dir)
    assert time.monotonic() - started >= 0.3
    assert len(fake_openai.requests) == 2 and path.exists()


def test_5xx_retried_then_retryable_error(fake_openai, make_settings, out_dir):
    fake_openai.script(*[fake_openai.server_error(503)] * 5)
    with pytest.raises(RetryableError, match=r"HTTP 503 .*gave up after 3 attempts"):
        speak(make_settings(fake_openai, max_retries=2), out_dir)
    assert len(fake_openai.requests) == 3


def test_max_retries_zero_means_one_attempt(fake_openai, make_settings, out_dir):
    fake_openai.script(fake_openai.server_error(500))
    with pytest.raises(RetryableError):
        speak(make_settings(fake_openai, max_retries=0), out_dir)
    assert len(fake_openai.requests) == 1


def test_slow_response_times_out_and_is_retryable(fake_openai, make_settings, out_dir):
    fake_openai.script(*[Reply(200, delay=2.0)] * 2)
    settings = make_settings(fake_openai, provider_read_timeout_s=0.2, max_retries=1)
    with pytest.raises(RetryableError, match="timed out"):
        speak(settings, out_dir)
    assert len(fake_openai.requests) == 2


def test_slow_then_fast_succeeds(fake_openai, make_settings, out_dir):
    fake_openai.script(Reply(200, delay=2.0))
    path = speak(make_settings(fake_openai, provider_read_timeout_s=0.6), out_dir)
    assert path.exists() and len(fake_openai.requests) == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
        Reply(200, {"status": "ok"}),
        Reply(200, b"\x00garbage" * 200, content_type="audio/mpeg"),
        Reply(200, None, truncate=True),
    ],
    ids=["html", "json", "garbage-bytes", "truncated"],
)
def test_non_audio_body_is_retried_then_retryable(fake_openai, make_settings, out_dir, reply):
    fake_openai.script(*[reply] * 3)
    with pytest.raises(RetryableError, match="openai"):
        speak(make_settings(fake_openai, max_retries=2), out_dir)
    assert len(fake_openai.requests) == 3
    assert list(out_dir.iterdir()) == []  # nothing half-written left behind


def test_long_text_split_under_4096_and_joined(fake_openai, make_settings, out_dir):
    text = "".join(f"Sentence number {i} is as long as it needs to be for this test. " for i in range(150))
    path = speak(make_settings(fake_openai), out_dir, text=text)
    inputs = [r.json()["input"] for r in fake_openai.requests]
    assert len(inputs) == 3 and all(len(i) <= 4096 for i in inputs)
    assert all(i.endswith("this test.") for i in inputs)  # cut at sentence ends
    assert " ".join(inputs) == text.strip()
    info = run(probe(path))
    assert path.suffix == ".flac" and info.duration == pytest.approx(3 * 0.6, abs=0.15)


def test_speed_out_of_range_is_payload_error(fake_openai, make_settings, out_dir):
    with pytest.raises(PayloadError, match="speed"):
        speak(make_settings(fake_openai), out_dir, speed=5.0)
    assert fake_openai.requests == []


def test_missing_key_for_explicit_provider(make_settings, out_dir):
    with pytest.raises(PermanentError, match="OPENAI_API_KEY is not set"):
        speak(make_settings(), out_dir)


def test_whole_request_deadline(fake_openai, make_settings, out_dir):
    fake_openai.script(*[Reply(200, delay=1.0)] * 2)
    settings = make_settings(
        fake_openai, provider_read_timeout_s=5, provider_total_timeout_s=0.2, max_retries=1
    )
    with pytest.raises(RetryableError, match="timed out after 0.2s in total"):
        speak(settings, out_dir)


def test_text_over_speech_max_chars_is_payload_error(fake_openai, make_settings, out_dir):
    with pytest.raises(PayloadError, match="SPEECH_MAX_CHARS"):
        speak(make_settings(fake_openai, speech_max_chars=10), out_dir, text="This is longer than ten.")
    assert fake_openai.requests == []
