"""The relay link between a hub and a bound BLE child (a lock), after pairing.

Besides the protocomm provisioning service (advertised only in pairing mode),
a code-less child serves one more GATT service, advertised once it is paired:

* ``uplink`` (read + indicate): the child indicates one :class:`UplinkFrame`
  (compact JSON) per message — an event, a command acknowledgement or a
  factory reset. Indications are confirmed by the hub's BLE stack, so the
  child sends the next frame only after the previous one arrived.
* ``downlink`` (write with response): the hub writes one
  :class:`~gateway.mqtt.payloads.CommandPayload` (compact JSON) per command.

Frames stay small (an unlock event is ~120 bytes); at most
:data:`MAX_FRAME_BYTES` so they fit one ATT PDU even at a modest MTU.
The payload models are the MQTT ones, so what the lock says is what the
bridge validates.

Security note: the virtual link has no LE Secure Connections bonding, so this
service trusts the link; on hardware the pairing step is also where the hub
and the lock bond, and both characteristics require an encrypted link.
"""

from __future__ import annotations

from typing import Final, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from gateway.mqtt.payloads import CommandAckPayload, CommandPayload, EventPayload, ResetPayload

LINK_SERVICE_UUID: Final = "6e7a0001-4c4b-4f9a-8b1e-7a616e756f31"
UPLINK_UUID: Final = "6e7a0002-4c4b-4f9a-8b1e-7a616e756f31"
DOWNLINK_UUID: Final = "6e7a0003-4c4b-4f9a-8b1e-7a616e756f31"
MAX_FRAME_BYTES: Final = 240


class LinkFrameError(ValueError):
    """A frame that does not decode or does not fit."""


class UplinkFrame(BaseModel):
    """One message from the child to the hub: exactly one of the fields is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: EventPayload | None = None
    ack: CommandAckPayload | None = None
    reset: ResetPayload | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if sum(part is not None for part in (self.event, self.ack, self.reset)) != 1:
            raise ValueError("an uplink frame carries exactly one message")
        return self


def encode_frame(frame: UplinkFrame | CommandPayload) -> bytes:
    """Serialize a frame to compact JSON, refusing one that would not fit a PDU."""
    data = frame.model_dump_json(exclude_none=True).encode()
    if len(data) > MAX_FRAME_BYTES:
        raise LinkFrameError(f"frame of {len(data)} bytes is over {MAX_FRAME_BYTES}")
    return data


def decode_uplink(data: bytes) -> UplinkFrame:
    """Parse a frame the child indicated, or raise :class:`LinkFrameError`."""
    try:
        return UplinkFrame.model_validate_json(data)
    except ValidationError:
        raise LinkFrameError("undecodable uplink frame") from None


def decode_downlink(data: bytes) -> CommandPayload:
    """Parse a command the hub wrote, or raise :class:`LinkFrameError`."""
    if len(data) > MAX_FRAME_BYTES:
        raise LinkFrameError("oversized downlink frame")
    try:
        return CommandPayload.model_validate_json(data)
    except ValidationError:
        raise LinkFrameError("undecodable downlink frame") from None


__all__ = [
    "DOWNLINK_UUID",
    "LINK_SERVICE_UUID",
    "MAX_FRAME_BYTES",
    "UPLINK_UUID",
    "LinkFrameError",
    "UplinkFrame",
    "decode_downlink",
    "decode_uplink",
    "encode_frame",
]
