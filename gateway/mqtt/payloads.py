"""Typed MQTT payloads (JSON): size-limited, unknown fields refused.

Inbound models are parsed with :func:`parse`, which enforces the per-kind size
limit before any JSON is decoded and raises :class:`PayloadError` with a stable
``reason`` (the ``zanuo_mqtt_dropped`` label) for anything that does not fit.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError

from gateway.mqtt.topics import Inbound
from provisioning.errors import ZanuoError

# Raw payload limits by kind; an event may carry a small screenshot.
MAX_SCREENSHOT_BYTES: Final = 48 * 1024
MAX_PAYLOAD_BYTES: Final = {
    Inbound.STATE: 1024,
    Inbound.BIND: 2048,
    Inbound.EVENT: 4 * MAX_SCREENSHOT_BYTES // 3 + 1024,
    Inbound.RESET: 512,
    Inbound.CMD_ACK: 512,
}

EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Word = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Base64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/_=-]*$", max_length=96 * 1024)]


class PayloadError(ZanuoError, ValueError):
    """A payload that the bridge drops; ``reason`` is the metric label."""

    status = 400
    code = "mqtt_payload_invalid"
    default_message = "the MQTT payload does not fit its schema"

    def __init__(self, reason: str) -> None:
        super().__init__(f"dropped: {reason}", reason=reason)
        self.reason = reason


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


# --------------------------------------------------------------------------- device → cloud


class StatePayload(_Wire):
    """A device's presence (retained; the LWT is ``{"online": false}``)."""

    online: bool
    firmware: ShortText | None = None
    network: Literal["wifi", "ble", "ethernet"] | None = None


class BindProofPayload(_Wire):
    """A code-less device's signature over its pairing token (base64)."""

    nonce: Base64
    signature: Base64

    def raw(self) -> tuple[bytes, bytes]:
        """Return the nonce and signature bytes or raise :class:`PayloadError`."""
        return decode_base64(self.nonce), decode_base64(self.signature)


class BindPayload(_Wire):
    """A device presenting its bind or pairing token."""

    token: Annotated[str, StringConstraints(min_length=8, max_length=128)]
    proof: BindProofPayload | None = None


class EventPayload(_Wire):
    """A device event; ``id`` makes redelivery idempotent."""

    id: EventId
    type: Word
    ts: AwareDatetime
    result: ShortText | None = None
    screenshot: Base64 | None = None

    def screenshot_bytes(self) -> bytes | None:
        """Return the decoded screenshot or raise :class:`PayloadError`."""
        if self.screenshot is None:
            return None
        data = decode_base64(self.screenshot)
        if len(data) > MAX_SCREENSHOT_BYTES:
            raise PayloadError("oversized")
        return data


class ResetPayload(_Wire):
    """A factory reset that happened on the device."""

    ts: AwareDatetime | None = None


class CommandAckPayload(_Wire):
    """A device's answer to a command."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    ok: bool
    error: Annotated[str, StringConstraints(max_length=64)] | None = None


INBOUND_MODELS: Final[dict[Inbound, type[_Wire]]] = {
    Inbound.STATE: StatePayload,
    Inbound.BIND: BindPayload,
    Inbound.EVENT: EventPayload,
    Inbound.RESET: ResetPayload,
    Inbound.CMD_ACK: CommandAckPayload,
}


# --------------------------------------------------------------------------- cloud → device


class BindResultPayload(_Wire):
    """The outcome of a device's bind confirmation."""

    status: Literal["bound", "rejected"]
    reason: str | None = None


class CommandPayload(_Wire):
    """A command to a device; secrets in ``args`` are sealed to the device key."""

    id: str
    name: Word
    args: dict[str, Any]


class BridgeStatePayload(_Wire):
    """A bridge instance's retained presence."""

    online: bool


class BridgeSessionPayload(_Wire):
    """The client id of a bridge instance's persistent session (bridges only)."""

    client_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]


# --------------------------------------------------------------------------- codec

M = TypeVar("M", bound=BaseModel)


def decode_base64(text: str) -> bytes:
    """Decode standard or URL-safe base64 (padding optional) or raise :class:`PayloadError`."""
    raw = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("schema") from None


def parse(kind: Inbound, payload: bytes | bytearray | str | int | float | None) -> _Wire:
    """Validate an inbound payload of ``kind`` or raise :class:`PayloadError`."""
    if not isinstance(payload, bytes | bytearray):
        raise PayloadError("malformed")
    if len(payload) > MAX_PAYLOAD_BYTES[kind]:
        raise PayloadError("oversized")
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PayloadError("malformed") from None
    if not isinstance(document, dict):
        raise PayloadError("schema")
    try:
        return INBOUND_MODELS[kind].model_validate(document)
    except ValidationError:
        raise PayloadError("schema") from None


def encode(model: BaseModel) -> bytes:
    """Serialize an outbound payload to compact JSON."""
    return model.model_dump_json(exclude_none=True).encode()


def event_occurred_at(event: EventPayload) -> dt.datetime:
    """Return the event time in UTC."""
    return event.ts.astimezone(dt.UTC)


__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_SCREENSHOT_BYTES",
    "BindPayload",
    "BindProofPayload",
    "BindResultPayload",
    "BridgeSessionPayload",
    "BridgeStatePayload",
    "CommandAckPayload",
    "CommandPayload",
    "EventPayload",
    "PayloadError",
    "ResetPayload",
    "StatePayload",
    "decode_base64",
    "encode",
    "event_occurred_at",
    "parse",
]
