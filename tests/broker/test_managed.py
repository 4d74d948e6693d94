"""ManagedMosquitto: started, restarted when it dies, stopped with its owner."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from gateway.mqtt.broker import (
    BrokerError,
    BrokerStartFailed,
    BrokerUnreachable,
    ManagedMosquitto,
    connect_mqtt,
    free_local_port,
    render_broker_config,
)
from tests.fixtures.mosquitto import LocalPki, running_broker


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _port_refuses(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def _restarted(broker: ManagedMosquitto, times: int = 1) -> None:
    """Wait until the supervisor has restarted the broker ``times`` times and it serves."""
    async with asyncio.timeout(10):
        while broker.restarts < times or not broker.running:  # noqa: ASYNC110 (polling a child process)
            await asyncio.sleep(0.02)


async def test_killed_broker_is_restarted_and_serves_devices_again(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    device = device_pki.mint_device("ZC1-0001")
    async with running_broker(device_pki, tmp_path / "data", restart_backoff=0.05) as broker:
        first_pid = broker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await _restarted(broker)
        assert broker.pid not in (None, first_pid)
        assert await broker.check_health()
        async with connect_mqtt(broker.host, broker.port, device.tls_context()):
            pass
        assert broker.restarts == 1


async def test_hung_broker_is_killed_and_restarted(device_pki: LocalPki, tmp_path: Path) -> None:
    async with running_broker(
        device_pki, tmp_path / "data", restart_backoff=0.05, health_interval=0.1, health_timeout=0.3
    ) as broker:
        hung_pid = broker.pid
        assert hung_pid is not None
        os.kill(hung_pid, signal.SIGSTOP)  # alive, port open, answers nothing
        await _restarted(broker)
        assert not _process_exists(hung_pid)
        assert await broker.check_health()


async def test_broker_stops_with_its_owner_and_frees_the_port(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    async with running_broker(device_pki, tmp_path / "data") as broker:
        pid = broker.pid
        assert pid is not None
        assert broker.running
    assert not _process_exists(pid)
    assert broker.pid is None
    assert not broker.running
    assert await _port_refuses(broker.host, broker.port)
    assert "terminating" in broker.log_text()


async def test_broker_is_stopped_when_the_owner_is_cancelled(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    config = render_broker_config(
        tmp_path / "data", device_pki.broker_tls_files(), port=free_local_port()
    )
    broker = ManagedMosquitto(config)
    pids: list[int] = []
    started = asyncio.Event()

    async def serve_forever() -> None:
        async with broker:
            assert broker.pid is not None
            pids.append(broker.pid)
            started.set()
            await asyncio.Event().wait()

    async with asyncio.TaskGroup() as group:
        owner = group.create_task(serve_forever())
        async with asyncio.timeout(5):
            await started.wait()
        owner.cancel()
    assert not _process_exists(pids[0])


async def test_unreadable_crl_at_startup_fails_with_the_brokers_reason(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    config = render_broker_config(
        tmp_path / "data", device_pki.broker_tls_files(), port=free_local_port()
    )
    device_pki.crl_file.write_bytes(b"not a crl")
    with pytest.raises(BrokerStartFailed, match="exited with status") as caught:
        async with ManagedMosquitto(config):
            pass
    assert "crl" in caught.value.message.lower()


async def test_port_held_by_another_server_is_not_mistaken_for_our_broker(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    squatter = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = squatter.sockets[0].getsockname()[1]
    config = render_broker_config(tmp_path / "data", device_pki.broker_tls_files(), port=port)
    async with squatter:
        with pytest.raises(BrokerStartFailed, match=r"Address already in use|exited"):
            async with ManagedMosquitto(config, start_timeout=5):
                pass


async def test_reload_waits_for_the_broker_to_confirm(mosquitto_broker: ManagedMosquitto) -> None:
    offset = mosquitto_broker.log_size()
    await mosquitto_broker.reload()
    assert mosquitto_broker.reloads == 1
    assert "Reloading config" in mosquitto_broker.log_text()[offset:]
    assert mosquitto_broker.running


async def test_connecting_to_a_stopped_broker_says_unreachable_not_refused(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    device = device_pki.mint_device("ZC1-0001")
    async with running_broker(device_pki, tmp_path / "data") as broker:
        pass
    with pytest.raises(BrokerUnreachable, match="cannot reach"):
        async with connect_mqtt(broker.host, broker.port, device.tls_context()):
            pass


async def test_reload_of_a_stopped_broker_is_an_error(device_pki: LocalPki, tmp_path: Path) -> None:
    async with running_broker(device_pki, tmp_path / "data") as broker:
        pass
    with pytest.raises(BrokerError, match="not running"):
        await broker.reload()


async def test_bridge_session_keeps_every_event_across_its_absence_and_a_broker_restart(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    device = device_pki.mint_device("ZC1-0001")
    total = 1500  # more than Mosquitto's default queue (1000 per client): pins the template
    session: dict[str, Any] = {"identifier": "bridge-test-7f3a9c", "clean_session": False}
    async with running_broker(device_pki, tmp_path / "data", restart_backoff=0.05) as broker:
        async with connect_mqtt(
            broker.host, broker.port, device_pki.bridge_tls_context(), **session
        ) as bridge:
            await bridge.subscribe("zn/v1/+/event", qos=1)
        async with connect_mqtt(broker.host, broker.port, device.tls_context()) as camera:
            for n in range(total):
                await camera.publish("zn/v1/ZC1-0001/event", str(n).encode(), qos=1)

        pid = broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # Mosquitto saves its persistence file and exits
        await _restarted(broker)

        received: set[int] = set()
        async with connect_mqtt(
            broker.host, broker.port, device_pki.bridge_tls_context(), **session
        ) as bridge:
            async with asyncio.timeout(20):
                async for message in bridge.messages:
                    assert isinstance(message.payload, bytes)
                    received.add(int(message.payload))
                    if len(received) == total:
                        break
    assert received == set(range(total))
