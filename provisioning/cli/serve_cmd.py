"""``zanuo serve``: the composition root that runs the API, the MQTT bridge and its broker.

With ``mqtt.url`` empty (the default) the service runs its own Mosquitto:
the device CA is created under ``<data dir>/ca`` if missing, the broker's
server certificate, the bridge certificate and the CRL are (re)issued under
``<data dir>/broker`` as needed, the project's template is rendered into
``<data dir>/mosquitto`` and Mosquitto runs as a supervised child process on
``mqtt.managed_host:managed_port``. Its pid goes to
``<data dir>/mosquitto/mosquitto.pid`` so ``zanuo devices revoke`` can make it
reload the CRL. With ``mqtt.url`` set (``mqtts://host:port``) the bridge uses
that broker instead, with the bridge certificate from ``zanuo ca bridge-cert``.

This is the only module that imports both ``provisioning`` and ``gateway``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from gateway.mqtt.bridge import BridgeOptions, BrokerReloader, MqttBridge, load_client_id
from gateway.mqtt.broker import (
    BrokerCredentials,
    ManagedMosquitto,
    client_tls_context,
    prepare_broker_credentials,
    render_broker_config,
)
from provisioning.api import wifi
from provisioning.api.middleware import AccessLogger
from provisioning.app import create_app
from provisioning.cli.common import SubParsers, prepare_database
from provisioning.clock import Clock, SystemClock
from provisioning.config import Secrets, Settings
from provisioning.domain.registry import CaPaths, DeviceRegistry
from provisioning.errors import ConfigError
from provisioning.security import ca as device_ca
from provisioning.services import Services, open_services

_LOGGER = logging.getLogger(__name__)


def register(sub: SubParsers) -> None:
    """Add the ``serve`` command."""
    serve = sub.add_parser("serve", help="run the service (API, MQTT bridge, embedded broker)")
    serve.set_defaults(handler=serve_forever)


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where the bridge connects, as whom, and who reloads the CRL."""

    host: str
    port: int
    tls_context: ssl.SSLContext
    crl_file: Path | None
    reloader: BrokerReloader | None
    managed: ManagedMosquitto | None = None


def instance_name() -> str:
    """Return this bridge instance's public name (the host name, made topic-safe)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64]
    return name or "local"


async def _managed_broker_credentials(
    secrets: Secrets, services: Services, paths: CaPaths, clock: Clock
) -> BrokerCredentials:
    passphrase = secrets.ca_passphrase.get_secret_value()
    if not paths.ca_cert_file.is_file():
        _LOGGER.info("No device CA in %s yet: creating one", paths.ca_dir)
        await asyncio.to_thread(device_ca.init_ca, paths.ca_dir, passphrase, clock)
    authority = await asyncio.to_thread(device_ca.load_ca, paths.ca_dir, passphrase)
    registry = DeviceRegistry(
        db=services.db,
        clock=clock,
        pepper=secrets.pepper.get_secret_value(),
        paths=paths,
        ca_passphrase=passphrase,
    )
    revoked = await registry.revocations()
    return await asyncio.to_thread(
        prepare_broker_credentials, authority, paths.crl_file.parent, clock, revoked=revoked
    )


@contextlib.asynccontextmanager
async def open_broker(
    settings: Settings, secrets: Secrets, services: Services, *, clock: Clock | None = None
) -> AsyncIterator[BrokerEndpoint]:
    """Start the embedded Mosquitto (no ``mqtt.url``) or describe the external broker."""
    clock = clock or SystemClock()
    paths = CaPaths.in_data_dir(settings.data_dir)
    if settings.mqtt.url:
        url = urlsplit(settings.mqtt.url)
        if url.scheme not in ("mqtts", "ssl", "tls") or not url.hostname:
            raise ConfigError("mqtt.url must look like mqtts://host:8883", key="mqtt.url")
        for needed in (paths.ca_cert_file, paths.bridge_cert_file, paths.bridge_key_file):
            if not needed.is_file():
                raise ConfigError(
                    f"{needed} is missing: run `zanuo ca init` and `zanuo ca bridge-cert`",
                    key="mqtt.url",
                )
        yield BrokerEndpoint(
            host=url.hostname,
            port=url.port or 8883,
            tls_context=client_tls_context(
                paths.ca_cert_file, paths.bridge_cert_file, paths.bridge_key_file
            ),
            crl_file=paths.crl_file if paths.crl_file.is_file() else None,
            reloader=None,
        )
        return
    credentials = await _managed_broker_credentials(secrets, services, paths, clock)
    config = render_broker_config(
        settings.data_dir,
        credentials.tls,
        port=settings.mqtt.managed_port,
        host=settings.mqtt.managed_host,
    )
    async with (
        ManagedMosquitto(config, executable=settings.mqtt.mosquitto_binary, clock=clock) as broker,
        asyncio.TaskGroup() as group,
    ):
        pid_writer = group.create_task(_keep_pid_file(broker, paths.broker_pid_file))
        try:
            yield BrokerEndpoint(
                host=broker.host,
                port=broker.port,
                tls_context=client_tls_context(
                    credentials.tls.ca_file,
                    credentials.bridge_cert_file,
                    credentials.bridge_key_file,
                ),
                crl_file=credentials.tls.crl_file,
                reloader=broker,
                managed=broker,
            )
        finally:
            pid_writer.cancel()
            with contextlib.suppress(OSError):
                paths.broker_pid_file.unlink()


async def _keep_pid_file(broker: ManagedMosquitto, path: Path) -> None:
    """Keep ``path`` naming the broker's current pid (it changes when it is restarted)."""
    written: int | None = None
    while True:
        pid = broker.pid
        if pid is not None and pid != written:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"{pid}\n", encoding="ascii")
            tmp.replace(path)
            written = pid
        await asyncio.sleep(1.0)


