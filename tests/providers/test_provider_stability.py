"""Stability Stable Audio 2 against the local fake."""

from __future__ import annotations

import pytest

from tests.fakes import Reply
from tests.providers.conftest import run
from worker.errors import PayloadError, PermanentError, RetryableError
from worker.providers import fetch_music
from worker.providers.audio import probe
from worker.providers.stability import endpoint

pytestmark = pytest.mark.timeout(60)


def compose(
    settings, out_dir, prompt="warm analog synth pad, slow", seconds=12.5, seed=42, provider="stability"
):  # type: ignore[no-untyped-def]
    return run(
        fetch_music(
            provider=provider, prompt=prompt, seconds=seconds, seed=seed, out_dir=out_dir, settings=settings
        )
    )


def test_sends_multipart_form_with_accept_audio(fake_stability, make_settings, out_dir):
    settings = make_settings(fake_stability, stable_audio_steps=50, stable_audio_cfg_scale=7)
    path = compose(settings, out_dir)
    assert path.parent == out_dir and path.suffix == ".mp3" and run(probe(path)).duration > 0.5
    [req] = fake_stability.requests
    assert (req.method, req.path) == ("POST", "/v2beta/audio/stable-audio-2/text-to-audio")
    assert req.headers["authorization"] == f"Bearer {fake_stability.api_key}"
    assert req.headers["accept"] == "audio/*"
    assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert req.form() == {
        "prompt": "warm analog synth pad, slow",
        "duration": "13",
        "output_format": "mp3",
        "seed": "42",
        "steps": "50",
        "cfg_scale": "7",
    }


def test_unset_steps_and_cfg_are_not_sent_and_no_seed_is_zero(fake_stability, make_settings, out_dir):
    compose(make_settings(fake_stability, stable_audio_output_format="wav"), out_dir, seed=None)
    form = fake_stability.requests[0].form()
    assert form == {
        "prompt": "warm analog synth pad, slow",
        "duration": "13",
        "output_format": "wav",
        "seed": "0",
    }


def test_key_selects_stability_by_default_and_cache_prevents_second_payment(
    fake_stability, make_settings, out_dir
):
    settings = make_settings(fake_stability)
    first = compose(settings, out_dir, provider=None)
    second = compose(settings, out_dir, provider=None)
    assert first == second and len(fake_stability.requests) == 1
    compose(settings, out_dir, seed=7)
    assert len(fake_stability.requests) == 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://api.stability.ai/v2beta/stable-audio",
            "https://api.stability.ai/v2beta/audio/stable-audio-2/text-to-audio",
        ),
        ("https://api.stability.ai", "https://api.stability.ai/v2beta/audio/stable-audio-2/text-to-audio"),
        (
            "https://proxy.example/stability/",
            "https://proxy.example/stability/v2beta/audio/stable-audio-2/text-to-audio",
        ),
        ("http://127.0.0.1:9/custom/text-to-audio", "http://127.0.0.1:9/custom/text-to-audio"),
    ],
)
def test_base_url_mapping(url, expected):
    assert endpoint(url) == expected


def test_old_worker_default_style_url_reaches_the_endpoint(fake_stability, make_settings, out_dir):
    settings = make_settings(fake_stability, stable_audio_api_url=f"{fake_stability.url}/v2beta/stable-audio")
    compose(settings, out_dir)
    assert fake_stability.requests[0].path == "/v2beta/audio/stable-audio-2/text-to-audio"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("unauthorized", "HTTP 401 unauthorized: authorization: invalid or missing API key"),
        ("payment_required", "HTTP 402 payment_required: lack of funds"),
        ("content_moderation", "HTTP 403 content_moderation: Your request was flagged"),
    ],
)
def test_permanent_errors_carry_stability_message(fake_stability, make_settings, out_dir, reply, message):
    fake_stability.script(getattr(fake_stability, reply)())
    with pytest.raises(PermanentError, match=message):
        compose(make_settings(fake_stability), out_dir)
    assert len(fake_stability.requests) == 1


def test_bad_request_lists_errors(fake_stability, make_settings, out_dir):
    fake_stability.script(
        Reply(400, {"id": "x", "name": "bad_request", "errors": ["duration: too long", "seed: bad"]})
    )
    with pytest.raises(PermanentError, match="bad_request: duration: too long; seed: bad"):
        compose(make_settings(fake_stability), out_dir)


def test_filtered_output_is_permanent(fake_stability, make_settings, out_dir):
    fake_stability.script(
        Reply(200, headers={"finish-reason": "CONTENT_FILTERED"}, content_type="audio/mpeg")
    )
    with pytest.raises(PermanentError, match="CONTENT_FILTERED"):
        compose(make_settings(fake_stability), out_dir)


def test_rate_limit_and_500_are_retried(fake_stability, make_settings, out_dir):
    fake_stability.script(fake_stability.rate_limited(), fake_stability.server_error())
    assert compose(make_settings(fake_stability), out_dir).exists()
    assert len(fake_stability.requests) == 3


def test_retry_after_beyond_limit_gives_up_at_once(fake_stability, make_settings, out_dir):
    fake_stability.script(fake_stability.rate_limited(retry_after=600))
    with pytest.raises(RetryableError, match="asks to wait 600s"):
        compose(make_settings(fake_stability, retry_after_max_s=60), out_dir)
    assert len(fake_stability.requests) == 1


def test_duration_above_190_is_clamped_and_zero_is_payload_error(fake_stability, make_settings, out_dir):
    compose(make_settings(fake_stability), out_dir, seconds=600)
    assert fake_stability.requests[0].form()["duration"] == "190"
    with pytest.raises(PayloadError, match="seconds"):
        compose(make_settings(fake_stability), out_dir, seconds=0)
    assert len(fake_stability.requests) == 1


def test_explicit_stability_without_key(make_settings, out_dir):
    with pytest.raises(PermanentError, match="STABLE_AUDIO_API_KEY is not set"):
        compose(make_settings(), out_dir)


def test_client_side_rate_limit_spaces_requests(fake_stability, make_settings, out_dir):
    import time

    settings = make_settings(fake_stability, stable_audio_rate_limit=2, stable_audio_rate_window_s=0.5)
    started = time.monotonic()
    for seed in (1, 2, 3):
        compose(settings, out_dir, seed=seed)
    assert time.monotonic() - started >= 0.5 and len(fake_stability.requests) == 3
