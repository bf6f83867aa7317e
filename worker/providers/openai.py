"""OpenAI text-to-speech: ``POST {OPENAI_BASE_URL}/audio/speech``.

JSON body ``{model, input, voice, response_format, speed}``, ``Authorization: Bearer <key>``;
``input`` is at most 4096 characters, ``speed`` 0.25-4.0. Errors are
``{"error": {"message", "type", "param", "code"}}``; a 429 whose type/code is
``insufficient_quota`` means the credits are gone (permanent), any other 429 is a rate limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.errors import PayloadError
from worker.providers.base import ProviderFault, stream_audio
from worker.providers.provider import Fields, SpeechCall, SpeechProvider
from worker.providers.ratelimit import request_slot
from worker.providers.retry import with_retries

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
    client, settings, fields = call.client, call.settings, call.fields
    key = PROVIDER.key(settings)
    limits = PROVIDER.limits(settings)

    async def attempt() -> None:
        async with request_slot(limits):
            request = client.build_request(
                "POST",
                f"{settings.openai_base_url}/audio/speech",
                json={
                    "model": fields["model"],
                    "input": call.text,
                    "voice": fields["voice"],
                    "response_format": fields["response_format"],
                    "speed": fields["speed"],
                },
                headers={"Authorization": f"Bearer {key}"},
            )
            await stream_audio(
                client,
                request,
                provider=NAME,
                dest=call.dest,
                parse_error=parse_error,
                secrets=settings.secrets(),
                total_timeout=settings.provider_total_timeout_s,
            )

    await with_retries(attempt, policy=call.policy, what=NAME)


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
