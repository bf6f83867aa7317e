"""Speech and music providers: the only place that talks to paid audio APIs.

``fetch_speech`` and ``fetch_music`` return an audio file inside ``out_dir`` that ffmpeg can read.
Which providers exist, their keys, limits and the default choice are declared once per provider
and collected in ``worker.providers.registry``. Failures raise the worker's taxonomy
(``worker.errors``):

- ``PayloadError``: bad input (empty text, speed out of the provider's range, unknown provider
  or espeak voice, music longer than the provider allows).
- ``PermanentError``: key missing or rejected, credits/quota exhausted, content moderation, any
  other 4xx validation error -- with the provider's own message (keys redacted).
- ``RetryableError``: timeouts, connection errors, 429 rate limits and 5xx that outlived
  ``MAX_RETRIES`` in-call retries, or a 2xx body that is not valid audio (HTML, JSON, garbage,
  truncated), which is treated as transient.

Provider defaults: ``SPEECH_PROVIDER``/``MUSIC_PROVIDER`` if set, else the first provider by
registry rank whose key is set, else the keyless local one (``registry.default_rule``).
"""

from __future__ import annotations

import functools
import os
import shutil
import ssl
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from loguru import logger

from worker.errors import PayloadError
from worker.providers import registry
from worker.providers.cache import AudioCache, cache_key, fill
from worker.providers.join import join_parts, join_with_pauses
from worker.providers.pauses import PauseMarkerError, split_pauses
from worker.providers.provider import Call, Fields, SpeechCall, SpeechProvider
from worker.providers.retry import RetryPolicy
from worker.providers.settings import ProviderSettings
from worker.providers.textsplit import split_text

__all__ = ["ProviderSettings", "fetch_music", "fetch_speech"]


def _policy(settings: ProviderSettings) -> RetryPolicy:
    return RetryPolicy(
        max_retries=settings.max_retries,
        base_delay_s=settings.retry_delay_ms / 1000,
        max_delay_s=settings.retry_max_delay_ms / 1000,
        retry_after_max_s=settings.retry_after_max_s,
    )


@functools.cache
def _tls(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's default TLS context (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built once per
    process and per value of those variables: building one loads the CA bundle, ~40 ms of CPU that
    every speech or music fetch paid, even espeak's, which never opens a connection."""
    return httpx.create_ssl_context()


def _client(settings: ProviderSettings) -> httpx.AsyncClient:
    c, r = settings.provider_connect_timeout_s, settings.provider_read_timeout_s
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=c, read=r, write=r, pool=c),
        follow_redirects=False,
        verify=_tls(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")),
    )


def _cache(settings: ProviderSettings) -> AudioCache:
    return AudioCache(
        settings.provider_cache_dir,
        settings.provider_cache_max_mb * 1024 * 1024,
        settings.provider_cache_enabled,
    )


async def _cached(
    cache: AudioCache, key: str, ext: str, dest: Path, produce: Callable[[Path], Awaitable[None]]
) -> Path:
    """Fill ``dest`` from the cache's two levels, or by ``produce`` (once across workers)."""
    return await fill(cache, key, ext, dest, produce)


async def _finish(parts: list[Path], final: Path, settings: ProviderSettings) -> Path:
    if len(parts) == 1:
        return parts[0].replace(final)
    return await join_parts(parts, final, settings.join_crossfade_ms)


