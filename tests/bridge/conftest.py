"""Bridge tests: a real Mosquitto from the project template, real devices, the real bridge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import func, select

from gateway.mqtt import topics
from gateway.mqtt.bridge import BridgeOptions, MqttBridge, new_client_id
from gateway.mqtt.broker import ManagedMosquitto
from provisioning.security.ca import DEVICE_CERT_FILE, read_certificate
from provisioning.services import Services
from provisioning.storage.devices import Event, Ownership
from provisioning.storage.models import AccountKey
from tests.fixtures.devices import MakeAccounts, RegisterDevice
from tests.fixtures.mosquitto import DeviceCredentials, LocalPki

WAIT_S = 30.0
OwnDevice = Callable[..., Awaitable[tuple[DeviceCredentials, uuid.UUID]]]


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = WAIT_S) -> None:
    """Poll ``check`` until it is true; fail the test when it never becomes true."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 (polls state in another process or the database)
            await asyncio.sleep(0.02)


def bridge_options(
    pki: LocalPki, broker: ManagedMosquitto, *, instance: str = "b1", **overrides: Any
) -> BridgeOptions:
    """Return options for a bridge instance on the test broker with the bridge identity."""
    values: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "tls_context": pki.bridge_tls_context(),
        "instance": instance,
        "client_id": new_client_id(),
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.5,
        "command_poll_s": 0.2,
    }
    values.update(overrides)
    return BridgeOptions(**values)


@contextlib.asynccontextmanager
async def running_bridge(
    services: Services, pki: LocalPki, broker: ManagedMosquitto, **overrides: Any
) -> AsyncIterator[MqttBridge]:
    """Run one bridge instance until the block ends, connected before it starts."""
    async with MqttBridge(services, bridge_options(pki, broker, **overrides)) as bridge:
        async with asyncio.timeout(WAIT_S):
            await bridge.wait_connected()
        yield bridge


@pytest.fixture
async def bridge(
    services: Services, device_pki: LocalPki, mosquitto_broker: ManagedMosquitto
) -> AsyncIterator[MqttBridge]:
    """Return a connected bridge on the test broker."""
    async with running_bridge(services, device_pki, mosquitto_broker) as running:
        yield running


def device_client(
    creds: DeviceCredentials, broker: ManagedMosquitto, *, client_id: str | None = None
) -> aiomqtt.Client:
    """Return a device's MQTT 5 client: client id = serial, LWT on its state topic."""
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=client_id or creds.serial,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=creds.tls_context(),
        timeout=5,
        will=aiomqtt.Will(
            topics.state_topic(creds.serial), b'{"online":false}', qos=1, retain=True
        ),
    )


def cut_connection(client: aiomqtt.Client) -> None:
    """Drop a client's TCP connection without DISCONNECT, as a power cut would (LWT fires)."""
    sock = client._client.socket()
    assert isinstance(sock, socket.socket)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


async def publish_json(
    client: aiomqtt.Client, topic: str, document: Any, *, retain: bool = False
) -> None:
    """Publish a JSON document at QoS 1."""
    await client.publish(topic, json.dumps(document).encode(), qos=1, retain=retain)


async def own(
    services: Services, serial: str, account_id: uuid.UUID, *, notifications: bool = True
) -> None:
    """Make ``account_id`` the owner of ``serial`` (as a completed binding leaves it)."""
    async with services.db.session() as session:
        if await session.get(AccountKey, account_id) is None:
            await services.vault.create_key(session, account_id, services.clock.now())
        session.add(
            Ownership(
                serial=serial,
                account_id=account_id,
                binding_id=uuid.uuid4(),
                notifications=notifications,
                bound_at=services.clock.now(),
            )
        )
        await session.commit()


async def next_message(client: aiomqtt.Client) -> aiomqtt.Message:
    """Return the next message delivered to ``client``."""
    async for message in client.messages:
        return message
    raise AssertionError("the connection ended")


async def stored_events(services: Services) -> tuple[int, int]:
    """Return how many event rows are stored and how many distinct (serial, event id)."""
    async with services.db.session() as session:
        rows = await session.scalar(select(func.count()).select_from(Event))
        distinct = await session.scalar(
            select(func.count()).select_from(
                select(Event.serial, Event.event_id).distinct().subquery()
            )
        )
    return int(rows or 0), int(distinct or 0)


def credentials_of(pki: LocalPki, serial: str) -> DeviceCredentials:
    """Return the flash contents of a device ``register_device`` manufactured."""
    folder = pki.directory / "devices" / serial
    certificate = read_certificate(folder / DEVICE_CERT_FILE)
    return DeviceCredentials(serial=serial, directory=folder, certificate=certificate)


def sample(services: Services, metric: str, /, **labels: str) -> float:
    """Return a metric sample's value (0 when it was never touched)."""
    return services.metrics.registry.get_sample_value(metric, labels) or 0.0


@pytest.fixture
def own_device(
    services: Services,
    device_pki: LocalPki,
    register_device: RegisterDevice,
    make_accounts: MakeAccounts,
) -> OwnDevice:
    """Return a function that registers a device and binds it to a fresh account."""

    async def make(serial: str, *args: Any, **kwargs: Any) -> tuple[DeviceCredentials, uuid.UUID]:
        await register_device(serial, *args, **kwargs)
        (principal,) = await make_accounts(1)
        await own(services, serial, principal.account_id)
        return credentials_of(device_pki, serial), principal.account_id

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the SQLite file scans when the run uses PostgreSQL."""
    if not os.environ.get("PYTEST_ZANUO_DATABASE_URL"):
        return
    here = Path(__file__).parent
    deselected = [
        item
        for item in items
        if item.get_closest_marker("sqlite_only") and here in Path(str(item.path)).parents
    ]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]
