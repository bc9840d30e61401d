"""Settings come from GATEWAY_* variables only, typed, with every malformed one named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.settings import DEMO_TENANT_FILE, SETTINGS_DOC, Settings, SettingsError


def test_defaults_are_the_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.data_dir == tmp_path / ".gateway"
    assert settings.database.url == f"sqlite+aiosqlite:///{tmp_path / '.gateway' / 'gateway.db'}"
    assert settings.valkey.url is None
    assert settings.tenant_file == DEMO_TENANT_FILE
    assert (settings.server.host, settings.server.port, settings.server.workers) == (
        "127.0.0.1",
        8000,
        1,
    )
    assert settings.admin.login == "admin"
    assert settings.admin.password is None
    assert settings.password_profile == "rfc9106_low_memory"


def test_variables_override_defaults() -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_DATABASE_URL": "postgresql+asyncpg://u:p@db/gw",
            "GATEWAY_VALKEY_URL": "valkey://cache:6379/2",
            "GATEWAY_PORT": "9000",
            "GATEWAY_WORKERS": "4",
            "GATEWAY_AUTO_MIGRATE": "off",
            "GATEWAY_ADMIN_PASSWORD": "pw",
        }
    )
    assert settings.database.url == "postgresql+asyncpg://u:p@db/gw"
    assert settings.valkey.url == "valkey://cache:6379/2"
    assert settings.server.port == 9000
    assert settings.server.workers == 4
    assert settings.auto_migrate is False
    assert "pw" not in repr(settings)  # secrets stay out of logs


def test_every_malformed_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"GATEWAY_PORT": "70000", "GATEWAY_WORKERS": "two", "GATEWAY_LOG_LEVEL": "loud"}
        )
    message = str(caught.value)
    assert "GATEWAY_PORT='70000'" in message
    assert "GATEWAY_WORKERS='two'" in message
    assert "GATEWAY_LOG_LEVEL='loud'" in message


def test_every_variable_read_is_documented() -> None:
    source = Path("gateway/settings.py").read_text()
    read = set(re.findall(r'reader\.\w+\(\s*"(GATEWAY_[A-Z_]+)"', source))
    documented = {name for name, _, _ in SETTINGS_DOC}
    assert read == documented
    readme = Path("README.md").read_text()
    missing = [name for name in documented if f"`{name}`" not in readme]
    assert not missing, f"README's settings table lacks {missing}"