def bridge_options(settings: Settings, endpoint: BrokerEndpoint) -> BridgeOptions:
    """Return the bridge options for this process (client id kept in the data dir)."""
    instance = instance_name()
    client_id = load_client_id(settings.data_dir / "bridge" / f"{instance}.client-id")
    return BridgeOptions(
        host=endpoint.host,
        port=endpoint.port,
        tls_context=endpoint.tls_context,
        instance=instance,
        client_id=client_id,
        group=settings.mqtt.bridge_group,
        crl_file=endpoint.crl_file,
    )


@contextlib.asynccontextmanager
async def open_service(
    settings: Settings, secrets: Secrets, *, clock: Clock | None = None
) -> AsyncIterator[tuple[web.AppRunner, MqttBridge, BrokerEndpoint]]:
    """Open services, broker and bridge, and the HTTP server; close them in reverse order."""
    await prepare_database(settings)
    async with contextlib.AsyncExitStack() as stack:
        services = await stack.enter_async_context(open_services(settings, secrets, clock=clock))
        endpoint = await stack.enter_async_context(
            open_broker(settings, secrets, services, clock=clock)
        )
        bridge = await stack.enter_async_context(
            MqttBridge(services, bridge_options(settings, endpoint), reloader=endpoint.reloader)
        )

        @contextlib.asynccontextmanager
        async def given() -> AsyncIterator[Services]:
            yield services

        app = create_app(settings, secrets, services=given)
        app[wifi.COMMAND_SENDER_KEY] = bridge
        runner = web.AppRunner(app, access_log_class=AccessLogger)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        await site.start()
        _LOGGER.info("serving on http://%s:%s", settings.server.host, settings.server.port)
        yield runner, bridge, endpoint
        _LOGGER.info("shutting down")


async def serve_until(
    settings: Settings,
    secrets: Secrets,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[web.AppRunner, MqttBridge, BrokerEndpoint], None] | None = None,
) -> int:
    """Serve until ``stop`` is set."""
    async with open_service(settings, secrets) as (runner, bridge, endpoint):
        if on_ready is not None:
            on_ready(runner, bridge, endpoint)
        await stop.wait()
    return 0


async def serve_forever(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _LOGGER.debug("zanuo serve pid %s", os.getpid())
    return await serve_until(settings, secrets, stop)
