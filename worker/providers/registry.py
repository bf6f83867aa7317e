"""The provider registry: the one list of providers. Everything that names providers derives from it.

Derived here or from here: the names each kind accepts (``SPEECH_PROVIDER``/``MUSIC_PROVIDER`` and
the ``provider`` of a layer), the default choice, the dispatch (an unknown name is a
``PayloadError``, never another provider), the keys masked in logs and errors
(``ProviderSettings.secrets``), the base-URL validation, the README providers table, and the
tests that walk the registry (key-leak, docs row, settings fields).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

from worker.errors import PayloadError
from worker.providers import elevenlabs, espeak, localmusic, openai, stability
from worker.providers.provider import Kind, MusicProvider, Provider, SpeechProvider

if TYPE_CHECKING:
    from typing import Literal

    from worker.providers.settings import ProviderSettings

PROVIDERS: tuple[Provider, ...] = (
    espeak.PROVIDER,
    openai.PROVIDER,
    elevenlabs.PROVIDER,
    stability.PROVIDER,
    localmusic.PROVIDER,
)

SPEECH: dict[str, SpeechProvider] = {p.name: p for p in PROVIDERS if isinstance(p, SpeechProvider)}
MUSIC: dict[str, MusicProvider] = {p.name: p for p in PROVIDERS if isinstance(p, MusicProvider)}
SPEECH_PROVIDERS: tuple[str, ...] = tuple(SPEECH)
MUSIC_PROVIDERS: tuple[str, ...] = tuple(MUSIC)
assert len(SPEECH) + len(MUSIC) == len(PROVIDERS), "provider names must be unique"


def names(kind: Kind) -> tuple[str, ...]:
    return SPEECH_PROVIDERS if kind == "speech" else MUSIC_PROVIDERS


def _by_rank(kind: Kind) -> list[Provider]:
    return sorted((p for p in PROVIDERS if p.kind == kind), key=lambda p: p.default_rank)


def default_rule(kind: Kind) -> str:
    """The default choice in words, for the settings' description (and so the README)."""
    steps = [f"{p.name} if {p.key_env}" if p.key_env else p.name for p in _by_rank(kind)]
    return ", else ".join(steps)


@overload
def resolve(kind: Literal["speech"], name: str | None, settings: ProviderSettings) -> SpeechProvider: ...
@overload
def resolve(kind: Literal["music"], name: str | None, settings: ProviderSettings) -> MusicProvider: ...
def resolve(kind: Kind, name: str | None, settings: ProviderSettings) -> Provider:
    """The provider for a layer's ``provider`` (None: the setting, else the first available by rank)."""
    table: dict[str, SpeechProvider] | dict[str, MusicProvider] = SPEECH if kind == "speech" else MUSIC
    if name is None:
        name = settings.speech_provider if kind == "speech" else settings.music_provider
        if name is None:
            return next(p for p in _by_rank(kind) if p.available(settings))
    if name not in table:
        raise PayloadError("provider", f"unknown {kind} provider {name!r}; one of {', '.join(table)}")
    return table[name]


def key_settings() -> tuple[str, ...]:
    """Settings fields holding API keys (masked everywhere)."""
    return tuple(p.key_setting for p in PROVIDERS if p.key_setting)


def url_settings() -> tuple[str, ...]:
    """Settings fields holding base URLs (must be http(s))."""
    return tuple(p.url_setting for p in PROVIDERS if p.url_setting)


def docs_table() -> str:
    """The README's providers table (``python -m worker settings --update-readme`` writes it)."""
    rows = ["| provider | kind | key | endpoint |", "| --- | --- | --- | --- |"]
    for p in PROVIDERS:
        key = f"`{p.key_env}`" if p.key_env else "none"
        rows.append(f"| `{p.name}` | {p.kind} | {key} | {p.docs} |")
    chains = []
    kinds: tuple[Kind, ...] = ("speech", "music")
    for kind in kinds:
        steps = [
            f"`{p.name}` when `{p.key_env}` is set" if p.key_env else f"`{p.name}`" for p in _by_rank(kind)
        ]
        chains.append(f"{kind.capitalize()} uses `{kind.upper()}_PROVIDER`, else {', else '.join(steps)}.")
    return "\n".join(rows) + "\n\nDefaults: " + " ".join(chains)
