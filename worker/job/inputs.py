"""Fetch the audio file one speech or music layer needs, into the job's temp dir.

- speech: the speech provider (``fetch_speech``);
- music ``generate``: the music provider (``fetch_music``);
- music ``object``: a file in storage: ``bucket/key`` when the first path segment is a bucket this
  worker uses (master or preview bucket), otherwise a key in the master bucket;
- music ``url``: an http(s) download, streamed to disk with a size cap and a timeout; hosts that
  resolve to private or local addresses are refused (``worker.job.urlguard``) unless
  ``INPUT_URL_ALLOW_PRIVATE`` is set.

Every ``PayloadError`` names the layer's field (``layers[2].speed``), since provider errors only
know the bare field.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath

import httpx

from worker.errors import PayloadError, PermanentError, RetryableError
from worker.job.urlguard import MAX_REDIRECTS, AddressPolicy, guarded_get, is_public
from worker.providers import ProviderSettings, fetch_music, fetch_speech
from worker.render.spec import InputLayer, MusicLayer, SpeechLayer
from worker.storage import ObjectNotFound, Storage

DOWNLOAD_MAX_BYTES = 512 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 120.0
DOWNLOAD_CONNECT_TIMEOUT_S = 10.0
_AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".webm"}


def stage_of(layer: InputLayer) -> str:
    """The progress stage while fetching ``layer``: tts for speech, generate for generated music,
    fetch for music from storage or a URL."""
    if isinstance(layer, SpeechLayer):
        return "tts"
    return "generate" if layer.generate is not None else "fetch"


def _suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if suffix in _AUDIO_SUFFIXES else ".audio"


def _rename(exc: PayloadError, prefix: str) -> PayloadError:
    return PayloadError(f"{prefix}.{exc.field}", exc.rule)


async def fetch_input(
    layer: InputLayer, out_dir: Path, *, providers: ProviderSettings, storage: Storage | None
) -> Path:
    """Write ``layer``'s audio into ``out_dir`` and return its path (errors: ``worker.errors``)."""
    key = layer.key
    if isinstance(layer, SpeechLayer):
        try:
            return await fetch_speech(
                text=layer.text,
                provider=layer.provider,
                voice=layer.voice,
                model=layer.model,
                speed=layer.speed,
                out_dir=out_dir,
                settings=providers,
            )
        except PayloadError as exc:
            raise _rename(exc, key) from None
    assert isinstance(layer, MusicLayer)
    if layer.generate is not None:
        g = layer.generate
        try:
            return await fetch_music(
                provider=g.provider,
                prompt=g.prompt,
                seconds=g.seconds,
                seed=g.seed,
                out_dir=out_dir,
                settings=providers,
            )
        except PayloadError as exc:
            raise _rename(exc, f"{key}.generate") from None
    if layer.object is not None:
        if storage is None:
            raise PermanentError(f"{key}.object: storage is not configured")
        return await asyncio.to_thread(download_object, storage, layer.object, out_dir, f"{key}.object")
    assert layer.url is not None
    return await download_url(
        str(layer.url), out_dir, f"{key}.url", allow_private=providers.input_url_allow_private
    )


def split_object_path(storage: Storage, path: str) -> tuple[str, str]:
    """``(bucket, key)`` of a spec's ``object``: ``bucket/key`` when the first segment is one of
    the worker's buckets, else a key in the master bucket."""
    s = storage.settings
    first, _, rest = path.partition("/")
    if rest and first in {s.master_bucket, s.preview_bucket}:
        return first, rest
    return s.master_bucket, path


def download_object(storage: Storage, path: str, out_dir: Path, field: str) -> Path:
    """Download a storage object (blocking: call through ``asyncio.to_thread``)."""
    bucket, key = split_object_path(storage, path)
    dest = out_dir / f"input-{uuid.uuid4().hex[:8]}{_suffix(key)}"
    try:
        return storage.download_file(bucket, key, dest)
    except ObjectNotFound as exc:
        raise PayloadError(field, str(exc)) from None


async def download_url(
    url: str,
    out_dir: Path,
    field: str,
    *,
    max_bytes: int = DOWNLOAD_MAX_BYTES,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
    allow_private: bool = False,
    allowed: AddressPolicy = is_public,
) -> Path:
    """Stream an http(s) URL to a file in ``out_dir``.

    4xx (and a body over ``max_bytes``) is the job's fault: PayloadError naming ``field``.
    5xx, 408/429, timeouts and connection errors (including a host that does not resolve) may
    pass: RetryableError. Unless ``allow_private``, every hop's addresses must pass ``allowed``
    (``worker.job.urlguard``), else PayloadError.
    """
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https"):
        raise PayloadError(field, "must be http or https")
    dest = out_dir / f"input-{uuid.uuid4().hex[:8]}{_suffix(parsed.path)}"
    host = parsed.host
    timeout = httpx.Timeout(timeout_s, connect=DOWNLOAD_CONNECT_TIMEOUT_S)
    try:
        async with (
            asyncio.timeout(timeout_s),
            _get(url, field, timeout, None if allow_private else allowed) as resp,
        ):
            if resp.status_code in (408, 425, 429) or resp.status_code >= 500:
                raise RetryableError(f"{field}: {host} answered HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise PayloadError(field, f"download failed: {host} answered HTTP {resp.status_code}")
            declared = int(resp.headers.get("content-length") or 0)
            if declared > max_bytes:
                raise PayloadError(field, f"file is larger than {max_bytes // (1024 * 1024)} MiB")
            size = 0
            with dest.open("wb") as file:
                async for chunk in resp.aiter_bytes(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadError(field, f"file is larger than {max_bytes // (1024 * 1024)} MiB")
                    file.write(chunk)
    except (PayloadError, RetryableError):
        dest.unlink(missing_ok=True)
        raise
    except TimeoutError:
        dest.unlink(missing_ok=True)
        raise RetryableError(f"{field}: download from {host} timed out after {timeout_s:g} s") from None
    except httpx.TooManyRedirects:
        dest.unlink(missing_ok=True)
        raise PayloadError(field, "too many redirects") from None
    except httpx.UnsupportedProtocol:
        dest.unlink(missing_ok=True)
        raise PayloadError(field, "redirected to a URL that is not http or https") from None
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise RetryableError(f"{field}: download from {host} failed: {type(exc).__name__}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


@asynccontextmanager
async def _get(
    url: str, field: str, timeout: httpx.Timeout, allowed: AddressPolicy | None
) -> AsyncIterator[httpx.Response]:
    """The streamed response to a GET of ``url``: through the SSRF guard, or plain httpx when
    ``allowed`` is None (private addresses allowed)."""
    if allowed is not None:
        async with guarded_get(url, field, timeout=timeout, allowed=allowed) as resp:
            yield resp
        return
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS) as client,
        client.stream("GET", url) as resp,
    ):
        yield resp
