"""Stability Stable Audio 2: ``POST .../v2beta/audio/stable-audio-2/text-to-audio``.

Multipart form ``prompt, duration, output_format, seed[, steps, cfg_scale]``;
``Authorization: Bearer <key>``; ``accept: audio/*`` returns the raw audio (headers
``finish-reason``: SUCCESS or CONTENT_FILTERED, and ``seed``). Errors are JSON
``{"id", "name", "errors": [...]}`` -- 400 bad_request, 401, 402 payment_required, 403
content_moderation, 413, 422, 429 (150 requests per 10 s), 5xx.

``STABLE_AUDIO_API_URL`` mapping: a URL ending in ``/text-to-audio`` is the endpoint verbatim;
otherwise the path from the first ``/v2beta`` on is dropped (so the old worker's default
``https://api.stability.ai/v2beta/stable-audio`` still works) and the endpoint path is appended
to what remains (an origin, or a proxy with a path prefix).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import httpx
from loguru import logger

from worker.errors import PayloadError, PermanentError
from worker.providers.base import ProviderFault
from worker.providers.http import fetch_audio
from worker.providers.provider import Call, Fields, MusicProvider

if TYPE_CHECKING:
    from worker.providers.settings import ProviderSettings

NAME = "stability"
ENDPOINT_PATH = "/v2beta/audio/stable-audio-2/text-to-audio"
MAX_SECONDS = 190
MAX_SEED = 4_294_967_294
MAX_PROMPT = 10_000


def endpoint(api_url: str) -> str:
    """Map ``STABLE_AUDIO_API_URL`` onto the text-to-audio endpoint (see module docstring)."""
    url = api_url.rstrip("/")
    if url.endswith("/text-to-audio"):
        return url
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    path = "/" + path if slash else ""
    cut = path.find("/v2beta")
    if cut >= 0:
        path = path[:cut]
    return f"{scheme}{sep}{host}{path}{ENDPOINT_PATH}"


def parse_error(body: Any) -> ProviderFault | None:
    if not isinstance(body, dict) or ("name" not in body and "errors" not in body):
        return None
    errors = body.get("errors") or []
    message = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
    return ProviderFault(
        code=str(body.get("name") or "error"), message=message or str(body.get("message", ""))
    )


def request_fields(settings: ProviderSettings, *, prompt: str, seconds: float, seed: int | None) -> Fields:
    """The multipart form fields (all strings), validated."""
    if not prompt.strip():
        raise PayloadError("prompt", "must not be empty")
    if len(prompt) > MAX_PROMPT:
        raise PayloadError("prompt", f"must be at most {MAX_PROMPT} characters for stability")
    if not seconds > 0:
        raise PayloadError("seconds", "must be > 0")
    if seconds > MAX_SECONDS:
        logger.info(
            "stability makes at most {}s per request; asking for {}s (the render engine loops music beds)",
            MAX_SECONDS,
            MAX_SECONDS,
        )
        seconds = MAX_SECONDS
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise PayloadError("seed", f"must be between 0 and {MAX_SEED} for stability")
    fields = {
        "prompt": prompt,
        "duration": str(max(1, math.ceil(seconds))),
        "output_format": settings.stable_audio_output_format,
        "seed": str(seed if seed is not None else 0),  # 0 asks the API for a random seed
    }
    if settings.stable_audio_steps is not None:
        fields["steps"] = str(settings.stable_audio_steps)
    if settings.stable_audio_cfg_scale is not None:
        fields["cfg_scale"] = f"{settings.stable_audio_cfg_scale:g}"
    return fields


def _check_finish(response: httpx.Response) -> None:
    reason = response.headers.get("finish-reason", "SUCCESS").upper()
    if reason == "CONTENT_FILTERED":
        raise PermanentError(
            "stability: content_moderation: the generated audio was filtered (finish-reason CONTENT_FILTERED)"
        )


def extension(fields: Fields) -> str:
    return str(fields["output_format"])


async def generate(call: Call) -> None:
    """Generate music for ``call.fields`` into ``call.dest``."""
    url = endpoint(call.settings.stable_audio_api_url)

    def build(key: str) -> httpx.Request:
        # files= forces multipart/form-data even though no field is a file
        return call.client.build_request(
            "POST",
            url,
            files={k: (None, str(v)) for k, v in call.fields.items()},
            headers={"Authorization": f"Bearer {key}", "accept": "audio/*"},
        )

    await fetch_audio(PROVIDER, call, build, parse_error, check=_check_finish)


PROVIDER = MusicProvider(
    name=NAME,
    docs="`POST .../v2beta/audio/stable-audio-2/text-to-audio`",
    default_rank=10,
    key_setting="stable_audio_api_key",
    url_setting="stable_audio_api_url",
    rate_settings=("stable_audio_rate_limit", "stable_audio_rate_window_s"),
    concurrency_setting="stable_audio_max_concurrent",
    request_fields=request_fields,
    extension=extension,
    generate=generate,
)
