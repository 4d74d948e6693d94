"""Measure the MQTT bridge: events/s and publish-to-stored latency against a bare subscriber.

Run: ``.venv/bin/python benchmarks/bridge.py [--events 20000] [--devices 10] [--window 100]``

Both runs use the same Mosquitto (started from the project template with
mutual TLS, in a temp dir) and the same publishers: ``--devices`` device
connections publish ``--events`` QoS 1 events between them, each keeping at
most ``--window`` publishes in flight.

* **bare**: one aiomqtt subscriber (MQTT 5, QoS 1, automatic PUBACK) that only
  parses the JSON. Latency is publish call → message received.
* **bridge**: the real :class:`MqttBridge` (manual PUBACK after commit, payload
  validation, ownership lookup, batched idempotent INSERT into SQLite in WAL
  mode). Latency is publish call → the batch holding the event committed.

Throughput is events / (first publish → last received or stored). The ratio
line is what ``docs/PERFORMANCE.md`` records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.mqtt import topics
from gateway.mqtt.bridge import BridgeOptions, MqttBridge, new_client_id
from gateway.mqtt.broker import (
    BrokerTlsFiles,
    ManagedMosquitto,
    client_tls_context,
    free_local_port,
    render_broker_config,
)
from provisioning.clock import SystemClock
from provisioning.config import load_secrets, load_settings
from provisioning.security import ca as device_ca
from provisioning.security.crl import write_crl
from provisioning.services import Services, open_services
from provisioning.storage.devices import Device, Ownership
from provisioning.storage.engine import Database
from provisioning.storage.models import Account

PASSPHRASE = b"benchmark-ca-passphrase"


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """One run's figures."""

    name: str
    events: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Return events per second."""
        return self.events / self.seconds

    def line(self) -> str:
        """Format as one report line."""
        return (
            f"  {self.name:>6}: {self.rate:8.0f} events/s ({self.events} in {self.seconds:.2f} s); "
            f"publish→{'stored' if self.name == 'bridge' else 'received'} "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Fleet:
    """The PKI, the broker listener and the devices' TLS contexts."""

    directory: Path
    authority: device_ca.CertificateAuthority | None
    serials: list[str]


def _make_pki(directory: Path, devices: int) -> Fleet:
    clock = SystemClock()
    authority = device_ca.init_ca(directory / "ca", PASSPHRASE, clock)
    device_ca.issue_server_certificate(
        authority, ["127.0.0.1"], directory / "server.crt", directory / "server.key", clock
    )
    device_ca.issue_bridge_certificate(
        authority, directory / "bridge.crt", directory / "bridge.key", clock
    )
    write_crl(authority, {}, directory / "crl.pem", clock)
    serials = [f"ZB1-{n:06d}" for n in range(devices)]
    for serial in serials:
        device_ca.manufacture_device(authority, serial, directory / "devices" / serial, clock)
    return Fleet(directory, authority, serials)


async def _register(services: Services, fleet: Fleet) -> None:
    now = services.clock.now()
    async with services.db.session() as session:
        for serial in fleet.serials:
            certificate = device_ca.read_certificate(
                fleet.directory / "devices" / serial / device_ca.DEVICE_CERT_FILE
            )
            account_id = uuid.uuid4()
            session.add(
                Account(id=account_id, password_hash="!", created_at=now, updated_at=now)  # noqa: S106 (a disabled login, not a password)
            )
            await services.vault.create_key(session, account_id, now)
            session.add(
                Device(
                    serial=serial,
                    model="CAM-100",
                    device_type="camera",
                    capabilities=["wifi"],
                    firmware_version="1.0.0",
                    certificate_pem=device_ca.certificate_pem(certificate).decode(),
                    certificate_fingerprint=device_ca.certificate_fingerprint(certificate),
                    certificate_serial=format(certificate.serial_number, "x"),
                    import_digest=hashlib.sha256(serial.encode()).hexdigest(),
                    imported_at=now,
                )
            )
            await session.flush()
            session.add(
                Ownership(
                    serial=serial, account_id=account_id, binding_id=uuid.uuid4(), bound_at=now
                )
            )
        await session.commit()


