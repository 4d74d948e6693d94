"""Binding tests use the shared device fixtures (tests/fixtures/devices.py)."""

from tests.fixtures.devices import FactoryDevice, MakeAccounts, RegisterDevice

__all__ = ["FactoryDevice", "MakeAccounts", "RegisterDevice"]
