"""The one request path of an HTTP provider: key, request slot, retries, streamed and proven audio.

A provider module only says how its request looks (``build(key)``) and how its errors read
(``parse_error``); everything around it is here, the same for every provider.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from worker.providers.base import ErrorParser, stream_audio
from worker.providers.provider import Call, Provider
from worker.providers.ratelimit import request_slot
from worker.providers.retry import with_retries


async def fetch_audio(
    provider: Provider,
    call: Call,
    build: Callable[[str], httpx.Request],
    parse_error: ErrorParser,
    check: Callable[[httpx.Response], None] | None = None,
) -> None:
    """Send ``build(key)`` under the provider's request slot, retrying transient failures, and
    stream the audio answer to ``call.dest`` (see ``base.stream_audio`` for the classification)."""
    settings = call.settings
    key = provider.key(settings)
    limits = provider.limits(settings)

    async def attempt() -> None:
        async with request_slot(limits):
            await stream_audio(
                call.client,
                build(key),
                provider=provider.name,
                dest=call.dest,
                parse_error=parse_error,
                secrets=settings.secrets(),
                check=check,
                total_timeout=settings.provider_total_timeout_s,
            )

    await with_retries(attempt, policy=call.policy, what=provider.name)
