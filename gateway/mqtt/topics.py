"""The MQTT topic scheme: the only module that formats or parses topic strings.

Device topics (``docs/DESIGN.md``, MQTT table)::

    zn/v1/{serial}/state            device → cloud, retained, also the device's LWT
    zn/v1/{serial}/bind             device → cloud
    zn/v1/{serial}/bind/result      cloud → device
    zn/v1/{serial}/event            device → cloud
    zn/v1/{serial}/reset            device → cloud
    zn/v1/{serial}/cmd              cloud → device, never retained
    zn/v1/{serial}/cmd/ack          device → cloud
    zn/v1/{hub}/sub/{child}/...     a BLE child's traffic relayed by its hub
    zn/bridge/{instance}/state      the bridge's presence, retained, with an LWT

The broker's ACL confines a device to ``zn/v1/{its serial}/#``, so the first
serial in a device topic is authenticated by the broker; a child serial behind
``sub/`` is only a claim by the hub, which the bridge checks itself.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Final

from provisioning.errors import ZanuoError
from provisioning.security.codes import SERIAL_PATTERN

PREFIX: Final = "zn/v1"
BRIDGE_PREFIX: Final = "zn/bridge"
_INSTANCE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_GROUP: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class TopicError(ZanuoError, ValueError):
    """A topic that is not part of the scheme (or a serial that cannot be in one)."""

    status = 400
    code = "mqtt_topic_invalid"
    default_message = "not a topic of the zn/v1 scheme"


class Inbound(enum.StrEnum):
    """What a device sends the cloud; the value is the topic suffix."""

    STATE = "state"
    BIND = "bind"
    EVENT = "event"
    RESET = "reset"
    CMD_ACK = "cmd/ack"


class Outbound(enum.StrEnum):
    """What the cloud sends a device; the value is the topic suffix."""

    BIND_RESULT = "bind/result"
    CMD = "cmd"


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic: whose message it is and, when relayed, through which hub."""

    serial: str
    kind: Inbound
    hub: str | None = None

    @property
    def relayed(self) -> bool:
        """Tell whether a hub relayed this message for a BLE child."""
        return self.hub is not None


def _check_serial(serial: str) -> str:
    if not SERIAL_PATTERN.fullmatch(serial):
        raise TopicError("not a device serial")
    return serial


def _base(serial: str, hub: str | None) -> str:
    if hub is None:
        return f"{PREFIX}/{_check_serial(serial)}"
    return f"{PREFIX}/{_check_serial(hub)}/sub/{_check_serial(serial)}"


def device_topic(serial: str, kind: Inbound | Outbound, *, hub: str | None = None) -> str:
    """Return the topic of ``kind`` for a device (through ``hub`` for a BLE child)."""
    return f"{_base(serial, hub)}/{kind.value}"


def state_topic(serial: str) -> str:
    """Return a device's retained state topic (also its LWT topic)."""
    return device_topic(serial, Inbound.STATE)


def bridge_state_topic(instance: str) -> str:
    """Return the retained presence topic of one bridge instance."""
    if not _INSTANCE.fullmatch(instance):
        raise TopicError("a bridge instance name is 1-64 of A-Z a-z 0-9 _ -")
    return f"{BRIDGE_PREFIX}/{instance}/state"


def bridge_session_topic(instance: str) -> str:
    """Return the retained topic where an instance tells its peers its session (client id).

    Only bridge identities can read ``zn/bridge/#`` (the ACL gives devices
    nothing outside ``zn/v1/{serial}/#``), so the id stays among bridges.
    """
    return bridge_state_topic(instance).removesuffix("/state") + "/session"


def bridge_filters() -> list[str]:
    """Return the (never shared) filters for every instance's presence and session."""
    return [f"{BRIDGE_PREFIX}/+/state", f"{BRIDGE_PREFIX}/+/session"]


def parse_bridge_topic(topic: str) -> tuple[str, str]:
    """Return (instance, ``state`` | ``session``) of a bridge topic or raise TopicError."""
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != BRIDGE_PREFIX:
        raise TopicError("not a bridge topic")
    if not _INSTANCE.fullmatch(parts[2]) or parts[3] not in ("state", "session"):
        raise TopicError("not a bridge topic")
    return parts[2], parts[3]


def is_bridge_topic(topic: str) -> bool:
    """Tell whether ``topic`` is under ``zn/bridge/``."""
    return topic.startswith(BRIDGE_PREFIX + "/")


_SUFFIXES: Final = {kind.value: kind for kind in Inbound}


def parse_device_topic(topic: str) -> DeviceTopic:
    """Parse an inbound device topic or raise :class:`TopicError`."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "zn" or parts[1] != "v1":
        raise TopicError("not a zn/v1 topic")
    serial, rest = parts[2], parts[3:]
    hub: str | None = None
    if rest[0] == "sub":
        if len(rest) < 3:
            raise TopicError("a relayed topic needs a child serial and a kind")
        hub, serial, rest = serial, rest[1], rest[2:]
        _check_serial(hub)
        if hub == serial:
            raise TopicError("a hub cannot relay for itself")
    kind = _SUFFIXES.get("/".join(rest))
    if kind is None:
        raise TopicError("not an inbound message kind")
    return DeviceTopic(serial=_check_serial(serial), kind=kind, hub=hub)


def inbound_filters(kinds: tuple[Inbound, ...] = tuple(Inbound)) -> list[str]:
    """Return the filters for everything devices and hubs send the cloud."""
    direct = [f"{PREFIX}/+/{kind.value}" for kind in kinds]
    relayed = [f"{PREFIX}/+/sub/+/{kind.value}" for kind in kinds]
    return direct + relayed


def shared(group: str, topic_filter: str) -> str:
    """Return ``topic_filter`` as a shared subscription of ``group`` (``$share/…``)."""
    if not _GROUP.fullmatch(group):
        raise TopicError("a share group name is 1-64 of A-Z a-z 0-9 _ -")
    return f"$share/{group}/{topic_filter}"


def subscriptions(group: str | None) -> list[str]:
    """Return the bridge's subscriptions, shared by ``group`` when several instances run."""
    filters = inbound_filters()
    return filters if group is None else [shared(group, f) for f in filters]


__all__ = [
    "DeviceTopic",
    "Inbound",
    "Outbound",
    "TopicError",
    "bridge_filters",
    "bridge_session_topic",
    "bridge_state_topic",
    "device_topic",
    "inbound_filters",
    "is_bridge_topic",
    "parse_bridge_topic",
    "parse_device_topic",
    "shared",
    "state_topic",
    "subscriptions",
]
