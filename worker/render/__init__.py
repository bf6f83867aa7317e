"""Render engine: a validated spec rendered by ffmpeg into a loudness-normalised master and preview.

Public API: :func:`parse_spec`, :class:`RenderSpec`, :func:`render`, :class:`RenderResult`,
:class:`RenderSettings`.
"""

from worker.render.engine import RenderResult, render
from worker.render.parse import parse_spec
from worker.render.settings import RenderSettings
from worker.render.spec import RenderSpec

__all__ = ["RenderResult", "RenderSettings", "RenderSpec", "parse_spec", "render"]
