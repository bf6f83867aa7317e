"""Every provider setting: environment variable, default and allowed range.

Keys are ``SecretStr`` so they never show in ``repr``, logs or error messages. Field names are the
environment variable names lower-cased (pydantic-settings matches them case-insensitively).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.providers import registry
from worker.providers.provider import Kind


class ProviderSettings(BaseSettings):
    """Configuration of the speech and music providers and of music url downloads, read from the
    environment."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    # --- provider choice -------------------------------------------------------------------
    speech_provider: str | None = Field(
        None,
        description=f"Default speech provider; unset: {registry.default_rule('speech')}.",
        json_schema_extra={"enum": list(registry.SPEECH_PROVIDERS)},
    )
    music_provider: str | None = Field(
        None,
        description=f"Default music provider; unset: {registry.default_rule('music')}.",
        json_schema_extra={"enum": list(registry.MUSIC_PROVIDERS)},
    )

    # --- OpenAI ------------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        None, description="OpenAI key (secret); enables the openai speech provider."
    )
    openai_base_url: str = Field("https://api.openai.com/v1", description="Base; /audio/speech is appended.")
    openai_tts_model: str = Field("tts-1", description="OpenAI TTS model when the layer names none.")
    openai_tts_voice: str = Field("alloy", description="OpenAI voice when the layer names none.")
    openai_response_format: Literal["mp3", "opus", "aac", "flac", "wav"] = Field(
        "mp3", description="Audio format requested from OpenAI."
    )
    openai_rate_limit: int = Field(
        50, ge=1, le=100_000, description="Requests per OPENAI_RATE_WINDOW_S, across the whole fleet."
    )
    openai_rate_window_s: float = Field(
        60.0, gt=0, le=3600, description="Window of OPENAI_RATE_LIMIT, seconds."
    )
    openai_max_concurrent: int | None = Field(
        None, ge=1, le=1000, description="Requests in flight at once across the whole fleet; unset: no limit."
    )

    # --- ElevenLabs --------------------------------------------------------------------------
    elevenlabs_api_key: SecretStr | None = Field(
        None, description="ElevenLabs key (secret); enables the elevenlabs speech provider."
    )
    elevenlabs_base_url: str = Field(
        "https://api.elevenlabs.io", description="/v1/text-to-speech/{voice} appended."
    )
    elevenlabs_model: str = Field(
        "eleven_multilingual_v2",
        description="ElevenLabs model_id when the layer names none; sets the text limit.",
    )
    elevenlabs_voice_id: str = Field(
        "21m00Tcm4TlvDq8ikWAM", description="ElevenLabs voice_id when the layer names none."
    )
    elevenlabs_output_format: str = Field(
        "mp3_44100_128",
        pattern=r"^(mp3|opus|wav)_[0-9_]+$",
        description="output_format query (mp3_*, opus_* or wav_*; headerless pcm/ulaw are refused).",
    )
    elevenlabs_stability: float = Field(0.5, ge=0.0, le=1.0, description="voice_settings.stability.")
    elevenlabs_similarity_boost: float = Field(
        0.75, ge=0.0, le=1.0, description="voice_settings.similarity_boost."
    )
    elevenlabs_rate_limit: int = Field(
        100, ge=1, le=100_000, description="Requests per ELEVENLABS_RATE_WINDOW_S, across the whole fleet."
    )
    elevenlabs_rate_window_s: float = Field(
        60.0, gt=0, le=3600, description="Window of ELEVENLABS_RATE_LIMIT, seconds."
    )
    elevenlabs_max_concurrent: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Your plan's concurrency limit (ElevenLabs counts concurrent requests per account). Requests in flight at once across the whole fleet; unset: no limit.",
    )

    # --- Stability Stable Audio ----------------------------------------------------------------
    stable_audio_api_key: SecretStr | None = Field(
        None, description="Stability key (secret); enables the stability music provider."
    )
    stable_audio_api_url: str = Field(
        "https://api.stability.ai",
        description="Origin (optionally with a proxy path prefix); anything from /v2beta on is replaced by "
        "/v2beta/audio/stable-audio-2/text-to-audio. A URL already ending in /text-to-audio is used verbatim.",
    )
    stable_audio_output_format: Literal["mp3", "wav"] = Field("mp3", description="output_format form field.")
    stable_audio_steps: int | None = Field(None, ge=1, le=100, description="Unset: the API's default.")
    stable_audio_cfg_scale: float | None = Field(
        None, ge=1.0, le=25.0, description="Unset: the API's default."
    )
    stable_audio_rate_limit: int = Field(
        150, ge=1, le=100_000, description="Stability allows 150 per 10 s (fleet-wide)."
    )
    stable_audio_rate_window_s: float = Field(
        10.0, gt=0, le=3600, description="Window of STABLE_AUDIO_RATE_LIMIT, seconds."
    )
    stable_audio_max_concurrent: int | None = Field(
        None, ge=1, le=1000, description="Requests in flight at once across the whole fleet; unset: no limit."
    )

    # --- espeak-ng ---------------------------------------------------------------------------
    espeak_binary: str = Field("espeak-ng", description="espeak-ng executable (name on PATH or path).")
    espeak_voice: str = Field("en-us", description="espeak-ng voice when the layer names none.")

    # --- retries and timeouts ----------------------------------------------------------------
    provider_slot_lease_s: int = Field(
        30,
        ge=3,
        le=600,
        description="Lease of a fleet-wide provider slot, renewed while its request runs; a dead worker's "
        "slot is free again after this long.",
    )
    provider_slot_wait_max_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Longest a job waits for a provider slot (its stage says so) before it is retried later.",
    )
    max_retries: int = Field(3, ge=0, le=10, description="Retries after the first attempt, per HTTP request.")
    retry_delay_ms: int = Field(2000, ge=0, le=600_000, description="Base of the exponential backoff.")
    retry_max_delay_ms: int = Field(30_000, ge=0, le=3_600_000, description="Cap of one backoff sleep.")
    retry_after_max_s: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="A longer Retry-After gives up at once (RetryableError: queue retries).",
    )
    provider_connect_timeout_s: float = Field(10.0, gt=0, le=600, description="Connect timeout, seconds.")
    provider_read_timeout_s: float = Field(
        180.0, gt=0, le=3600, description="Max wait between response bytes."
    )
    provider_total_timeout_s: float = Field(
        600.0, gt=0, le=7200, description="Max time of one whole request."
    )
    speech_max_chars: int = Field(100_000, ge=1, le=10_000_000, description="Longer text is a PayloadError.")

    # --- cache and join ----------------------------------------------------------------------
    provider_cache_enabled: bool = Field(True, description="Cache paid provider output (never pay twice).")
    provider_cache_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "audio-worker-provider-cache",
        description="Cache directory; default $TMPDIR/audio-worker-provider-cache (use a persistent volume).",
    )
    provider_cache_max_mb: int = Field(2048, ge=0, le=10_000_000, description="0 = no cap; LRU eviction.")
    join_crossfade_ms: int = Field(15, ge=0, le=1000, description="Crossfade between synthesized text parts.")

    # --- music url inputs --------------------------------------------------------------------
    input_url_allow_private: bool = Field(
        False,
        description="Let music url layers download from loopback, private, link-local (cloud metadata) "
        "and other non-public addresses; off: such URLs fail the job (SSRF guard). Only for trusted payloads.",
    )

    @field_validator("speech_provider", "music_provider")
    @classmethod
    def _registered(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind: Kind = "speech" if info.field_name == "speech_provider" else "music"
        if value is not None and value not in registry.names(kind):
            raise ValueError(f"unknown {kind} provider {value!r}; one of {', '.join(registry.names(kind))}")
        return value

    @field_validator(*registry.url_settings())
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    def secrets(self) -> list[str]:
        """Every configured key's plain text, for redaction."""
        keys = (p.secret(self) for p in registry.PROVIDERS)
        return [k.get_secret_value() for k in keys if k is not None and k.get_secret_value()]