async def _publish_all(
    fleet: Fleet,
    port: int,
    events: int,
    window: int,
    run: str,
    sent_at: dict[tuple[str, str], float],
    rate: float,
) -> None:
    per_device = events // len(fleet.serials)
    # rate > 0: each device publishes on a fixed schedule (latency without queueing);
    # rate == 0: as fast as the in-flight window allows (throughput).
    interval = len(fleet.serials) / rate if rate > 0 else 0.0

    async def one(serial: str) -> None:
        folder = fleet.directory / "devices" / serial
        context = client_tls_context(
            folder / device_ca.DEVICE_CA_FILE,
            folder / device_ca.DEVICE_CERT_FILE,
            folder / device_ca.DEVICE_KEY_FILE,
        )
        topic = topics.device_topic(serial, topics.Inbound.EVENT)
        gate = asyncio.Semaphore(window)
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier=serial,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=context,
            max_inflight_messages=window,
        ) as client:
            client.pending_calls_threshold = window + 10
            start = time.perf_counter()

            async def send(number: int) -> None:
                if interval:
                    await asyncio.sleep(max(0.0, start + number * interval - time.perf_counter()))
                async with gate:
                    event_id = f"{run}-{number}"
                    payload = json.dumps(
                        {"id": event_id, "type": "motion", "ts": "2026-11-02T09:00:00Z"}
                    ).encode()
                    sent_at[(serial, event_id)] = time.perf_counter()
                    await client.publish(topic, payload, qos=1, timeout=60)

            async with asyncio.TaskGroup() as group:
                for number in range(per_device):
                    group.create_task(send(number))

    async with asyncio.TaskGroup() as group:
        for serial in fleet.serials:
            group.create_task(one(serial))


async def _publish_in_child(
    fleet: Fleet, port: int, events: int, window: int, run: str, rate: float
) -> dict[tuple[str, str], float]:
    """Run the publishers in another process (their TLS work must not share our CPU)."""
    out = fleet.directory / f"{run}-{rate:.0f}.sent.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--publisher",
        str(fleet.directory),
        "--port",
        str(port),
        "--devices",
        str(len(fleet.serials)),
        "--events",
        str(events),
        "--window",
        str(window),
        "--rate",
        str(rate),
        "--run",
        run,
        "--out",
        str(out),
    )
    if await process.wait() != 0:
        raise RuntimeError("the publisher process failed")
    return _read_sent(out)


async def publisher_main(
    directory: Path,
    port: int,
    devices: int,
    events: int,
    window: int,
    rate: float,
    run: str,
    out: Path,
) -> None:
    """Publish for one run and write (serial, event id, perf_counter at publish) lines."""
    serials = [f"ZB1-{n:06d}" for n in range(devices)]
    sent_at: dict[tuple[str, str], float] = {}
    fleet = Fleet(directory, None, serials)
    await _publish_all(fleet, port, events, window, run, sent_at, rate)
    _write_sent(out, sent_at)


def _write_sent(out: Path, sent_at: dict[tuple[str, str], float]) -> None:
    out.write_text("".join(json.dumps([s, e, t]) + "\n" for (s, e), t in sent_at.items()))


def _read_sent(out: Path) -> dict[tuple[str, str], float]:
    sent_at: dict[tuple[str, str], float] = {}
    for line in out.read_text().splitlines():
        serial, event_id, when = json.loads(line)
        sent_at[(serial, event_id)] = when
    return sent_at


def _result(
    name: str, sent_at: dict[tuple[str, str], float], done_at: dict[tuple[str, str], float]
) -> Result:
    latencies = sorted((done_at[key] - sent_at[key]) * 1000 for key in done_at)
    quantiles = statistics.quantiles(latencies, n=100)
    seconds = max(done_at.values()) - min(sent_at.values())
    return Result(name, len(done_at), seconds, statistics.median(latencies), quantiles[98])


async def _wait_for(done_at: dict[tuple[str, str], float], expected: int) -> None:
    # Polling keeps the measured code free of benchmark hooks beyond the store callback.
    while len(done_at) < expected:  # noqa: ASYNC110 (see above)
        await asyncio.sleep(0.005)


async def bare_run(
    fleet: Fleet, broker: ManagedMosquitto, events: int, window: int, rate: float, name: str
) -> Result:
    """Publish through the broker to a subscriber that only parses the JSON."""
    done_at: dict[tuple[str, str], float] = {}
    subscriber = aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=new_client_id(),
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=client_tls_context(
            fleet.directory / "ca" / device_ca.CA_CERT_FILE,
            fleet.directory / "bridge.crt",
            fleet.directory / "bridge.key",
        ),
    )
    async with subscriber:
        await subscriber.subscribe([(topics.inbound_filters()[2], SubscribeOptions(qos=1))])

        async def receive() -> None:
            async for message in subscriber.messages:
                assert isinstance(message.payload, bytes)
                document = json.loads(message.payload)
                serial = topics.parse_device_topic(message.topic.value).serial
                done_at[(serial, document["id"])] = time.perf_counter()

        async with asyncio.TaskGroup() as group:
            receiver = group.create_task(receive())
            sent_at = await _publish_in_child(fleet, broker.port, events, window, name, rate)
            await _wait_for(done_at, len(sent_at))
            receiver.cancel()
    return _result(name, sent_at, done_at)


