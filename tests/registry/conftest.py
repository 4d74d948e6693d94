"""Fixtures for the registry tests: a CA in the data dir, the registry, pre-made CSRs."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.clock import FrozenClock
from provisioning.config import Secrets, Settings
from provisioning.domain.registry import CaPaths, DeviceRegistry
from provisioning.security import ca as device_ca
from provisioning.services import Services
from tests.fixtures.mosquitto import device_pki  # noqa: F401 (pytest finds fixtures by name)
from tests.registry.factory import device_csr, serial_of

PREMADE_CSRS = 3000


@pytest.fixture(scope="session")
def premade_csrs() -> list[str]:
    """Return CSRs for ``serial_of(0 .. 2999)``, made once per run (key generation is slow)."""
    return [device_csr(serial_of(i)) for i in range(PREMADE_CSRS)]


@pytest.fixture
def ca_paths(settings: Settings, secrets: Secrets, clock: FrozenClock) -> CaPaths:
    """Return the data dir's CA layout with a fresh device CA in it."""
    paths = CaPaths.in_data_dir(settings.data_dir)
    device_ca.init_ca(paths.ca_dir, secrets.ca_passphrase.get_secret_value(), clock)
    return paths


@pytest.fixture
def registry(services: Services, secrets: Secrets, ca_paths: CaPaths) -> DeviceRegistry:
    """Return the registry on the test database, clock and CA."""
    return DeviceRegistry(
        db=services.db,
        clock=services.clock,
        pepper=secrets.pepper.get_secret_value(),
        paths=ca_paths,
        ca_passphrase=secrets.ca_passphrase.get_secret_value(),
    )


@pytest.fixture
def flash_dir(tmp_path: Path) -> Path:
    """Return where simulated manufacturing writes the devices' flash folders."""
    return tmp_path / "flash"
