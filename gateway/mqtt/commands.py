"""The command dispatcher: drains the ``commands`` outbox to online devices.

Outbox commands (``reset``, BLE pairing …) hold no secret, so they may wait in
the database until their device is online; they are then published QoS 1, not
retained, with an MQTT 5 message expiry, and marked ``sent``. The device's
``cmd/ack`` marks them ``acked`` or ``failed``. Queued commands older than the
outbox TTL become ``expired``.

Secret-bearing commands (the Wi-Fi change) never touch the outbox: they go
through :meth:`CommandDispatcher.send_now`, which publishes at once to an
online device or refuses, and remembers only the command id and name (in a
bounded map) to count the device's answer.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
import uuid
from typing import Final, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from gateway.mqtt import payloads
from provisioning.clock import Clock
from provisioning.domain.commands import BridgeUnavailable, DeviceCommand
from provisioning.errors import DeviceOffline, ZanuoError
from provisioning.metrics import Metrics
from provisioning.storage.devices import Command, Device
from provisioning.storage.engine import Database

_LOGGER = logging.getLogger(__name__)

OUTBOX_TTL: Final = dt.timedelta(days=7)
PENDING_SECRET_COMMANDS: Final = 1024


class CommandPublisher(Protocol):
    """Where the dispatcher publishes (the bridge's connected client)."""

    @property
    def connected(self) -> bool:
        """Tell whether a publish can go out now."""
        ...

    async def publish_command(
        self, serial: str, hub: str | None, payload: bytes, *, expiry_s: int
    ) -> None:
        """Publish a command payload QoS 1, not retained, expiring after ``expiry_s``."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class _Queued:
    id: uuid.UUID
    serial: str
    hub: str | None
    name: str


class CommandDispatcher:
    """Send queued commands to devices as they come online; track their answers."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        metrics: Metrics,
        publisher: CommandPublisher,
        poll_s: float = 5.0,
        expiry_s: int = 300,
        batch: int = 100,
    ) -> None:
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._publisher = publisher
        self._poll_s = poll_s
        self._expiry_s = expiry_s
        self._batch = batch
        self._wake = asyncio.Event()
        self._pending: collections.OrderedDict[str, str] = collections.OrderedDict()

    def wake(self) -> None:
        """Look at the outbox now (a device came online, a command was queued)."""
        self._wake.set()

    async def run(self) -> None:
        """Drain the outbox whenever woken or every ``poll_s`` seconds, until cancelled."""
        while True:
            try:
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if not self._publisher.connected:
                continue
            try:
                while await self.drain_once() == self._batch:
                    pass
            except (SQLAlchemyError, OSError) as err:
                _LOGGER.error("Command outbox drain failed: %s", type(err).__name__)

    async def drain_once(self) -> int:
        """Expire stale commands and send one batch to online devices; return how many sent."""
        now = self._clock.now()
        async with self._db.session() as session:
            expired = await session.execute(
                update(Command)
                .where(Command.state == "queued", Command.created_at < now - OUTBOX_TTL)
                .values(state="expired", finished_at=now)
            )
            await session.commit()
            if expired.rowcount:  # type: ignore[attr-defined]
                self._metrics.commands.labels("outbox", "expired").inc(expired.rowcount)  # type: ignore[attr-defined]
            rows = (
                await session.execute(
                    select(Command.id, Command.serial, Device.parent_serial, Command.name)
                    .join(Device, Device.serial == Command.serial)
                    .where(Command.state == "queued", Device.online.is_(True))
                    .order_by(Command.created_at)
                    .limit(self._batch)
                )
            ).all()
        sent = 0
        for row in rows:
            if await self._send_queued(_Queued(row[0], row[1], row[2], row[3])):
                sent += 1
        return sent

    async def _send_queued(self, queued: _Queued) -> bool:
        now = self._clock.now()
        async with self._db.session() as session:
            # Claim first: with several bridge instances only one sends it.
            claimed = await session.execute(
                update(Command)
                .where(Command.id == queued.id, Command.state == "queued")
                .values(state="sent", sent_at=now)
            )
            await session.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return False
            command = await session.get(Command, queued.id)
            args = dict(command.args) if command is not None else {}
        payload = payloads.encode(
            payloads.CommandPayload(id=str(queued.id), name=queued.name, args=args)
        )
        try:
            await self._publisher.publish_command(
                queued.serial, queued.hub, payload, expiry_s=self._expiry_s
            )
        except (BridgeUnavailable, OSError, ZanuoError) as err:
            _LOGGER.warning("Command %s to %s not sent: %s", queued.name, queued.serial, err)
            async with self._db.session() as session:
                await session.execute(
                    update(Command)
                    .where(Command.id == queued.id, Command.state == "sent")
                    .values(state="queued", sent_at=None)
                )
                await session.commit()
            return False
        self._metrics.commands.labels(queued.name, "sent").inc()
        return True

    async def send_now(self, command: DeviceCommand, *, expiry_s: int) -> None:
        """Publish a (secret-bearing) command to an online device at once; never store it."""
        async with self._db.session() as session:
            device = await session.get(Device, command.serial)
        if device is None or not device.online:
            self._metrics.commands.labels(command.name, "offline").inc()
            raise DeviceOffline(serial=command.serial)
        if not self._publisher.connected:
            raise BridgeUnavailable()
        payload = payloads.encode(
            payloads.CommandPayload(id=command.id, name=command.name, args=dict(command.args))
        )
        try:
            await self._publisher.publish_command(
                command.serial, device.parent_serial, payload, expiry_s=expiry_s
            )
        except OSError:
            raise BridgeUnavailable() from None
        del payload
        self._pending[command.id] = command.name
        while len(self._pending) > PENDING_SECRET_COMMANDS:
            self._pending.popitem(last=False)
        self._metrics.commands.labels(command.name, "sent").inc()

    async def acknowledge(self, serial: str, ack: payloads.CommandAckPayload) -> bool:
        """Record a device's ``cmd/ack``; return False when no such command was sent."""
        outcome = "acked" if ack.ok else "failed"
        name = self._pending.pop(ack.id, None)
        if name is not None:
            self._metrics.commands.labels(name, outcome).inc()
            return True
        try:
            command_id = uuid.UUID(ack.id)
        except ValueError:
            return False
        now = self._clock.now()
        async with self._db.session() as session:
            command = await session.get(Command, command_id)
            if (
                command is None
                or command.serial != serial
                or command.state not in ("sent", "queued")
            ):
                return False
            command.state = outcome
            command.error = None if ack.ok else (ack.error or "failed")
            command.finished_at = now
            name = command.name
            await session.commit()
        self._metrics.commands.labels(name, outcome).inc()
        return True


__all__ = ["OUTBOX_TTL", "CommandDispatcher", "CommandPublisher"]
