"""Fixtures for the broker tests, imported by name from the shared plugin module."""

import pytest

from tests.fixtures.mosquitto import (  # noqa: F401 (pytest finds fixtures by name)
    device_pki,
    foreign_pki,
    mosquitto_broker,
    no_leaked_tasks,
)


@pytest.fixture(autouse=True)
def _every_broker_test_checks_for_leaked_tasks(no_leaked_tasks: None) -> None:  # noqa: F811 (the fixture, requested by name)
    """Run the task-leak check around every broker test."""
