"""ElevenLabs TTS against the local fake."""

from __future__ import annotations

import pytest

from tests.providers.conftest import run
from worker.errors import PayloadError, PermanentError, RetryableError
from worker.providers import fetch_speech
from worker.providers.audio import probe

pytestmark = pytest.mark.timeout(60)


def speak(settings, out_dir, text="Hello from ElevenLabs.", **kw):  # type: ignore[no-untyped-def]
    args = {"provider": "elevenlabs", "voice": None, "model": None} | kw
    return run(fetch_speech(text=text, out_dir=out_dir, settings=settings, **args))


def test_sends_the_documented_request(fake_elevenlabs, make_settings, out_dir):
    path = speak(
        make_settings(fake_elevenlabs),
        out_dir,
        voice="pNInz6obpgDQGcFmaJgB",
        model="eleven_flash_v2_5",
        speed=1.1,
    )
    assert path.parent == out_dir and run(probe(path)).duration > 0.3
    [req] = fake_elevenlabs.requests
    assert (req.method, req.path) == ("POST", "/v1/text-to-speech/pNInz6obpgDQGcFmaJgB")
    assert req.query == {"output_format": ["mp3_44100_128"]}
    assert req.headers["xi-api-key"] == fake_elevenlabs.api_key
    assert "authorization" not in req.headers
    assert req.json() == {
        "text": "Hello from ElevenLabs.",
        "model_id": "eleven_flash_v2_5",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.1},
    }


def test_default_voice_and_model(fake_elevenlabs, make_settings, out_dir):
    settings = make_settings(fake_elevenlabs, elevenlabs_output_format="wav_24000")
    path = run(
        fetch_speech(text="Hi.", provider=None, voice=None, model=None, out_dir=out_dir, settings=settings)
    )
    [req] = fake_elevenlabs.requests
    assert req.path == "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM"
    assert req.json()["model_id"] == "eleven_multilingual_v2"
    assert req.query["output_format"] == ["wav_24000"] and path.suffix == ".wav"


def test_cache_hit_makes_no_request(fake_elevenlabs, make_settings, out_dir):
    settings = make_settings(fake_elevenlabs)
    speak(settings, out_dir)
    speak(settings, out_dir)
    assert len(fake_elevenlabs.requests) == 1


def test_invalid_key_and_quota_are_permanent_with_their_message(fake_elevenlabs, make_settings, out_dir):
    with pytest.raises(PermanentError, match="HTTP 401 invalid_api_key: Invalid API key"):
        speak(make_settings(fake_elevenlabs, elevenlabs_api_key="xi-wrong"), out_dir)
    fake_elevenlabs.script(fake_elevenlabs.quota_exceeded())
    with pytest.raises(PermanentError, match="quota_exceeded: This request exceeds your quota"):
        speak(make_settings(fake_elevenlabs), out_dir)
    assert len(fake_elevenlabs.requests) == 2


def test_validation_422_lists_the_fields(fake_elevenlabs, make_settings, out_dir):
    fake_elevenlabs.script(fake_elevenlabs.validation_error())
    with pytest.raises(PermanentError, match="HTTP 422 validation_error: body.text: field required"):
        speak(make_settings(fake_elevenlabs), out_dir)


def test_concurrency_429_and_busy_503_are_retried(fake_elevenlabs, make_settings, out_dir):
    fake_elevenlabs.script(fake_elevenlabs.too_many_concurrent(), fake_elevenlabs.system_busy())
    assert speak(make_settings(fake_elevenlabs), out_dir).exists()
    assert len(fake_elevenlabs.requests) == 3


def test_busy_until_retries_run_out(fake_elevenlabs, make_settings, out_dir):
    fake_elevenlabs.script(*[fake_elevenlabs.system_busy()] * 4)
    with pytest.raises(RetryableError, match="system_busy"):
        speak(make_settings(fake_elevenlabs, max_retries=3), out_dir)
    assert len(fake_elevenlabs.requests) == 4


def test_long_text_split_under_model_limit_with_context(fake_elevenlabs, make_settings, out_dir):
    text = " ".join(
        f"Paragraph sentence {i} carries some words to make the text long enough." for i in range(300)
    )
    assert len(text) > 20_000
    path = speak(make_settings(fake_elevenlabs), out_dir, text=text)  # multilingual v2: 10,000 chars
    bodies = [r.json() for r in fake_elevenlabs.requests]
    assert len(bodies) == 3 and all(len(b["text"]) <= 10_000 for b in bodies)
    assert " ".join(b["text"] for b in bodies) == text
    assert "previous_text" not in bodies[0] and bodies[0]["next_text"] == bodies[1]["text"]
    assert bodies[2]["previous_text"] == bodies[1]["text"] and "next_text" not in bodies[2]
    assert run(probe(path)).duration == pytest.approx(1.8, abs=0.15)


def test_speed_outside_elevenlabs_range(fake_elevenlabs, make_settings, out_dir):
    with pytest.raises(PayloadError, match="speed"):
        speak(make_settings(fake_elevenlabs), out_dir, speed=2.0)
