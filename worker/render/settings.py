"""Operator settings of the render engine, read from the environment and validated."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RenderSettings(BaseSettings):
    """Limits and tools of the render engine.

    Each field reads the environment variable named in its alias (e.g. ``RENDER_MAX_DURATION_S``);
    keyword arguments by field name also work (``RenderSettings(max_duration_s=60)``).
    """

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    max_duration_s: float = Field(3600.0, ge=1, le=14400, alias="RENDER_MAX_DURATION_S")
    """Longest track a spec may ask for (seconds); "fit" durations are capped to it."""
    max_layers: int = Field(16, ge=1, le=64, alias="RENDER_MAX_LAYERS")
    """Most layers a spec may hold."""
    stall_timeout_s: float = Field(60.0, ge=1, le=3600, alias="FFMPEG_STALL_TIMEOUT_S")
    """ffmpeg is killed when its output time has not advanced for this long (seconds)."""
    timeout_s: float = Field(7200.0, ge=10, le=86400, alias="RENDER_TIMEOUT_S")
    """Wall-clock limit of one whole render (all passes), seconds."""
    ffmpeg_path: str = Field("ffmpeg", min_length=1, alias="FFMPEG_PATH")
    """ffmpeg executable (name on PATH or absolute path)."""
    ffprobe_path: str = Field("ffprobe", min_length=1, alias="FFPROBE_PATH")
    """ffprobe executable (name on PATH or absolute path)."""
    tmp_dir: Path | None = Field(None, alias="RENDER_TMP_DIR")
    """Parent of the per-job temp directories (default: the system temp dir). The unnormalised mix
    is kept there between passes as 32-bit float PCM: ~21 MB per minute at 44.1 kHz."""
    off_target: Literal["warn", "fail"] = Field("warn", alias="RENDER_OFF_TARGET")
    """A render whose measured loudness misses the target (+-1 LU) or whose master, preview or
    full-length MP3 true peak exceeds the ceiling: "warn" completes the job with loudness.on_target
    false and a warning naming what is off and its figures; "fail" fails it (permanently) with them."""
