"""The production guard of the settings: the unsafe defaults are named, one message each."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from core.settings import INSECURE_DEMO_PSEUDONYM_KEY, Environment, Settings, UnsafeSettingsError
from tests.support.auth import TEST_API_KEYS, TEST_PSEUDONYM_KEY

SAFE = Settings(api_keys=TEST_API_KEYS, pseudonym_key=TEST_PSEUDONYM_KEY)


def test_configured_keys_pass() -> None:
    assert SAFE.environment is Environment.PRODUCTION
    assert SAFE.production_problems() == []
    SAFE.refuse_unsafe()


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"pseudonym_key": SecretStr(INSECURE_DEMO_PSEUDONYM_KEY)}, ["public demo key"]),
        ({"pseudonym_key": SecretStr("")}, ["NBO_PSEUDONYM_KEY is empty"]),
        ({"api_keys": []}, ["NBO_API_KEYS is empty"]),
        ({"auth_disabled": True}, ["NBO_AUTH_DISABLED is true"]),
    ],
)
def test_each_unsafe_setting_has_its_own_message(
    change: dict[str, object], names: list[str]
) -> None:
    problems = SAFE.model_copy(update=change).production_problems()
    assert len(problems) == len(names)
    for problem, name in zip(problems, names, strict=True):
        assert name in problem


def test_the_defaults_are_refused_with_every_problem_named() -> None:
    with pytest.raises(UnsafeSettingsError) as refused:
        Settings().refuse_unsafe()
    message = str(refused.value)
    assert len(refused.value.problems) == 2  # demo pseudonym key, no API keys
    assert "NBO_PSEUDONYM_KEY" in message and "NBO_API_KEYS" in message
    assert "NBO_ENVIRONMENT=development" in message
    assert INSECURE_DEMO_PSEUDONYM_KEY not in message  # names the setting, not the secret


def test_development_mode_allows_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBO_ENVIRONMENT", "development")
    settings = Settings(auth_disabled=True)
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.production_problems() == []
