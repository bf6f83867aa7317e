"""Fake of ElevenLabs ``POST /v1/text-to-speech/{voice_id}`` with ``{"detail": ...}`` error bodies."""

from __future__ import annotations

from typing import Any

from tests.fakes.audio import sample_audio
from tests.fakes.server import FakeServer, RecordedRequest, Reply

LIMITS = {"eleven_multilingual_v2": 10_000, "eleven_flash_v2_5": 40_000, "eleven_turbo_v2_5": 40_000}


def error(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


class FakeElevenLabs(FakeServer):
    """Checks ``xi-api-key``, ``output_format``, the JSON body and the model's character limit."""

    def __init__(self, api_key: str = "placeholder-elevenlabs-key") -> None:
        super().__init__()
        self.api_key = api_key

    @staticmethod
    def error_body(message: str, code: str) -> dict[str, Any]:
        """An error body of this API carrying ``message`` and ``code`` (the key-leak test's shape)."""
        return error(code, message)

    def env(self) -> dict[str, str]:
        return {"ELEVENLABS_BASE_URL": self.url, "ELEVENLABS_API_KEY": self.api_key}

    @staticmethod
    def invalid_key() -> Reply:
        return Reply(401, error("invalid_api_key", "Invalid API key"))

    @staticmethod
    def quota_exceeded() -> Reply:
        return Reply(
            401,
            error(
                "quota_exceeded",
                "This request exceeds your quota of 10000. You have 0 credits "
                "remaining, while 91 credits are required for this request.",
            ),
        )

    @staticmethod
    def too_many_concurrent(retry_after: float | None = 0.01) -> Reply:
        return Reply(
            429,
            error("too_many_concurrent_requests", "Too many concurrent requests."),
            retry_after=retry_after,
        )

    @staticmethod
    def system_busy() -> Reply:
        return Reply(503, error("system_busy", "We are experiencing heavy traffic, please try again."))

    @staticmethod
    def validation_error() -> Reply:
        return Reply(
            422,
            {"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "value_error.missing"}]},
        )

    def respond(self, req: RecordedRequest) -> Reply:
        prefix = "/v1/text-to-speech/"
        if req.method != "POST" or not req.path.startswith(prefix) or len(req.path) == len(prefix):
            return Reply(404, {"detail": "Not Found"})
        if req.headers.get("xi-api-key") != self.api_key:
            return self.invalid_key()
        try:
            body = req.json()
        except ValueError:
            return self.validation_error()
        if not isinstance(body.get("text"), str):
            return self.validation_error()
        model = body.get("model_id", "eleven_multilingual_v2")
        limit = LIMITS.get(model, 10_000)
        if len(body["text"]) > limit:
            return Reply(
                400,
                error(
                    "max_character_limit_exceeded",
                    f"Text is too long: {len(body['text'])} characters, maximum is {limit}.",
                ),
            )
        fmt = req.query.get("output_format", ["mp3_44100_128"])[0]
        if not fmt.startswith(("mp3_", "wav_", "opus_")):
            return Reply(
                422,
                {
                    "detail": [
                        {
                            "loc": ["query", "output_format"],
                            "msg": "invalid output format",
                            "type": "value_error",
                        }
                    ]
                },
            )
        return Reply(200, content_type="audio/mpeg" if fmt.startswith("mp3") else "audio/wav")

    def audio_reply(self, req: RecordedRequest) -> bytes:
        fmt = req.query.get("output_format", ["mp3_44100_128"])[0]
        return sample_audio("wav" if fmt.startswith("wav") else "mp3")