async def bridge_run(
    fleet: Fleet,
    broker: ManagedMosquitto,
    services: Services,
    events: int,
    window: int,
    rate: float,
    name: str,
) -> Result:
    """Publish through the broker into the real bridge, which stores every event."""
    done_at: dict[tuple[str, str], float] = {}

    def stored(keys: Sequence[tuple[str, str]]) -> None:
        now = time.perf_counter()
        for key in keys:
            done_at.setdefault(key, now)

    options = BridgeOptions(
        host=broker.host,
        port=broker.port,
        tls_context=client_tls_context(
            fleet.directory / "ca" / device_ca.CA_CERT_FILE,
            fleet.directory / "bridge.crt",
            fleet.directory / "bridge.key",
        ),
        instance="bench",
        client_id=new_client_id(),
    )
    async with MqttBridge(services, options, on_events_stored=stored) as bridge:
        await bridge.wait_connected()
        sent_at = await _publish_in_child(fleet, broker.port, events, window, name, rate)
        await _wait_for(done_at, len(sent_at))
    return _result(name, sent_at, done_at)


@contextlib.asynccontextmanager
async def environment(
    directory: Path, devices: int
) -> AsyncIterator[tuple[Fleet, ManagedMosquitto, Services]]:
    """Create the PKI, database, services and broker for one benchmark."""
    fleet = await asyncio.to_thread(_make_pki, directory / "pki", devices)
    settings = load_settings(environ={"ZANUO_PATHS__DATA_DIR": str(directory / "data")})
    (directory / "data").mkdir()
    secrets = load_secrets(settings, environ={}, generate=True)
    db = Database(settings.database_url)
    await db.upgrade()
    await db.dispose()
    config = render_broker_config(
        directory / "broker",
        BrokerTlsFiles(
            ca_file=fleet.directory / "ca" / device_ca.CA_CERT_FILE,
            cert_file=fleet.directory / "server.crt",
            key_file=fleet.directory / "server.key",
            crl_file=fleet.directory / "crl.pem",
        ),
        port=free_local_port(),
    )
    async with open_services(settings, secrets) as services, ManagedMosquitto(config) as broker:
        await _register(services, fleet)
        yield fleet, broker, services


async def main(events: int, devices: int, window: int, rate: float) -> None:
    """Run both measurements on one broker and print them with their ratio."""
    paced = max(devices, int(rate * 10))  # ten seconds at the paced rate
    with tempfile.TemporaryDirectory(prefix="zanuo-bridge-bench-") as tmp:
        async with environment(Path(tmp), devices) as (fleet, broker, services):
            bare = await bare_run(fleet, broker, events, window, 0, "bare")
            bridge = await bridge_run(fleet, broker, services, events, window, 0, "bridge")
            bare_paced = await bare_run(fleet, broker, paced, window, rate, "bare")
            bridge_paced = await bridge_run(fleet, broker, services, paced, window, rate, "bridge")
    print(f"saturated: {events} QoS 1 events from {devices} devices, {window} in flight each")
    print(bare.line())
    print(bridge.line())
    print(f"paced: {paced} events at {rate:.0f} events/s")
    print(bare_paced.line())
    print(bridge_paced.line())
    print(
        f"ratio bridge/bare: throughput {bridge.rate / bare.rate:.2f}x; paced latency "
        f"p50 {bridge_paced.p50_ms / bare_paced.p50_ms:.1f}x, "
        f"p99 {bridge_paced.p99_ms / bare_paced.p99_ms:.1f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--publisher", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rate", type=float, default=300.0, help="events/s of the paced run")
    arguments = parser.parse_args()
    if arguments.publisher is not None:
        asyncio.run(
            publisher_main(
                arguments.publisher,
                arguments.port,
                arguments.devices,
                arguments.events,
                arguments.window,
                arguments.rate,
                arguments.run,
                arguments.out,
            )
        )
    else:
        asyncio.run(main(arguments.events, arguments.devices, arguments.window, arguments.rate))
