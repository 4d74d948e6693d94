"""The MQTT bridge: device traffic in, results and commands out.

One :class:`MqttBridge` is one broker connection (aiomqtt, MQTT 5) with a
persistent session: ``clean_start`` off, a session expiry, QoS 1 everywhere and
a client id that is random per instance and never published, because any
client with a valid certificate can take over any client id (``MQTT.md``).
The instance *name* is public: it names the retained ``zn/bridge/{instance}/state``
topic, whose LWT says ``{"online": false}``.

Acknowledgements are manual: a message is PUBACKed only after it was handled
(for events: after the batch holding it was committed), so a bridge that
dies or a broker that restarts causes redelivery, never loss; the event
store is idempotent on (serial, event id), so redelivery never duplicates.
MQTT 5 Receive Maximum keeps at most ``receive_maximum`` unacknowledged
messages in flight to us — except that Mosquitto 2.0 sends a resumed session's
whole backlog at once (measured), so the inbound queue has its own bound
(``incoming_queue``); what overflows is counted (``overloaded``), not
acknowledged, and redelivered after the next reconnect.

Several instances share the load with ``$share/{group}/…`` subscriptions.
Mosquitto keeps routing a share to a dead member's persistent session, so the
instances tell each other their client ids on ``zn/bridge/{instance}/session``
(bridges only) and a survivor drains and closes a dead peer's session
(:meth:`MqttBridge._adopt`).

Revocation: Mosquitto does not close the open session of a certificate that a
CRL reload revoked. :meth:`MqttBridge.kick` ends it by client-id takeover:
devices connect with client id = their serial (the device firmware contract),
so the bridge connects once with that id and disconnects. With ``crl_file``
set the bridge watches the CRL and kicks every newly revoked device itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import random
import secrets
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from gateway.mqtt import payloads, topics
from gateway.mqtt.commands import CommandDispatcher
from provisioning.domain.binding import BindProof
from provisioning.domain.commands import BridgeUnavailable, DeviceCommand
from provisioning.domain.consent import BIOMETRIC_EVENT_TYPES, Purpose
from provisioning.domain.events import screenshot_context
from provisioning.errors import ZanuoError
from provisioning.metrics import Metrics
from provisioning.security.crl import read_crl
from provisioning.security.keys import DecryptionFailed, seal_bytes
from provisioning.services import Services
from provisioning.storage.devices import Device, Event, Ownership

_LOGGER = logging.getLogger(__name__)

SCREENSHOT_PURPOSE: Final = "event_screenshots"
MAX_PEERS: Final = 256
BIND_RESULT_EXPIRY_S: Final = 600
_KIND_LABEL: Final = {kind: kind.name.lower() for kind in topics.Inbound}


class BrokerReloader(Protocol):
    """Something that makes the broker reload its CRL (``ManagedMosquitto`` fits)."""

    async def reload(self) -> None:
        """Reload the CRL."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeOptions:
    """Where and how one bridge instance connects."""

    host: str
    port: int
    tls_context: ssl.SSLContext
    instance: str
    client_id: str
    group: str | None = None
    session_expiry_s: int = 3600
    receive_maximum: int = 500
    incoming_queue: int = 50_000
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    event_batch_size: int = 200
    event_batch_wait_s: float = 0.01
    command_poll_s: float = 5.0
    command_expiry_s: int = 300
    crl_file: Path | None = None
    crl_poll_s: float = 1.0
    adopt_idle_s: float = 1.0


def new_client_id() -> str:
    """Return an unguessable MQTT client id for a bridge instance."""
    return "zb-" + secrets.token_urlsafe(24)


def load_client_id(path: Path) -> str:
    """Return the instance's client id stored at ``path``, creating it (mode 0600) once."""
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text(encoding="ascii").strip()
        if text:
            return text
    path.parent.mkdir(parents=True, exist_ok=True)
    client_id = new_client_id()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(client_id + "\n")
    return client_id


