"""A device's MQTT session: what Zanuo firmware does once it has a network.

:class:`DeviceMqtt` is an async context manager that keeps one aiomqtt
connection (MQTT 5, mutual TLS, client id = serial, LWT ``{"online": false}``
retained on ``zn/v1/{serial}/state``) alive across broker restarts with
capped, jittered backoff. It publishes ``{"online": true, …}`` retained on
every connect and ``{"online": false}`` on a graceful exit.

Outgoing messages go through a bounded outbox (callers wait when it is
full) and each ``publish_*`` call returns once the broker acknowledged it
(QoS 1); a message in flight when the connection drops is sent again after
the reconnect, so events keep their idempotency id. Incoming ``cmd``
messages are handed, one at a time, to the ``on_command`` handler; its
returned :class:`~gateway.mqtt.payloads.CommandAckPayload` is published on
``cmd/ack`` (a handler that returns ``None`` acknowledges later itself).
Redelivered commands (same id) are acknowledged again, not run again.

A hub relays for BLE children: every method takes ``child=`` and then uses
``zn/v1/{hub}/sub/{child}/…``; :meth:`DeviceMqtt.add_child` subscribes to
the child's ``cmd`` and ``bind/result``. This class implements
``gateway.ble.agent.HubUplink``. Tokens are never logged.

Usage::

    async with DeviceMqtt(serial, host, port, flash.tls_context(), on_command=handle) as mqtt:
        await mqtt.wait_connected()
        result = await mqtt.confirm_binding(token)          # BindResultPayload
        await mqtt.publish_event(EventPayload(id=new_event_id(), type="motion", ts=now))
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Literal, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ValidationError

from gateway.mqtt import payloads, topics
from gateway.mqtt.payloads import (
    BindPayload,
    BindProofPayload,
    BindResultPayload,
    CommandAckPayload,
    CommandPayload,
    EventPayload,
    ResetPayload,
    StatePayload,
)

_LOGGER = logging.getLogger(__name__)

CommandHandler = Callable[[CommandPayload, str | None], Awaitable[CommandAckPayload | None]]

OFFLINE: Final = payloads.encode(StatePayload(online=False))
OUTBOX_SIZE: Final = 64
INBOX_SIZE: Final = 32
SEEN_COMMANDS: Final = 64


@dataclasses.dataclass(frozen=True, slots=True)
class SessionOptions:
    """Timeouts and backoff of a device session (defaults suit a real device)."""

    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    publish_timeout_s: float = 10.0
    session_expiry_s: int = 300
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    goodbye_timeout_s: float = 2.0


def new_event_id() -> str:
    """Return a fresh idempotency id for an event."""
    return uuid.uuid4().hex


@dataclasses.dataclass(slots=True)
class _Publish:
    topic: str
    payload: bytes = dataclasses.field(repr=False)
    retain: bool
    done: asyncio.Future[None]


class DeviceMqtt:
    """One device's MQTT session; reconnects by itself until the ``async with`` block ends."""

    def __init__(
        self,
        serial: str,
        host: str,
        port: int,
        tls_context: ssl.SSLContext,
        *,
        firmware: str | None = None,
        network: Literal["wifi", "ble", "ethernet"] | None = "wifi",
        on_command: CommandHandler | None = None,
        options: SessionOptions | None = None,
    ) -> None:
        self.serial = serial
        self.host = host
        self.port = port
        self._tls_context = tls_context
        self._state = StatePayload(online=True, firmware=firmware, network=network)
        self._on_command = on_command
        self.options = options or SessionOptions()
        self._outbox: asyncio.Queue[_Publish] = asyncio.Queue(OUTBOX_SIZE)
        self._inflight: _Publish | None = None
        self._inbox: asyncio.Queue[tuple[CommandPayload, str | None]] = asyncio.Queue(INBOX_SIZE)
        self._seen: collections.OrderedDict[tuple[str | None, str], CommandAckPayload | None] = (
            collections.OrderedDict()
        )
        self._children: set[str] = set()
        self._routes: dict[str, tuple[Literal["cmd", "bind_result"], str | None]] = {}
        self._bind_waiters: dict[str | None, asyncio.Future[BindResultPayload]] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.connections = 0
        self._closing = False
        self._add_routes(None)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        self._tasks = [
            group.create_task(self._connection_loop(), name=f"mqtt-{self.serial}-conn"),
            group.create_task(self._command_worker(), name=f"mqtt-{self.serial}-cmd"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        await self._say_goodbye()
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await group.__aexit__(None, None, None)
        self._tasks = []
        for waiter in self._bind_waiters.values():
            waiter.cancel()

    async def _say_goodbye(self) -> None:
        """Flush the outbox and publish ``{"online": false}`` so the LWT is not needed."""
        if not self._connected.is_set():
            return
        try:
            async with asyncio.timeout(self.options.goodbye_timeout_s):
                await self._enqueue(topics.state_topic(self.serial), OFFLINE, retain=True)
        except (TimeoutError, aiomqtt.MqttError):
            _LOGGER.debug("%s: offline state not published before disconnect", self.serial)

    def _raise_if_closing(self) -> None:
        # A flag, not Task.cancelling(): Python 3.11's TaskGroup can leave that count raised.
        if self._closing:
            raise asyncio.CancelledError

    @property
    def connected(self) -> bool:
        """Tell whether the session is connected right now."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until connected (bound the wait with ``asyncio.timeout``)."""
        await self._connected.wait()

    # ------------------------------------------------------------------ topics

    def _add_routes(self, child: str | None) -> None:
        hub = None if child is None else self.serial
        serial = self.serial if child is None else child
        self._routes[topics.device_topic(serial, topics.Outbound.CMD, hub=hub)] = ("cmd", child)
        self._routes[topics.device_topic(serial, topics.Outbound.BIND_RESULT, hub=hub)] = (
            "bind_result",
            child,
        )

    def _topic(self, kind: topics.Inbound, child: str | None) -> str:
        if child is None:
            return topics.device_topic(self.serial, kind)
        return topics.device_topic(child, kind, hub=self.serial)

    async def add_child(self, serial: str) -> None:
        """Listen to a BLE child's ``cmd`` and ``bind/result`` (hubs only)."""
        if serial in self._children:
            return
        self._children.add(serial)
        self._add_routes(serial)
        client = self._client
        if client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):  # resubscribed on reconnect anyway
                await client.subscribe(
                    [(t, 1) for t, (_, c) in self._routes.items() if c == serial],
                    timeout=self.options.publish_timeout_s,
                )

    async def remove_child(self, serial: str) -> None:
        """Stop listening for a BLE child."""
        self._children.discard(serial)
        gone = [t for t, (_, c) in self._routes.items() if c == serial]
        for topic in gone:
            del self._routes[topic]
        client = self._client
        if gone and client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(gone, timeout=self.options.publish_timeout_s)

    # ------------------------------------------------------------------ publishing

    async def _enqueue(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._outbox.put(_Publish(topic, payload, retain, done))
        await done

    async def _publish_model(
        self, kind: topics.Inbound, model: BaseModel, child: str | None, *, retain: bool = False
    ) -> None:
        await self._enqueue(self._topic(kind, child), payloads.encode(model), retain=retain)

    async def publish_state(self, state: StatePayload, *, child: str | None = None) -> None:
        """Publish a retained state (the device's own is sent on every connect)."""
        await self._publish_model(topics.Inbound.STATE, state, child, retain=True)

    async def publish_event(self, event: EventPayload, *, child: str | None = None) -> None:
        """Publish an event; returns once the broker has it."""
        await self._publish_model(topics.Inbound.EVENT, event, child)

    async def publish_reset(self, reset: ResetPayload, *, child: str | None = None) -> None:
        """Tell the cloud a factory reset happened."""
        await self._publish_model(topics.Inbound.RESET, reset, child)

    async def publish_ack(self, ack: CommandAckPayload, *, child: str | None = None) -> None:
        """Publish a command acknowledgement."""
        await self._publish_model(topics.Inbound.CMD_ACK, ack, child)

    async def confirm_binding(
        self, token: str, *, proof: BindProofPayload | None = None, child: str | None = None
    ) -> BindResultPayload:
        """Publish the bind token (and a child's proof); return the ``bind/result`` (bound it)."""
        if child is not None and child not in self._children:
            await self.add_child(child)
        previous = self._bind_waiters.get(child)
        if previous is not None and not previous.done():
            previous.cancel()
        waiter: asyncio.Future[BindResultPayload] = asyncio.get_running_loop().create_future()
        self._bind_waiters[child] = waiter
        try:
            await self._publish_model(
                topics.Inbound.BIND, BindPayload(token=token, proof=proof), child
            )
            return await waiter
        finally:
            if self._bind_waiters.get(child) is waiter:
                del self._bind_waiters[child]

    # ------------------------------------------------------------------ connection

    def _make_client(self) -> aiomqtt.Client:
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho is untyped
        connect.SessionExpiryInterval = self.options.session_expiry_s
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.serial,  # the bridge relies on client id = serial
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self._tls_context,
            keepalive=self.options.keepalive_s,
            timeout=self.options.connect_timeout_s,
            properties=connect,
            will=aiomqtt.Will(topics.state_topic(self.serial), OFFLINE, qos=1, retain=True),
            max_queued_incoming_messages=INBOX_SIZE,
        )

    async def _connection_loop(self) -> None:
        backoff = self.options.backoff_initial_s
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._raise_if_closing()  # the connect may have swallowed our cancel
                    self._client = client
                    self.connections += 1
                    await client.subscribe([(topic, 1) for topic in self._routes])
                    await client.publish(
                        topics.state_topic(self.serial),
                        payloads.encode(self._state),
                        qos=1,
                        retain=True,
                        timeout=self.options.publish_timeout_s,
                    )
                    self._connected.set()
                    backoff = self.options.backoff_initial_s
                    _LOGGER.info("%s: connected to %s:%s", self.serial, self.host, self.port)
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._sender(client), name=f"mqtt-{self.serial}-send")
                        group.create_task(self._receiver(client), name=f"mqtt-{self.serial}-recv")
            except* (aiomqtt.MqttError, OSError) as errors:
                _LOGGER.info(
                    "%s: MQTT connection lost: %s",
                    self.serial,
                    ", ".join(type(e).__name__ for e in errors.exceptions),
                )
            finally:
                self._connected.clear()
                self._client = None
            # Closing while the disconnect failed: its error replaced the cancellation,
            # which must win or this loop would reconnect forever.
            self._raise_if_closing()
            # Full jitter: a fleet whose broker restarted does not come back in step.
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.options.backoff_max_s)

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            if self._inflight is None:
                self._inflight = await self._outbox.get()
            item = self._inflight
            if item.done.cancelled():  # the caller gave up; nothing to deliver
                self._inflight = None
                continue
            # On MqttError the item stays in flight and goes out again after the reconnect.
            await client.publish(
                item.topic,
                item.payload,
                qos=1,
                retain=item.retain,
                timeout=self.options.publish_timeout_s,
            )
            self._inflight = None
            if not item.done.done():
                item.done.set_result(None)

    async def _receiver(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            route = self._routes.get(message.topic.value)
            if route is None or not isinstance(message.payload, bytes | bytearray):
                continue
            kind, child = route
            try:
                if kind == "bind_result":
                    result = BindResultPayload.model_validate_json(message.payload)
                    waiter = self._bind_waiters.get(child)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(result)
                else:
                    command = CommandPayload.model_validate_json(message.payload)
                    await self._inbox.put((command, child))  # push back when the device is busy
            except ValidationError:
                _LOGGER.warning("%s: malformed %s message dropped", self.serial, kind)

    # ------------------------------------------------------------------ commands

    async def _command_worker(self) -> None:
        while True:
            command, child = await self._inbox.get()
            key = (child, command.id)
            if key in self._seen:
                previous = self._seen[key]
                if previous is not None:
                    await self.publish_ack(previous, child=child)
                continue
            ack = await self._run_command(command, child)
            self._seen[key] = ack
            while len(self._seen) > SEEN_COMMANDS:
                self._seen.popitem(last=False)
            if ack is not None:
                await self.publish_ack(ack, child=child)

    async def _run_command(
        self, command: CommandPayload, child: str | None
    ) -> CommandAckPayload | None:
        if self._on_command is None:
            return CommandAckPayload(id=command.id, ok=False, error="unsupported")
        _LOGGER.info("%s: command %s (child %s)", self.serial, command.name, child or "-")
        try:
            return await self._on_command(command, child)
        except Exception:
            # A failing handler must not take the session down; the cloud hears about it.
            _LOGGER.exception("%s: command %s failed", self.serial, command.name)
            return CommandAckPayload(id=command.id, ok=False, error="device_error")


__all__ = [
    "CommandHandler",
    "DeviceMqtt",
    "SessionOptions",
    "new_event_id",
]
