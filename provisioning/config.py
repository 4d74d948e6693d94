"""Configuration: embedded defaults, an optional file, environment overrides, secrets.

Precedence (later wins): ``config/default.toml`` → ``--config FILE`` →
``ZANUO_<SECTION>__<KEY>`` environment variables. Secrets (pepper, key-encryption
keys, CA passphrase, ops token) never live in the config: they come from the
secrets file or ``ZANUO_SECRET_<NAME>`` variables, and in development mode the
secrets file is generated on first run.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, ValidationError

from provisioning.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "default.toml"
ENV_PREFIX = "ZANUO_"
SECRET_ENV_PREFIX = "ZANUO_SECRET_"
REDACTED = "***"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str
    port: int = Field(ge=0, le=65535)
    mode: Literal["development", "production"]
    max_body_bytes: int = Field(ge=1024, le=16 * 1024 * 1024)
    trusted_proxies: tuple[str, ...] = ()


class PathSettings(_Section):
    data_dir: Path
    secrets_file: str = ""


class DatabaseSettings(_Section):
    url: str = ""
    echo: bool = False
    pool_size: int = Field(ge=1, le=200)


class MqttSettings(_Section):
    url: str = ""
    managed_host: str
    managed_port: int = Field(ge=0, le=65535)
    mosquitto_binary: str
    bridge_group: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    max_payload_bytes: int = Field(ge=256, le=1024 * 1024)


class NotifySettings(_Section):
    email_backend: Literal["outbox", "smtp"]
    sms_backend: Literal["outbox", "webhook"]
    smtp_host: str
    smtp_port: int = Field(ge=1, le=65535)
    smtp_starttls: bool
    smtp_username: str
    smtp_sender: str
    sms_webhook_url: str


class AuthSettings(_Section):
    code_ttl_seconds: int = Field(ge=30, le=3600)
    code_requests_per_recipient_per_hour: int = Field(ge=1)
    code_requests_per_ip_per_hour: int = Field(ge=1)
    code_max_attempts: int = Field(ge=1, le=20)
    session_ttl_days: int = Field(ge=1, le=3650)
    login_failures_allowed: int = Field(ge=1, le=100)
    login_failure_window_seconds: int = Field(ge=10)
    login_lockout_seconds: int = Field(ge=1)


class BindingSettings(_Section):
    bind_token_ttl_seconds: int = Field(ge=30, le=3600)
    pairing_token_ttl_seconds: int = Field(ge=30, le=3600)
    code_failures_before_lockout: int = Field(ge=1, le=100)
    lockout_base_seconds: int = Field(ge=1)
    lockout_max_seconds: int = Field(ge=1)
    invitation_ttl_days: int = Field(ge=1, le=90)


class RetentionSettings(_Section):
    operation_log_days: int = Field(ge=1)
    screenshot_days: int = Field(ge=1)
    interval_seconds: int = Field(ge=1)


class PrivacySettings(_Section):
    policy_version: str
    holidays: tuple[dt.date, ...] = ()
    key_store: Literal["file", "database"] = "file"
    statistics_min_group: int = Field(default=5, ge=2)


class OpsSettings(_Section):
    metrics_enabled: bool = True


class Settings(_Section):
    """The effective configuration of one process."""

    server: ServerSettings
    paths: PathSettings
    database: DatabaseSettings
    mqtt: MqttSettings
    notify: NotifySettings
    auth: AuthSettings
    binding: BindingSettings
    retention: RetentionSettings
    privacy: PrivacySettings
    ops: OpsSettings

    @property
    def data_dir(self) -> Path:
        """Return the absolute data directory."""
        return self.paths.data_dir.expanduser().resolve()

    @property
    def database_url(self) -> str:
        """Return the database URL, defaulting to SQLite in the data dir."""
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'zanuo.db'}"

    @property
    def secrets_path(self) -> Path:
        """Return where the secrets file lives."""
        if self.paths.secrets_file:
            return Path(self.paths.secrets_file).expanduser().resolve()
        return self.data_dir / "secrets.toml"

    @property
    def is_production(self) -> bool:
        """Tell whether the service runs in production mode."""
        return self.server.mode == "production"


class Secrets(BaseModel):
    """Key material; never logged, never stored in the database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pepper: SecretBytes = Field(description="HMAC key for label codes and blind indexes")
    keks: dict[str, SecretBytes] = Field(description="key-encryption keys by id")
    active_kek: str
    ca_passphrase: SecretBytes
    ops_token: SecretStr

    def kek(self, kek_id: str) -> bytes:
        """Return one key-encryption key by id."""
        try:
            return self.keks[kek_id].get_secret_value()
        except KeyError:
            raise ConfigError(f"secrets: unknown key-encryption key id {kek_id!r}") from None


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse_env_value(raw: str) -> Any:
    # Values are TOML literals when they parse as one (numbers, booleans,
    # arrays, quoted strings); otherwise the raw text is the string.
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(SECRET_ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if len(path) != 2 or not all(path):
            raise ConfigError(f"{name}: expected ZANUO_<SECTION>__<KEY>", key=name)
        section, key = path
        overrides.setdefault(section, {})[key] = _parse_env_value(raw)
    return overrides


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def _raise_named(err: ValidationError, source: str) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    return ConfigError(f"{source}: {key}: {first['msg']}", key=key)


def load_settings(
    config_file: Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Build the effective settings; a bad value raises ConfigError naming its key."""
    environ = dict(os.environ) if environ is None else environ
    data = _read_toml(DEFAULT_CONFIG_PATH)
    if config_file is not None:
        data = _deep_merge(data, _read_toml(config_file))
    data = _deep_merge(data, _env_overrides(environ))
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise _raise_named(err, "config") from None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _unb64(value: str, key: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigError(f"secrets: {key} is not base64url", key=key) from None
    return raw


def generate_secrets_document() -> dict[str, Any]:
    """Return a fresh secrets document (base64url values)."""
    kek_id = "k1"
    return {
        "pepper": _b64(secrets.token_bytes(32)),
        "active_kek": kek_id,
        "keks": {kek_id: _b64(secrets.token_bytes(32))},
        "ca_passphrase": _b64(secrets.token_bytes(24)),
        "ops_token": secrets.token_urlsafe(32),
    }


def write_secrets_document(path: Path, document: dict[str, Any]) -> None:
    """Write a secrets file readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(tomli_w.dumps(document).encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_secrets_document(path: Path) -> dict[str, Any]:
    """Read the raw secrets document."""
    return _read_toml(path)


def load_secrets(
    settings: Settings, environ: dict[str, str] | None = None, *, generate: bool | None = None
) -> Secrets:
    """Load secrets from the file and ZANUO_SECRET_* variables.

    In development mode a missing secrets file is generated (0600); in
    production a missing secret is a ConfigError.
    """
    environ = dict(os.environ) if environ is None else environ
    generate = (not settings.is_production) if generate is None else generate
    path = settings.secrets_path
    document: dict[str, Any] = {}
    if path.exists():
        document = read_secrets_document(path)
    elif generate and not any(name.startswith(SECRET_ENV_PREFIX) for name in environ):
        document = generate_secrets_document()
        write_secrets_document(path, document)
        _LOGGER.info("generated a new secrets file at %s", path)
    for name, raw in environ.items():
        if name.startswith(SECRET_ENV_PREFIX):
            key = name[len(SECRET_ENV_PREFIX) :].lower()
            document[key] = json.loads(raw) if key == "keks" else raw
    missing = [
        key for key in ("pepper", "keks", "active_kek", "ca_passphrase") if key not in document
    ]
    if missing:
        raise ConfigError(f"secrets: missing {', '.join(missing)} (file {path})", key=missing[0])
    keks = document["keks"]
    if not isinstance(keks, dict) or not keks:
        raise ConfigError("secrets: keks must be a table of id = base64 key", key="keks")
    parsed_keks = {str(k): _unb64(str(v), f"keks.{k}") for k, v in keks.items()}
    if any(len(v) != 32 for v in parsed_keks.values()):
        raise ConfigError("secrets: every key-encryption key must be 32 bytes", key="keks")
    if document["active_kek"] not in parsed_keks:
        raise ConfigError("secrets: active_kek names no key in keks", key="active_kek")
    pepper = _unb64(str(document["pepper"]), "pepper")
    if len(pepper) < 16:
        raise ConfigError("secrets: pepper must be at least 16 bytes", key="pepper")
    try:
        return Secrets(
            pepper=SecretBytes(pepper),
            keks={k: SecretBytes(v) for k, v in parsed_keks.items()},
            active_kek=str(document["active_kek"]),
            ca_passphrase=SecretBytes(_unb64(str(document["ca_passphrase"]), "ca_passphrase")),
            ops_token=SecretStr(str(document.get("ops_token", ""))),
        )
    except ValidationError as err:
        raise _raise_named(err, "secrets") from None


def redacted_view(settings: Settings, secrets_: Secrets | None) -> dict[str, Any]:
    """Return the effective configuration as a dict with every secret redacted."""
    view: dict[str, Any] = settings.model_dump(mode="json")
    view["effective"] = {
        "database_url": _redact_url(settings.database_url),
        "data_dir": str(settings.data_dir),
        "secrets_file": str(settings.secrets_path),
    }
    view["database"]["url"] = _redact_url(settings.database.url)
    view["mqtt"]["url"] = _redact_url(settings.mqtt.url)
    if secrets_ is not None:
        view["secrets"] = {
            "pepper": REDACTED,
            "keks": dict.fromkeys(secrets_.keks, REDACTED),
            "active_kek": secrets_.active_kek,
            "ca_passphrase": REDACTED,
            "ops_token": REDACTED if secrets_.ops_token.get_secret_value() else "",
        }
    return view


def _redact_url(url: str) -> str:
    # scheme://user:password@host → scheme://user:***@host
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:{REDACTED}@{host}"