class _Drop(Exception):
    """A message the bridge counts by ``reason`` and drops."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class _Delivery:
    """Enough to PUBACK a message later, on the connection it came in on."""

    client: aiomqtt.Client
    mid: int
    qos: int


@dataclasses.dataclass(frozen=True, slots=True)
class _PendingEvent:
    serial: str
    hub: str | None
    event: payloads.EventPayload
    screenshot: bytes | None
    delivery: _Delivery
    received: float


class MqttBridge:
    """One bridge instance: connect, subscribe, handle, acknowledge, reconnect."""

    def __init__(
        self,
        services: Services,
        options: BridgeOptions,
        *,
        reloader: BrokerReloader | None = None,
        on_events_stored: Callable[[Sequence[tuple[str, str]]], None] | None = None,
    ) -> None:
        self.services = services
        self.options = options
        self._reloader = reloader
        # Observers (benchmarks, tests) learn which (serial, event id) were committed.
        self._on_events_stored = on_events_stored
        self._metrics = services.metrics
        self._client: aiomqtt.Client | None = None
        # Connections whose packet ids are valid now: the main one and adoptions.
        self._live: set[aiomqtt.Client] = set()
        self._unacked: dict[aiomqtt.Client, int] = {}
        self._group: asyncio.TaskGroup | None = None
        self._peers: dict[str, str] = {}
        self._peers_offline: set[str] = set()
        self._adopting: set[str] = set()
        self._connected = asyncio.Event()
        self._events: asyncio.Queue[_PendingEvent] = asyncio.Queue(maxsize=options.receive_maximum)
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.reconnects = 0
        self.kicks = 0
        self.events_stored = 0
        self.adoptions = 0
        self.adopted_messages = 0
        self.dispatcher = CommandDispatcher(
            db=services.db,
            clock=services.clock,
            metrics=services.metrics,
            publisher=self,
            poll_s=options.command_poll_s,
            expiry_s=options.command_expiry_s,
        )
        is_sqlite = services.db.is_sqlite
        self._insert_events = (sqlite_insert if is_sqlite else pg_insert)(
            Event
        ).on_conflict_do_nothing(index_elements=["serial", "event_id"])

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("this bridge is already running")
        self._stopping = False
        await self._refresh_online_gauge()
        async with contextlib.AsyncExitStack() as stack:
            group = await stack.enter_async_context(asyncio.TaskGroup())
            self._group = group
            stack.push_async_callback(self._stop_tasks)
            name = self.options.instance
            self._tasks = [
                group.create_task(self._connection_loop(), name=f"bridge-{name}-mqtt"),
                group.create_task(self._event_writer(), name=f"bridge-{name}-events"),
                group.create_task(self.dispatcher.run(), name=f"bridge-{name}-commands"),
            ]
            if self.options.crl_file is not None:
                self._tasks.append(
                    group.create_task(
                        self._watch_crl(self.options.crl_file), name=f"bridge-{name}-crl"
                    )
                )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _stop_tasks(self) -> None:
        self._stopping = True
        connection, workers = self._tasks[0], self._tasks[1:]
        self._tasks = []
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.wait(workers)
        client = self._client
        if client is not None and self._connected.is_set():
            # Say goodbye on the retained topic: a clean DISCONNECT fires no LWT.
            with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                async with asyncio.timeout(2):
                    await self._publish_presence(client, online=False)
        # On Python 3.11 aiomqtt's wait_for can swallow a cancellation that
        # races a message, leaving the loop iterating. Cancel until the task
        # ends, and drop the connection so the message iterator fails at once.
        while not connection.done():
            connection.cancel()
            await asyncio.wait({connection}, timeout=1.0)
            if not connection.done() and client is not None:
                with contextlib.suppress(Exception):
                    client._client.disconnect()

    @property
    def connected(self) -> bool:
        """Tell whether the bridge holds a connection to the broker now."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until the bridge is connected and subscribed."""
        await self._connected.wait()

    # ------------------------------------------------------------------ connection

    def _make_client(
        self, client_id: str | None = None, *, session_expiry_s: int | None = None
    ) -> aiomqtt.Client:
        options = self.options
        adopting = client_id is not None
        connect = _properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = (
            options.session_expiry_s if session_expiry_s is None else session_expiry_s
        )
        connect.ReceiveMaximum = options.receive_maximum
        will = aiomqtt.Will(
            topics.bridge_state_topic(options.instance),
            payloads.encode(payloads.BridgeStatePayload(online=False)),
            qos=1,
            retain=True,
        )
        client = aiomqtt.Client(
            options.host,
            options.port,
            identifier=client_id or options.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect,
            keepalive=options.keepalive_s,
            tls_context=options.tls_context,
            timeout=options.connect_timeout_s,
            will=None if adopting else will,
            queue_type=_counting_queue(self._metrics),
            max_queued_incoming_messages=options.incoming_queue,
        )
        # aiomqtt has no manual-ack option; paho does. PUBACK only after the
        # message is handled, so a crash means redelivery instead of loss.
        client._client.manual_ack_set(True)
        return client

    async def _connection_loop(self) -> None:
        backoff = self.options.backoff_initial_s
        first = True
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    self._live.add(client)
                    if not first:
                        self.reconnects += 1
                        self._metrics.bridge_reconnects.inc()
                    first = False
                    filters = topics.subscriptions(self.options.group)
                    if self.options.group is not None:
                        filters += topics.bridge_filters()
                    await client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
                    if self.options.group is not None:
                        await self._publish_session(client)
                    await self._publish_presence(client, online=True)
                    self._connected.set()
                    self._metrics.bridge_connected.set(1)
                    backoff = self.options.backoff_initial_s
                    _LOGGER.info("MQTT bridge %s connected", self.options.instance)
                    self.dispatcher.wake()
                    async for message in client.messages:
                        await self._route(message, _Delivery(client, message.mid, message.qos))
                        if self._stopping:
                            break
            except (aiomqtt.MqttError, OSError) as err:
                _LOGGER.warning(
                    "MQTT bridge %s disconnected: %s", self.options.instance, type(err).__name__
                )
            finally:
                self._connected.clear()
                self._metrics.bridge_connected.set(0)
                self._client = None
                self._live.discard(client)
                self._unacked.pop(client, None)
            if self._stopping:
                return
            # Full jitter: many bridges restarting together do not reconnect in step.
            delay = backoff * random.uniform(0.5, 1.0)
            backoff = min(backoff * 2, self.options.backoff_max_s)
            await asyncio.sleep(delay)

    def _ack(self, delivery: _Delivery) -> None:
        # A message from a connection that has ended is redelivered on the
        # next one; its old packet id must not acknowledge something else.
        client = delivery.client
        if client not in self._live:
            return
        if client in self._unacked:
            self._unacked[client] -= 1
        if delivery.qos:
            client._client.ack(delivery.mid, delivery.qos)

    async def _publish(
        self,
        topic: str,
        payload: bytes,
        *,
        kind: str,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> None:
        client = self._client
        if client is None or not self._connected.is_set():
            raise BridgeUnavailable()
        properties: Properties | None = None
        if expiry_s is not None:
            properties = _properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = expiry_s
        try:
            await client.publish(
                topic, payload, qos=1, retain=retain, properties=properties, timeout=10
            )
        except aiomqtt.MqttError as err:
            raise BridgeUnavailable() from err
        self._metrics.mqtt_messages_out.labels(kind).inc()

    async def _publish_presence(self, client: aiomqtt.Client, *, online: bool) -> None:
        await client.publish(
            topics.bridge_state_topic(self.options.instance),
            payloads.encode(payloads.BridgeStatePayload(online=online)),
            qos=1,
            retain=True,
            timeout=5,
        )
        self._metrics.mqtt_messages_out.labels("bridge_state").inc()

    async def publish_command(
        self, serial: str, hub: str | None, payload: bytes, *, expiry_s: int
    ) -> None:
        """Publish a command to a device (through its hub for a BLE child)."""
        topic = topics.device_topic(serial, topics.Outbound.CMD, hub=hub)
        await self._publish(topic, payload, kind="cmd", expiry_s=expiry_s)

    async def send_now(self, command: DeviceCommand, *, expiry_s: int) -> None:
        """Send a secret-bearing command to an online device now (``DeviceCommandSender``)."""
        await self.dispatcher.send_now(command, expiry_s=expiry_s)

    # ------------------------------------------------------------------ routing

    def _drop(self, reason: str) -> None:
        self._metrics.mqtt_dropped.labels(reason).inc()

    async def _route(self, message: aiomqtt.Message, delivery: _Delivery) -> None:
        if topics.is_bridge_topic(message.topic.value):
            self._peer_message(message)
            self._ack(delivery)
            return
        try:
            parsed = topics.parse_device_topic(message.topic.value)
        except topics.TopicError:
            self._drop("topic")
            self._ack(delivery)
            return
        kind = parsed.kind
        self._metrics.mqtt_messages_in.labels(_KIND_LABEL[kind]).inc()
        started = time.perf_counter()
        try:
            payload = payloads.parse(kind, message.payload)
            if isinstance(payload, payloads.EventPayload):
                await self._enqueue_event(parsed, payload, delivery, started)
                return  # acknowledged by the event writer after the commit
            await self._handle(parsed, payload)
        except (payloads.PayloadError, _Drop) as err:
            self._drop(err.reason)
        except (SQLAlchemyError, ZanuoError) as err:
            _LOGGER.error(
                "MQTT %s handler failed for %s: %s",
                _KIND_LABEL[kind],
                parsed.serial,
                type(err).__name__,
            )
            self._drop("handler_error")
        self._metrics.mqtt_handler_latency.labels(_KIND_LABEL[kind]).observe(
            time.perf_counter() - started
        )
        self._ack(delivery)

    async def _handle(self, parsed: topics.DeviceTopic, payload: Any) -> None:
        if isinstance(payload, payloads.StatePayload):
            await self._require_child(parsed)
            await self._handle_state(parsed, payload)
        elif isinstance(payload, payloads.BindPayload):
            await self._handle_bind(parsed, payload)
        elif isinstance(payload, payloads.ResetPayload):
            await self._require_child(parsed)
            await self.services.devices.device_reset(parsed.serial)
        elif isinstance(payload, payloads.CommandAckPayload):
            await self._require_child(parsed)
            if not await self.dispatcher.acknowledge(parsed.serial, payload):
                raise _Drop("unknown_command")

    async def _is_child(self, hub: str, child: str) -> bool:
        async with self.services.db.session() as session:
            parent = await session.scalar(
                select(Device.parent_serial).where(Device.serial == child)
            )
        return parent == hub

    async def _require_child(self, parsed: topics.DeviceTopic) -> None:
        if parsed.hub is not None and not await self._is_child(parsed.hub, parsed.serial):
            raise _Drop("unknown_child")

    async def _handle_state(self, parsed: topics.DeviceTopic, state: payloads.StatePayload) -> None:
        values: dict[str, Any] = {"online": state.online, "last_seen_at": self.services.clock.now()}
        if state.network is not None:
            values["network_type"] = state.network
        elif parsed.relayed:
            values["network_type"] = "ble"
        if state.firmware is not None:
            values["reported_firmware"] = state.firmware
        async with self.services.db.session() as session:
            result = await session.execute(
                update(Device).where(Device.serial == parsed.serial).values(**values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise _Drop("unknown_device")
            online = await session.scalar(
                select(func.count()).select_from(Device).where(Device.online.is_(True))
            )
            await session.commit()
        self._metrics.devices_online.set(online or 0)
        if state.online:
            self.dispatcher.wake()

    async def _refresh_online_gauge(self) -> None:
        async with self.services.db.session() as session:
            online = await session.scalar(
                select(func.count()).select_from(Device).where(Device.online.is_(True))
            )
        self._metrics.devices_online.set(online or 0)

    async def _handle_bind(self, parsed: topics.DeviceTopic, bind: payloads.BindPayload) -> None:
        proof: BindProof | None = None
        if bind.proof is not None:
            nonce, signature = bind.proof.raw()
            proof = BindProof(device_nonce=nonce, signature=signature)
        # A hub may relay a child it has not paired yet only with the child's
        # signed proof over a pairing token; BindingService verifies it and
        # records the hub as the child's parent.
        if parsed.hub is not None and proof is None:
            await self._require_child(parsed)
        confirmation = await self.services.binding.confirm(
            parsed.serial, bind.token, proof=proof, parent_serial=parsed.hub
        )
        result = payloads.BindResultPayload(
            status="bound" if confirmation.bound else "rejected", reason=confirmation.reason
        )
        topic = topics.device_topic(parsed.serial, topics.Outbound.BIND_RESULT, hub=parsed.hub)
        await self._publish(
            topic, payloads.encode(result), kind="bind_result", expiry_s=BIND_RESULT_EXPIRY_S
        )

    # ------------------------------------------------------------------ events

    async def _enqueue_event(
        self,
        parsed: topics.DeviceTopic,
        event: payloads.EventPayload,
        delivery: _Delivery,
        started: float,
    ) -> None:
        await self._require_child(parsed)
        screenshot = event.screenshot_bytes()
        pending = _PendingEvent(parsed.serial, parsed.hub, event, screenshot, delivery, started)
        if delivery.client in self._unacked:
            self._unacked[delivery.client] += 1
        # Never full in practice: the broker keeps at most receive_maximum
        # unacknowledged messages in flight to us. If it is, wait (push back).
        await self._events.put(pending)

    async def _event_writer(self) -> None:
        options = self.options
        while True:
            batch = [await self._events.get()]
            self._take_ready(batch)
            if len(batch) < options.event_batch_size and options.event_batch_wait_s > 0:
                await asyncio.sleep(options.event_batch_wait_s)
                self._take_ready(batch)
            await self._store_batch(batch)

    def _take_ready(self, batch: list[_PendingEvent]) -> None:
        while len(batch) < self.options.event_batch_size:
            try:
                batch.append(self._events.get_nowait())
            except asyncio.QueueEmpty:
                return

    async def _store_batch(self, batch: list[_PendingEvent]) -> None:
        for attempt in range(3):
            try:
                await self._store_events(batch)
                break
            except (SQLAlchemyError, ZanuoError) as err:
                if len(batch) > 1:
                    # One bad row must not sink its neighbours: store one by one.
                    for item in batch:
                        await self._store_batch([item])
                    return
                _LOGGER.error(
                    "Storing an event failed (attempt %s): %s", attempt + 1, type(err).__name__
                )
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            self._drop("store_failed")
        done = time.perf_counter()
        for item in batch:
            self._metrics.mqtt_handler_latency.labels("event").observe(done - item.received)
            self._ack(item.delivery)

    async def _store_events(self, batch: list[_PendingEvent]) -> None:
        services = self.services
        now = services.clock.now()
        delete_at = now + dt.timedelta(days=services.settings.retention.screenshot_days)
        serials = {item.serial for item in batch}
        rows: list[dict[str, Any]] = []
        async with services.db.session() as session:
            owners = {
                serial: (account_id, notifications)
                for serial, account_id, notifications in (
                    await session.execute(
                        select(
                            Ownership.serial, Ownership.account_id, Ownership.notifications
                        ).where(Ownership.serial.in_(serials))
                    )
                ).all()
            }
            consent: dict[uuid.UUID, bool] = {}
            biometric: dict[uuid.UUID, bool] = {}
            keys: dict[uuid.UUID, bytes] = {}
            for item in batch:
                owner = owners.get(item.serial)
                if owner is None:
                    self._drop("unbound")
                    continue
                account_id, notifications = owner
                sealed: bytes | None = None
                if item.screenshot is not None:
                    if account_id not in consent:
                        consent[account_id] = await services.consents.allows(
                            session, account_id, SCREENSHOT_PURPOSE
                        )
                    if consent[account_id] and account_id not in keys:
                        try:
                            keys[account_id] = await services.vault.data_key(session, account_id)
                        except DecryptionFailed:
                            # The account's key is destroyed (account cancelled): keep nothing.
                            consent[account_id] = False
                    if consent[account_id]:
                        sealed = seal_bytes(
                            keys[account_id],
                            item.screenshot,
                            screenshot_context(item.serial, item.event.id),
                        )
                result = item.event.result
                if result is not None and item.event.type in BIOMETRIC_EVENT_TYPES:
                    # The outcome of an on-device biometric check is kept only
                    # with biometric_features; the event itself always is.
                    if account_id not in biometric:
                        biometric[account_id] = await services.consents.allows(
                            session, account_id, Purpose.BIOMETRIC_FEATURES
                        )
                    if not biometric[account_id]:
                        result = None
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "serial": item.serial,
                        "event_id": item.event.id,
                        "account_id": account_id,
                        "event_type": item.event.type,
                        "occurred_at": payloads.event_occurred_at(item.event),
                        "result": result,
                        "via_serial": item.hub,
                        "screenshot_enc": sealed,
                        "screenshot_delete_at": delete_at if sealed is not None else None,
                        "in_feed": notifications,
                        "received_at": now,
                    }
                )
            if rows:
                await session.execute(self._insert_events, rows)
                await session.commit()
        self.events_stored += len(rows)
        if self._on_events_stored is not None and rows:
            self._on_events_stored([(row["serial"], row["event_id"]) for row in rows])

    # ------------------------------------------------------------------ peers

    async def _publish_session(self, client: aiomqtt.Client) -> None:
        await client.publish(
            topics.bridge_session_topic(self.options.instance),
            payloads.encode(payloads.BridgeSessionPayload(client_id=self.options.client_id)),
            qos=1,
            retain=True,
            timeout=5,
        )

    def _peer_message(self, message: aiomqtt.Message) -> None:
        try:
            instance, what = topics.parse_bridge_topic(message.topic.value)
        except topics.TopicError:
            self._drop("topic")
            return
        if instance == self.options.instance or len(self._peers) > MAX_PEERS:
            return
        body = message.payload if isinstance(message.payload, bytes) else b""
        try:
            if what == "session":
                if not body:
                    self._peers.pop(instance, None)
                    return
                session = payloads.BridgeSessionPayload.model_validate_json(body)
                self._peers[instance] = session.client_id
            else:
                state = payloads.BridgeStatePayload.model_validate_json(body)
                if state.online:
                    self._peers_offline.discard(instance)
                else:
                    self._peers_offline.add(instance)
        except ValueError:
            self._drop("schema")
            return
        self._maybe_adopt(instance)

    def _maybe_adopt(self, instance: str) -> None:
        client_id = self._peers.get(instance)
        group = self._group
        if (
            client_id is None
            or instance not in self._peers_offline
            or instance in self._adopting
            or group is None
            or self._stopping
        ):
            return
        self._adopting.add(instance)
        self._tasks.append(
            group.create_task(self._adopt(instance, client_id), name=f"bridge-adopt-{instance}")
        )

    async def _adopt(self, instance: str, client_id: str) -> None:
        """Drain a dead peer's persistent session, then let it expire.

        Mosquitto keeps routing a share of ``$share`` messages to an offline
        member's session; without this they would wait for that instance to
        come back. The session is resumed with expiry 0 (so it ends when we
        disconnect), unsubscribed first (so nothing new is routed to it),
        drained until idle, and left only when everything handled is acked.
        """
        client = self._make_client(client_id, session_expiry_s=0)
        try:
            async with client:
                self._live.add(client)
                self._unacked[client] = 0
                try:
                    await client.unsubscribe(topics.subscriptions(self.options.group))
                    await self._drain(client)
                finally:
                    self._live.discard(client)
                    self._unacked.pop(client, None)
        except (aiomqtt.MqttError, OSError) as err:
            # The peer came back and took its session over, or the broker went
            # away: either way its messages are not lost, just not ours.
            _LOGGER.warning("Could not adopt bridge %s's session: %s", instance, type(err).__name__)
        else:
            self.adoptions += 1
            _LOGGER.info("Adopted and closed the session of stopped bridge %s", instance)
            if instance in self._peers_offline and self._client is not None:
                with contextlib.suppress(aiomqtt.MqttError):
                    await self._client.publish(
                        topics.bridge_session_topic(instance), b"", qos=1, retain=True, timeout=5
                    )
        finally:
            self._adopting.discard(instance)

    async def _drain(self, client: aiomqtt.Client) -> None:
        messages = client.messages
        while True:
            try:
                async with asyncio.timeout(self.options.adopt_idle_s):
                    message = await anext(messages)
            except TimeoutError:
                break
            self.adopted_messages += 1
            await self._route(message, _Delivery(client, message.mid, message.qos))
        # Leave only when every event taken from this session is committed and acked.
        while self._unacked.get(client, 0) > 0:  # noqa: ASYNC110 (acks come from the event writer)
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ revocation

    async def kick(self, serial: str) -> None:
        """End ``serial``'s open session by taking over its client id, then disconnect."""
        options = self.options
        connect = _properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = 0
        client = aiomqtt.Client(
            options.host,
            options.port,
            identifier=serial,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            properties=connect,
            tls_context=options.tls_context,
            timeout=options.connect_timeout_s,
        )
        async with client:
            pass
        self.kicks += 1
        _LOGGER.info("Ended the MQTT session of revoked device %s", serial)

    async def _watch_crl(self, crl_file: Path) -> None:
        known = _revoked_numbers(crl_file)
        seen = _mtime(crl_file)
        while True:
            await asyncio.sleep(self.options.crl_poll_s)
            mtime = _mtime(crl_file)
            if mtime == seen:
                continue
            seen = mtime
            current = _revoked_numbers(crl_file)
            fresh, known = current - known, current
            if fresh:
                await self._kick_revoked(fresh)

    async def _kick_revoked(self, numbers: set[int]) -> None:
        if self._reloader is not None:
            # Reload first, so the kicked device cannot simply reconnect.
            try:
                await self._reloader.reload()
            except (ZanuoError, OSError) as err:
                _LOGGER.error("Broker CRL reload failed before kicking: %s", type(err).__name__)
        hexes = [format(number, "x") for number in numbers]
        async with self.services.db.session() as session:
            serials = (
                await session.scalars(
                    select(Device.serial).where(Device.certificate_serial.in_(hexes))
                )
            ).all()
        for serial in serials:
            try:
                await self.kick(serial)
            except (aiomqtt.MqttError, OSError) as err:
                _LOGGER.error("Could not end the session of %s: %s", serial, type(err).__name__)


def _counting_queue(metrics: Metrics) -> type[asyncio.Queue[aiomqtt.Message]]:
    """Return aiomqtt's incoming queue type, counting what it must refuse."""

    class CountingQueue(asyncio.Queue[aiomqtt.Message]):
        # Mosquitto 2.0 honours Receive Maximum only until a session resumes;
        # then it sends the whole backlog at once. What does not fit here is
        # not acknowledged, so the broker redelivers it after a reconnect.
        def put_nowait(self, item: aiomqtt.Message) -> None:
            try:
                super().put_nowait(item)
            except asyncio.QueueFull:
                metrics.mqtt_dropped.labels("overloaded").inc()
                raise

    return CountingQueue


def _properties(packet_type: int) -> Properties:
    # paho's Properties has no annotations; this is the one untyped call.
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _revoked_numbers(path: Path) -> set[int]:
    crl = read_crl(path)
    return set() if crl is None else {entry.serial_number for entry in crl}


__all__ = [
    "BridgeOptions",
    "BrokerReloader",
    "MqttBridge",
    "load_client_id",
    "new_client_id",
]
