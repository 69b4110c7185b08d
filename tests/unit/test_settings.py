"""Provider sections of the worker settings: one per provider of the registry, typed, read from GENQ_."""

from __future__ import annotations

import os

import pytest

from schemas.requests import CREDENTIALS
from worker.providers import registry
from worker.providers.registry import PROVIDERS
from worker.settings import Settings


def test_every_provider_has_its_section_of_its_settings_type() -> None:
    settings = Settings()
    assert {name: type(getattr(settings, name)) for name in PROVIDERS} == {
        name: spec.settings for name, spec in PROVIDERS.items()
    }


def test_a_provider_section_is_read_from_its_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENQ_AIMI__RATE__LIMIT", "7")
    monkeypatch.setenv("GENQ_SYNCSO__MAX_URL_BYTES", "600")
    settings = Settings()
    assert settings.aimi.rate.limit == 7
    assert settings.syncso.max_url_bytes == 600


def test_a_provider_without_a_section_fails_at_import() -> None:
    registry._check_sections(PROVIDERS)
    with pytest.raises(TypeError, match="ProviderSections"):
        registry._check_sections({name: PROVIDERS[name] for name in ("syncso", "aimi")})


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_the_credentials_producers_name_are_what_configures_each_provider(
    monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    names = CREDENTIALS[provider]
    for name in [n for n in os.environ if n.startswith(f"GENQ_{provider.upper()}__")]:
        monkeypatch.delenv(name)
    assert not PROVIDERS[provider].section(Settings()).configured
    for name in names:
        monkeypatch.setenv(name, "k")
    assert PROVIDERS[provider].section(Settings()).configured
    for name in names:  # every one of them is needed
        monkeypatch.delenv(name)
        assert not PROVIDERS[provider].section(Settings()).configured
        monkeypatch.setenv(name, "k")


def test_every_provider_names_its_credentials() -> None:
    assert set(CREDENTIALS) == set(PROVIDERS)
