"""ElevenLabs text-to-speech: ``POST {ELEVENLABS_BASE_URL}/v1/text-to-speech/{voice_id}``.

Header ``xi-api-key``; query ``output_format``; JSON body ``{text, model_id, voice_settings,
previous_text, next_text}`` (the neighbours keep prosody continuous across split parts). Errors are
``{"detail": {"status", "message"}}`` (e.g. 401 ``invalid_api_key`` / ``quota_exceeded``, 429
``too_many_concurrent_requests``) or FastAPI validation ``{"detail": [{"loc", "msg", "type"}]}``.

Per-request character limits depend on the model (ElevenLabs help centre): Flash/Turbo v2.5
40,000; Flash/Turbo v2 30,000; Multilingual v1/v2 and English v1 10,000; v3 is lower (we use 3,000).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from worker.errors import PayloadError
from worker.providers.base import ProviderFault
from worker.providers.http import fetch_audio
from worker.providers.provider import Fields, SpeechCall, SpeechProvider

if TYPE_CHECKING:
    from worker.providers.settings import ProviderSettings

NAME = "elevenlabs"
SPEED_RANGE = (0.7, 1.2)
MODEL_LIMITS = {
    "eleven_flash_v2_5": 40_000,
    "eleven_turbo_v2_5": 40_000,
    "eleven_flash_v2": 30_000,
    "eleven_turbo_v2": 30_000,
    "eleven_multilingual_v2": 10_000,
    "eleven_multilingual_v1": 10_000,
    "eleven_monolingual_v1": 10_000,
    "eleven_english_v2": 10_000,
    "eleven_v3": 3_000,
}
DEFAULT_LIMIT = 5_000  # unknown model: stay well under every documented limit


def max_chars(fields: Fields) -> int:
    return MODEL_LIMITS.get(fields["model"], DEFAULT_LIMIT)


def parse_error(body: Any) -> ProviderFault | None:
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        return ProviderFault(
            code=str(detail.get("status") or detail.get("code") or "error"),
            message=str(detail.get("message") or ""),
        )
    if isinstance(detail, list) and detail:
        msgs = [
            f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg', '')}"
            for d in detail
            if isinstance(d, dict)
        ]
        return ProviderFault(code="validation_error", message="; ".join(msgs))
    if isinstance(detail, str):
        return ProviderFault(code="error", message=detail)
    return None


def request_fields(
    settings: ProviderSettings, *, voice: str | None, model: str | None, speed: float
) -> Fields:
    if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
        raise PayloadError("speed", f"must be between {SPEED_RANGE[0]} and {SPEED_RANGE[1]} for elevenlabs")
    return {
        "model": model or settings.elevenlabs_model,
        "voice": voice or settings.elevenlabs_voice_id,
        "output_format": settings.elevenlabs_output_format,
        "voice_settings": {
            "stability": settings.elevenlabs_stability,
            "similarity_boost": settings.elevenlabs_similarity_boost,
            "speed": speed,
        },
    }


async def synthesize(call: SpeechCall) -> None:
    """Synthesize ``call.text`` (under the model's limit) into ``call.dest``."""
    settings, fields = call.settings, call.fields
    body: dict[str, Any] = {
        "text": call.text,
        "model_id": fields["model"],
        "voice_settings": fields["voice_settings"],
    }
    if call.previous_text:
        body["previous_text"] = call.previous_text
    if call.next_text:
        body["next_text"] = call.next_text

    def build(key: str) -> httpx.Request:
        return call.client.build_request(
            "POST",
            f"{settings.elevenlabs_base_url}/v1/text-to-speech/{quote(fields['voice'], safe='')}",
            params={"output_format": fields["output_format"]},
            json=body,
            headers={"xi-api-key": key},
        )

    await fetch_audio(PROVIDER, call, build, parse_error)


def extension(fields: Fields) -> str:
    """File extension for an ElevenLabs ``output_format`` such as ``mp3_44100_128``."""
    kind = str(fields["output_format"]).split("_", 1)[0]
    return {"opus": "opus", "wav": "wav"}.get(kind, "mp3")


PROVIDER = SpeechProvider(
    name=NAME,
    docs="`POST {ELEVENLABS_BASE_URL}/v1/text-to-speech/{voice_id}`",
    default_rank=20,
    key_setting="elevenlabs_api_key",
    url_setting="elevenlabs_base_url",
    rate_settings=("elevenlabs_rate_limit", "elevenlabs_rate_window_s"),
    concurrency_setting="elevenlabs_max_concurrent",
    request_fields=request_fields,
    max_chars=max_chars,
    extension=extension,
    synthesize=synthesize,
    neighbours=True,
)
