"""Configuration: defaults, overrides, secrets, and errors that name the key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from provisioning.cli import main
from provisioning.config import load_secrets, load_settings
from provisioning.errors import ConfigError


def test_environment_overrides_defaults_and_file(tmp_path: Path) -> None:
    file = tmp_path / "zanuo.toml"
    file.write_text('[server]\nport = 9001\nhost = "0.0.0.0"\n')
    settings = load_settings(file, environ={"ZANUO_SERVER__PORT": "9002"})
    assert settings.server.port == 9002
    assert settings.server.host == "0.0.0.0"
    assert settings.auth.code_ttl_seconds == 300


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"ZANUO_SERVER__PORT": "eighty"}, "server.port"),
        ({"ZANUO_SERVER__MODE": "chaos"}, "server.mode"),
        ({"ZANUO_AUTH__NO_SUCH_KEY": "1"}, "auth.no_such_key"),
    ],
)
def test_bad_value_fails_naming_the_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert key in caught.value.message


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    settings = load_settings(environ={"ZANUO_PATHS__DATA_DIR": str(tmp_path)})
    first = load_secrets(settings, environ={})
    mode = stat.S_IMODE(settings.secrets_path.stat().st_mode)
    assert mode == 0o600
    second = load_secrets(settings, environ={})
    assert first.pepper.get_secret_value() == second.pepper.get_secret_value()


def test_production_never_generates_secrets(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"ZANUO_PATHS__DATA_DIR": str(tmp_path), "ZANUO_SERVER__MODE": "production"}
    )
    with pytest.raises(ConfigError, match="missing"):
        load_secrets(settings, environ={})
    assert not settings.secrets_path.exists()


def test_config_show_redacts_every_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZANUO_PATHS__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ZANUO_DATABASE__URL", "postgresql+asyncpg://app:hunter2pw@db:5432/zanuo")
    assert main(["config", "show"]) == 0
    printed = capsys.readouterr().out
    shown = json.loads(printed)
    assert shown["server"]["port"] == 8080
    assert shown["secrets"]["pepper"] == "***"
    assert "hunter2pw" not in printed
    secrets_text = (tmp_path / "secrets.toml").read_text()
    for line in secrets_text.splitlines():
        if "=" in line:
            value = line.split("=", 1)[1].strip().strip('"')
            if len(value) > 8:
                assert value not in printed
