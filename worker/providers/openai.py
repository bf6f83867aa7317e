"""OpenAI text-to-speech: ``POST {OPENAI_BASE_URL}/audio/speech``.

JSON body ``{model, input, voice, response_format, speed}``, ``Authorization: Bearer <key>``;
``input`` is at most 4096 characters, ``speed`` 0.25-4.0. Errors are
``{"error": {"message", "type", "param", "code"}}``; a 429 whose type/code is
``insufficient_quota`` means the credits are gone (permanent), any other 429 is a rate limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from worker.errors import PayloadError
from worker.providers.base import ProviderFault
from worker.providers.http import fetch_audio
from worker.providers.provider import Fields, SpeechCall, SpeechProvider

if TYPE_CHECKING:
    from worker.providers.settings import ProviderSettings

NAME = "openai"
MAX_CHARS = 4096
SPEED_RANGE = (0.25, 4.0)


def parse_error(body: Any) -> ProviderFault | None:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None
    code = err.get("code") or err.get("type") or "error"
    if err.get("type") == "insufficient_quota":
        code = "insufficient_quota"
    return ProviderFault(code=str(code), message=str(err.get("message") or ""))


def request_fields(
    settings: ProviderSettings, *, voice: str | None, model: str | None, speed: float
) -> Fields:
    """Everything but the text that shapes the audio (also the cache key's settings)."""
    if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
        raise PayloadError("speed", f"must be between {SPEED_RANGE[0]} and {SPEED_RANGE[1]} for openai")
    return {
        "model": model or settings.openai_tts_model,
        "voice": voice or settings.openai_tts_voice,
        "response_format": settings.openai_response_format,
        "speed": speed,
    }


def max_chars(fields: Fields) -> int:
    return MAX_CHARS


def extension(fields: Fields) -> str:
    return str(fields["response_format"])


async def synthesize(call: SpeechCall) -> None:
    """Synthesize ``call.text`` (<= 4096 chars) into ``call.dest``."""
    settings, fields = call.settings, call.fields
    body = {k: fields[k] for k in ("model", "voice", "response_format", "speed")} | {"input": call.text}

    def build(key: str) -> httpx.Request:
        url = f"{settings.openai_base_url}/audio/speech"
        return call.client.build_request("POST", url, json=body, headers={"Authorization": f"Bearer {key}"})

    await fetch_audio(PROVIDER, call, build, parse_error)


PROVIDER = SpeechProvider(
    name=NAME,
    docs="`POST {OPENAI_BASE_URL}/audio/speech`",
    default_rank=10,
    key_setting="openai_api_key",
    url_setting="openai_base_url",
    rate_settings=("openai_rate_limit", "openai_rate_window_s"),
    concurrency_setting="openai_max_concurrent",
    request_fields=request_fields,
    max_chars=max_chars,
    extension=extension,
    synthesize=synthesize,
)
