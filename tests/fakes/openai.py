"""Fake of OpenAI ``POST /v1/audio/speech`` with its documented ``{"error": {...}}`` bodies."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.audio import CONTENT_TYPES, sample_audio
from tests.fakes.server import FakeServer, RecordedRequest, Reply

VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"}


def error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class FakeOpenAI(FakeServer):
    """Checks the Bearer key, the JSON fields and the 4096-character input limit."""

    def __init__(self, api_key: str = "placeholder-openai-key") -> None:
        super().__init__()
        self.api_key = api_key

    @staticmethod
    def error_body(message: str, code: str) -> dict[str, Any]:
        """An error body of this API carrying ``message`` and ``code`` (the key-leak test's shape)."""
        return error(message, code, code)

    def env(self) -> dict[str, str]:
        return {"OPENAI_BASE_URL": f"{self.url}/v1", "OPENAI_API_KEY": self.api_key}

    # canned error replies, as the real API sends them
    @staticmethod
    def invalid_key(shown: str = "sk-wr***ng") -> Reply:
        return Reply(
            401,
            error(
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        )

    @staticmethod
    def quota_exceeded() -> Reply:
        return Reply(
            429,
            error(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
        )

    @staticmethod
    def rate_limited(retry_after: float | None = 0.01) -> Reply:
        return Reply(
            429,
            error("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
            retry_after=retry_after,
        )

    @staticmethod
    def server_error(status: int = 500) -> Reply:
        return Reply(
            status,
            error("The server had an error while processing your request. Sorry about that!", "server_error"),
        )

    @staticmethod
    def moderation() -> Reply:
        return Reply(
            400,
            error(
                "This request has been flagged by our moderation system.",
                "invalid_request_error",
                "content_policy_violation",
                "input",
            ),
        )

    def respond(self, req: RecordedRequest) -> Reply:
        if req.path != "/v1/audio/speech" or req.method != "POST":
            return Reply(404, error(f"Invalid URL ({req.method} {req.path})", "invalid_request_error"))
        auth = req.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            given = auth.removeprefix("Bearer ")
            return self.invalid_key(f"{given[:3]}***{given[-4:]}" if given else "")
        try:
            body = req.json()
        except ValueError:
            return Reply(
                400, error("We could not parse the JSON body of your request.", "invalid_request_error")
            )
        for name in ("model", "input", "voice"):
            if name not in body:
                return Reply(
                    400,
                    error(
                        f"Missing required parameter: '{name}'.",
                        "invalid_request_error",
                        "missing_required_parameter",
                        name,
                    ),
                )
        if len(body["input"]) > 4096:
            return Reply(
                400,
                error(
                    f"Invalid 'input': string too long. Expected a string with maximum length 4096, "
                    f"but got a string with length {len(body['input'])} instead.",
                    "invalid_request_error",
                    "string_above_max_length",
                    "input",
                ),
            )
        if body["voice"] not in VOICES:
            return Reply(
                400,
                error(
                    f"Invalid value for 'voice' = {json.dumps(body['voice'])}.",
                    "invalid_request_error",
                    "invalid_value",
                    "voice",
                ),
            )
        fmt = body.get("response_format", "mp3")
        return Reply(200, content_type=CONTENT_TYPES.get(fmt, "audio/mpeg"))

    def audio_reply(self, req: RecordedRequest) -> bytes:
        try:
            fmt = req.json().get("response_format", "mp3")
        except ValueError:
            fmt = "mp3"
        return sample_audio(fmt if fmt in CONTENT_TYPES else "mp3")
