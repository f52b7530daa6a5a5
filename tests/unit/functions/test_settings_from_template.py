"""Each function's settings model reads exactly the environment template.yaml gives that function: a
variable a model requires but the template forgets is a failure here, not at a cold start on AWS."""

from __future__ import annotations

import pytest
from busline_core.settings import (
    ApiSettings,
    ConnectionsSettings,
    ExtractSettings,
    LoadSettings,
    StreamSettings,
    TransformSettings,
    WatchdogSettings,
)
from handler_kit import Cloud
from pydantic_settings import BaseSettings

SETTINGS_OF_FUNCTION: dict[str, type[BaseSettings]] = {
    "ApiFunction": ApiSettings,
    "ExtractFunction": ExtractSettings,
    "TransformFunction": TransformSettings,
    "LoadFunction": LoadSettings,
    "ProgressFunction": StreamSettings,
    "ConnectionsFunction": ConnectionsSettings,
    "WatchdogFunction": WatchdogSettings,
}


@pytest.mark.parametrize(("function", "settings"), sorted(SETTINGS_OF_FUNCTION.items()))
def test_settings_load_from_the_template_environment(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch, function: str, settings: type[BaseSettings]
) -> None:
    # Given only the environment the template gives this function
    assert cloud.stack is not None
    environment = cloud.stack.environment(function)
    for name in {field.upper() for model in SETTINGS_OF_FUNCTION.values() for field in model.model_fields}:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # When its settings are read / Then every field it requires comes from that environment
    loaded = settings()
    required = sorted(name for name, field in settings.model_fields.items() if field.is_required())
    assert required
    assert {name: str(getattr(loaded, name)) for name in required} == {
        name: environment[name.upper()] for name in required
    }
