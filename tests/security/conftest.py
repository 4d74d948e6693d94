"""Fixtures for the credential tests, imported by name from the shared plugin module."""

from tests.fixtures.mosquitto import (  # noqa: F401 (pytest finds fixtures by name)
    device_pki,
    foreign_pki,
)
