"""Provider sections of the worker settings: one per provider of the registry, typed, read from GENQ_."""

from __future__ import annotations

import pytest

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


def test_a_provider_without_a_section_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PROVIDERS", {name: PROVIDERS[name] for name in ("syncso", "aimi")})
    with pytest.raises(TypeError, match="ProviderSections"):
        registry._check_sections()
