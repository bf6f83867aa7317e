"""The provider registry is the one list: settings, dispatch, docs and masking all follow it."""

from __future__ import annotations

import typing

import pytest
from pydantic import SecretStr, ValidationError

from worker.commands.settings import README, readme_block
from worker.errors import PayloadError
from worker.providers import ProviderSettings, registry
from worker.providers.provider import SpeechProvider


@pytest.mark.parametrize("provider", registry.PROVIDERS, ids=lambda p: p.name)
def test_declared_settings_exist_with_their_types(provider):
    fields = ProviderSettings.model_fields
    if provider.key_setting:
        assert SecretStr in typing.get_args(fields[provider.key_setting].annotation)
    if provider.url_setting:
        assert fields[provider.url_setting].annotation is str
        with pytest.raises(ValidationError):  # the http(s) validator covers it
            ProviderSettings(**{provider.url_setting: "ftp://example.invalid"})
    for name in provider.rate_settings or ():
        assert name in fields


@pytest.mark.parametrize("provider", registry.PROVIDERS, ids=lambda p: p.name)
def test_readme_has_the_providers_row(provider):
    assert f"| `{provider.name}` | {provider.kind} |" in readme_block(README.read_text(), "providers")


def test_readme_providers_block_is_generated_from_the_registry():
    assert readme_block(README.read_text(), "providers") == registry.docs_table(), (
        "README providers table is stale: run `uv run python -m worker settings --update-readme`"
    )


@pytest.mark.parametrize("kind", ["speech", "music"])
def test_unknown_provider_is_a_payload_error_naming_the_choices(kind):
    with pytest.raises(PayloadError, match="provider") as caught:
        registry.resolve(kind, "polly", ProviderSettings())
    assert all(name in str(caught.value) for name in registry.names(kind))


def test_each_name_dispatches_to_its_own_declaration():
    for provider in registry.PROVIDERS:
        assert registry.resolve(provider.kind, provider.name, ProviderSettings()) is provider


def test_default_is_the_first_available_by_rank():
    speech = sorted(registry.SPEECH.values(), key=lambda p: p.default_rank)
    assert registry.resolve("speech", None, ProviderSettings()).key_setting is None
    for provider in speech:
        if provider.key_setting:
            settings = ProviderSettings(**{provider.key_setting: "placeholder-key"})
            assert registry.resolve("speech", None, settings) is provider


def test_setting_names_an_unknown_provider_is_refused():
    with pytest.raises(ValidationError, match="unknown speech provider"):
        ProviderSettings(speech_provider="polly")


def test_speech_providers_have_the_uniform_shape():
    for provider in registry.SPEECH.values():
        assert isinstance(provider, SpeechProvider)
        fields = provider.request_fields(ProviderSettings(), voice=None, model=None, speed=1.0)
        assert provider.max_chars(fields) > 0 and provider.extension(fields)
