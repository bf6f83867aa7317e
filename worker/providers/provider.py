"""What one provider declares: a ``SpeechProvider`` or ``MusicProvider`` value at the bottom of its module.

Every provider module has the same shape -- ``request_fields`` (validate the layer's choices, return
everything that shapes the audio: the request and the cache key), ``extension`` and, for speech,
``max_chars`` (both from those fields) and one ``synthesize``/``generate`` call -- and hands it to
the registry (``worker.providers.registry``) with its name, key, base URL and rate settings. The
names, the default choice, the dispatch, the secrets to mask, the URL validation and the docs row
are all derived from these declarations, so adding a provider is one module plus one registry line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import SecretStr

from worker.errors import PermanentError
from worker.providers.ratelimit import Limits, account_of

if TYPE_CHECKING:  # the settings class derives its provider fields from the registry: no runtime import
    from pathlib import Path

    import httpx

    from worker.providers.retry import RetryPolicy
    from worker.providers.settings import ProviderSettings

Kind = Literal["speech", "music"]
Fields = dict[str, Any]
"""Everything but the text/prompt that shapes the audio; also the provider's part of the cache key."""


class SpeechFields(Protocol):
    def __call__(
        self, settings: ProviderSettings, *, voice: str | None, model: str | None, speed: float
    ) -> Fields: ...


class MusicFields(Protocol):
    def __call__(
        self, settings: ProviderSettings, *, prompt: str, seconds: float, seed: int | None
    ) -> Fields: ...


@dataclass(frozen=True)
class Call:
    """One provider request: what ``synthesize``/``generate`` get (local providers ignore the client)."""

    client: httpx.AsyncClient
    settings: ProviderSettings
    policy: RetryPolicy
    fields: Fields
    dest: Path


@dataclass(frozen=True)
class SpeechCall(Call):
    text: str
    previous_text: str | None = None  # neighbours of a split part, for providers with ``neighbours``
    next_text: str | None = None


@dataclass(frozen=True, kw_only=True)
class Provider:
    """What every provider declares.

    ``key_setting``/``url_setting``/``rate_settings`` name ``ProviderSettings`` fields (a test
    checks they exist with the right types). ``default_rank`` orders the default choice: the
    lowest-ranked provider of a kind that needs no key or has its key set.
    """

    name: str
    docs: str  # the README providers table's last column: the endpoint, or what it does
    default_rank: int
    key_setting: str | None = None
    url_setting: str | None = None
    rate_settings: tuple[str, str] | None = None  # (requests, window seconds)
    concurrency_setting: str | None = None  # requests in flight at once (None in the setting: no limit)
    cached: bool = True  # paid output is cached; free local output is recomputed

    @property
    def kind(self) -> Kind:
        raise NotImplementedError

    @property
    def key_env(self) -> str | None:
        return self.key_setting.upper() if self.key_setting else None

    def secret(self, settings: ProviderSettings) -> SecretStr | None:
        if self.key_setting is None:
            return None
        value = getattr(settings, self.key_setting)
        assert value is None or isinstance(value, SecretStr), self.key_setting
        return value

    def available(self, settings: ProviderSettings) -> bool:
        """Usable without naming it: it needs no key, or its key is set."""
        return self.key_setting is None or self.secret(settings) is not None

    def key(self, settings: ProviderSettings) -> str:
        """The API key's plain text; ``PermanentError`` naming the variable when it is not set."""
        secret = self.secret(settings)
        if secret is None:
            raise PermanentError(f"{self.name}: {self.key_env} is not set")
        return secret.get_secret_value()

    def limits(self, settings: ProviderSettings) -> Limits | None:
        """The account's request limits (held fleet-wide under the claim loop), or None without any."""
        if self.rate_settings is None and self.concurrency_setting is None:
            return None
        limit, window = (
            (getattr(settings, s) for s in self.rate_settings) if self.rate_settings else (None, None)
        )
        conc = getattr(settings, self.concurrency_setting) if self.concurrency_setting else None
        return Limits(
            provider=self.name,
            account=account_of(self.key(settings) if self.key_setting else None),
            max_concurrent=None if conc is None else int(conc),
            max_requests=None if limit is None else int(limit),
            window_seconds=None if window is None else float(window),
        )


@dataclass(frozen=True, kw_only=True)
class SpeechProvider(Provider):
    request_fields: SpeechFields
    max_chars: Callable[[Fields], int]  # the longest text part one request takes
    extension: Callable[[Fields], str]
    synthesize: Callable[[SpeechCall], Awaitable[None]]
    neighbours: bool = False  # sends previous_text/next_text of split parts (part of the cache key)

    @property
    def kind(self) -> Kind:
        return "speech"


@dataclass(frozen=True, kw_only=True)
class MusicProvider(Provider):
    request_fields: MusicFields
    extension: Callable[[Fields], str]
    generate: Callable[[Call], Awaitable[None]]

    @property
    def kind(self) -> Kind:
        return "music"
