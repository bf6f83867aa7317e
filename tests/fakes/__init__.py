"""Local HTTP fakes of the paid audio APIs (OpenAI, ElevenLabs, Stability), for tests.

Each fake is a ``FakeServer``: ``.start()`` / ``.stop()`` (or ``with``), ``.url``, ``.env()`` (the
worker's environment variables pointing at it), ``.requests`` (every request received) and
``.script(Reply(...), ...)`` to queue scripted answers (status, body, Retry-After, delay, garbage,
truncation) consumed one per request before the fake's default behaviour resumes.
"""

from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeServer, RecordedRequest, Reply
from tests.fakes.stability import FakeStability

__all__ = ["FAKES", "FakeElevenLabs", "FakeOpenAI", "FakeServer", "FakeStability", "RecordedRequest", "Reply"]

FAKES: dict[str, type[FakeServer]] = {
    "openai": FakeOpenAI,
    "elevenlabs": FakeElevenLabs,
    "stability": FakeStability,
}
"""The fake of every provider that needs a key, by registry name (tests walk the registry through it)."""