async def fetch_speech(
    *,
    text: str,
    provider: str | None,
    voice: str | None,
    model: str | None,
    speed: float = 1.0,
    out_dir: Path,
    settings: ProviderSettings | None = None,
) -> Path:
    """Speak ``text``; return the audio file written inside ``out_dir``.

    Long text is split at sentence boundaries under the provider's limit; the parts are
    synthesized in order (each cached when the provider is paid) and joined with a short crossfade.
    Pause markers (``[pause 10s]``, ``<break time="500ms"/>``; ``worker.providers.pauses``) cut the
    text: each piece is spoken on its own and exact silence is put between them.
    """
    settings = settings or ProviderSettings()
    if not text or not text.strip():
        raise PayloadError("text", "must not be empty")
    if len(text) > settings.speech_max_chars:
        raise PayloadError(
            "text", f"must be at most {settings.speech_max_chars} characters (SPEECH_MAX_CHARS)"
        )
    try:
        segments = split_pauses(text)
    except PauseMarkerError as exc:
        raise PayloadError("text", str(exc)) from None
    speaker = registry.resolve("speech", provider, settings)
    fields = speaker.request_fields(settings, voice=voice, model=model, speed=speed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".speech-{uuid.uuid4().hex[:12]}"
    work.mkdir()
    try:
        if len(segments) == 1:
            return await _speak(str(segments[0]), speaker, fields, out_dir, work, settings)
        items: list[Path | float] = []
        for n, seg in enumerate(segments):
            if isinstance(seg, str):
                items.append(await _speak(seg, speaker, fields, work / f"seg{n:04d}", work, settings))
            else:
                items.append(seg)
        logger.info("speech with {} pause(s) of {:.1f} s in all", sum(isinstance(x, float) for x in items),
                    sum(x for x in items if isinstance(x, float)))  # fmt: skip
        ident = cache_key(provider=speaker.name, voice=voice, model=model, speed=speed, text=text)
        return await join_with_pauses(items, out_dir / f"speech-{speaker.name}-{ident[:16]}.flac")
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _speak(
    text: str, speaker: SpeechProvider, fields: Fields, out_dir: Path, work: Path, settings: ProviderSettings
) -> Path:
    """One piece of text (no pause markers) spoken by ``speaker`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chunks = split_text(text, speaker.max_chars(fields))
    ext = speaker.extension(fields)
    shown = {k: fields[k] for k in ("model", "voice") if k in fields}
    logger.info("speech via {} {}: {} chars in {} part(s)", speaker.name, shown, len(text), len(chunks))
    cache, policy = _cache(settings), _policy(settings)
    parts, keys = [], []
    async with _client(settings) as client:
        for i, chunk in enumerate(chunks):
            dest = work / f"part-{uuid.uuid4().hex[:12]}.{ext}"
            context: dict[str, str | None] = {}
            if speaker.neighbours:
                context = {
                    "previous_text": chunks[i - 1] if i else None,
                    "next_text": chunks[i + 1] if i + 1 < len(chunks) else None,
                }
            key = cache_key(provider=speaker.name, fields=fields, text=chunk, **context)

            async def produce(d: Path, chunk: str = chunk, context: dict[str, str | None] = context) -> None:
                await speaker.synthesize(SpeechCall(client, settings, policy, fields, d, chunk, **context))

            if speaker.cached:
                parts.append(await _cached(cache, key, ext, dest, produce))
            else:
                await produce(dest)
                parts.append(dest)
            keys.append(key)
    final_ext = ext if len(parts) == 1 else "flac"
    final = out_dir / f"speech-{speaker.name}-{cache_key(parts=keys)[:16]}.{final_ext}"
    return await _finish(parts, final, settings)


async def fetch_music(
    *,
    provider: str | None,
    prompt: str,
    seconds: float,
    seed: int | None,
    out_dir: Path,
    settings: ProviderSettings | None = None,
) -> Path:
    """Generate ``seconds`` of music for ``prompt``; return the audio file inside ``out_dir``.

    Stability rounds ``seconds`` up to whole seconds and asks for at most 190 (its limit; the
    render engine loops music beds), so the file may be shorter or slightly longer than
    ``seconds``. ``local`` renders exactly ``seconds`` (up to 3600).
    """
    settings = settings or ProviderSettings()
    composer = registry.resolve("music", provider, settings)
    fields = composer.request_fields(settings, prompt=prompt, seconds=seconds, seed=seed)
    ext = composer.extension(fields)
    key = cache_key(provider=composer.name, fields=fields)
    logger.info("music via {}: {}s, seed {}", composer.name, seconds, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"music-{composer.name}-{key[:16]}.{ext}"
    cache, policy = _cache(settings), _policy(settings)
    async with _client(settings) as client:

        async def produce(d: Path) -> None:
            tmp = d.with_name(f".{d.stem}.{uuid.uuid4().hex[:8]}{d.suffix}")
            try:
                await composer.generate(Call(client, settings, policy, fields, tmp))
                tmp.replace(d)
            finally:
                tmp.unlink(missing_ok=True)

        if composer.cached:
            return await _cached(cache, key, ext, final, produce)
        await produce(final)
        return final
