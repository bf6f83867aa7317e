"""Fake of Stability ``POST /v2beta/audio/stable-audio-2/text-to-audio`` (multipart, ``accept: audio/*``).

Errors are ``{"id", "name", "errors": [...]}``; success is raw audio with ``finish-reason`` and
``seed`` headers.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.audio import CONTENT_TYPES, sample_audio
from tests.fakes.server import FakeServer, RecordedRequest, Reply

PATH = "/v2beta/audio/stable-audio-2/text-to-audio"


def error(name: str, *errors: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "name": name, "errors": list(errors)}


class FakeStability(FakeServer):
    """Checks the Bearer key, ``accept``, the multipart fields and their ranges."""

    def __init__(self, api_key: str = "placeholder-stability-key") -> None:
        super().__init__()
        self.api_key = api_key

    @staticmethod
    def error_body(message: str, code: str) -> dict[str, Any]:
        """An error body of this API carrying ``message`` and ``code`` (the key-leak test's shape)."""
        return error(code, message)

    def env(self) -> dict[str, str]:
        return {"STABLE_AUDIO_API_URL": self.url, "STABLE_AUDIO_API_KEY": self.api_key}

    @staticmethod
    def unauthorized() -> Reply:
        return Reply(401, error("unauthorized", "authorization: invalid or missing API key"))

    @staticmethod
    def payment_required() -> Reply:
        return Reply(402, error("payment_required", "lack of funds: you do not have enough credits"))

    @staticmethod
    def content_moderation() -> Reply:
        return Reply(
            403,
            error(
                "content_moderation",
                "Your request was flagged by our content moderation system, "
                "as a result your request was denied and you were not charged.",
            ),
        )

    @staticmethod
    def rate_limited(retry_after: float | None = 0.01) -> Reply:
        return Reply(
            429,
            error(
                "rate_limit_exceeded",
                "You have exceeded the rate limit of 150 requests within a 10 second period.",
            ),
            retry_after=retry_after,
        )

    @staticmethod
    def server_error() -> Reply:
        return Reply(
            500, error("internal_error", "An unexpected server error has occurred, please try again later.")
        )

    def respond(self, req: RecordedRequest) -> Reply:
        if req.method != "POST" or req.path != PATH:
            return Reply(404, error("not_found", f"{req.path} not found"))
        if req.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.unauthorized()
        accept = req.headers.get("accept", "")
        if accept not in ("audio/*", "application/json"):
            return Reply(400, error("bad_request", "accept: must be audio/* or application/json"))
        try:
            form = req.form()
        except ValueError:
            return Reply(400, error("bad_request", "content-type: must be multipart/form-data"))
        problems = []
        if not form.get("prompt"):
            problems.append("prompt: cannot be empty")
        if "duration" in form and not 1 <= float(form["duration"]) <= 190:
            problems.append("duration: must be between 1 and 190")
        if form.get("output_format", "mp3") not in ("mp3", "wav"):
            problems.append("output_format: must be one of mp3, wav")
        if problems:
            return Reply(400, error("bad_request", *problems))
        fmt = form.get("output_format", "mp3")
        return Reply(
            200,
            content_type=CONTENT_TYPES[fmt],
            headers={"finish-reason": "SUCCESS", "seed": form.get("seed", "0")},
        )

    def audio_reply(self, req: RecordedRequest) -> bytes:
        try:
            fmt = req.form().get("output_format", "mp3")
        except ValueError:
            fmt = "mp3"
        return sample_audio(fmt, seconds=1.0, freq=220.0, rate=44100)
