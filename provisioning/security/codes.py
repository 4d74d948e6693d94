"""Label verification codes, the serial rule and the label payload the app scans.

The label of a device carries its serial number, its model and, for devices
that have one, a six-letter verification code. The cloud stores the code only
as ``HMAC-SHA256(pepper, encode(serial, code))`` (see :func:`label_code_digest`);
the pepper lives in the secrets config, never in the database.

The label payload (the text inside the QR code) is defined here once::

    ZN1:<serial>:<code or empty>:<model>

e.g. ``ZN1:ZC1-0000042:QWERTY:CAM-100`` or ``ZN1:ZL1-0000007::LOCK-2`` for a
device without a code. See ``docs/DEVICE_IDENTITY.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import string
from typing import Final

from provisioning.errors import ConfigError
from provisioning.security.errors import LabelCodeInvalid, LabelPayloadInvalid, SerialInvalid

LABEL_CODE_LENGTH: Final = 6
LABEL_CODE_ALPHABET: Final = string.ascii_uppercase
MIN_PEPPER_BYTES: Final = 16

# Serials go into certificate CNs, MQTT usernames (ACL ``%u``), topics and the
# colon-separated label payload, so they exclude '/', '+', '#', ':' and
# whitespace. Upper case only: this also keeps every serial distinct from the
# reserved lower-case broker identity ``bridge``.
SERIAL_PATTERN: Final = re.compile(r"[A-Z0-9][A-Z0-9-]{3,31}")
MODEL_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_CODE_PATTERN: Final = re.compile(r"[A-Z]{6}")

LABEL_PAYLOAD_PREFIX: Final = "ZN1"
MAX_LABEL_PAYLOAD_CHARS: Final = 128
_DIGEST_CONTEXT: Final = b"zanuo/label-code/v1"


def validate_serial(serial: str) -> str:
    """Return ``serial`` unchanged or raise :class:`SerialInvalid`."""
    if not isinstance(serial, str) or not SERIAL_PATTERN.fullmatch(serial):
        raise SerialInvalid(
            "a serial is 4-32 characters A-Z, 0-9 and '-', starting with a letter or digit",
            serial=serial if isinstance(serial, str) else repr(serial),
        )
    return serial


def validate_model(model: str) -> str:
    """Return ``model`` unchanged or raise :class:`LabelPayloadInvalid`."""
    if not isinstance(model, str) or not MODEL_PATTERN.fullmatch(model):
        raise LabelPayloadInvalid(
            "a model is 1-32 characters A-Z, a-z, 0-9, '.', '_' and '-'", field="model"
        )
    return model


def validate_label_code(code: str) -> str:
    """Return ``code`` unchanged if it is exactly six letters A-Z, else raise."""
    if not isinstance(code, str) or not _CODE_PATTERN.fullmatch(code):
        # The message never echoes the code: it is a secret, even when malformed.
        raise LabelCodeInvalid()
    return code


def generate_label_code() -> str:
    """Return a fresh random six-letter code (A-Z) from the OS CSPRNG."""
    return "".join(secrets.choice(LABEL_CODE_ALPHABET) for _ in range(LABEL_CODE_LENGTH))


def _length_prefixed(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def label_code_digest(pepper: bytes, serial: str, code: str) -> bytes:
    """Return the 32-byte HMAC-SHA256 of (serial, code) under ``pepper`` (what is stored)."""
    _check_pepper(pepper)
    validate_serial(serial)
    validate_label_code(code)
    # Each field is length-prefixed after a context label, so no two
    # (serial, code) pairs encode to the same message.
    message = _DIGEST_CONTEXT + _length_prefixed(serial) + _length_prefixed(code)
    return hmac.new(pepper, message, hashlib.sha256).digest()


def verify_label_code(pepper: bytes, serial: str, entered: str, stored_digest: bytes) -> bool:
    """Return True when ``entered`` (case and surrounding spaces ignored) matches the digest."""
    _check_pepper(pepper)
    candidate = entered.strip().upper() if isinstance(entered, str) else ""
    if not _CODE_PATTERN.fullmatch(candidate) or not SERIAL_PATTERN.fullmatch(serial):
        # Still spend one HMAC so a malformed entry is not measurably faster.
        candidate = "A" * LABEL_CODE_LENGTH
        hmac.compare_digest(label_code_digest(pepper, "XXXX", candidate), stored_digest)
        return False
    return hmac.compare_digest(label_code_digest(pepper, serial, candidate), stored_digest)


def _check_pepper(pepper: bytes) -> None:
    if not isinstance(pepper, bytes) or len(pepper) < MIN_PEPPER_BYTES:
        raise ConfigError(
            f"the label-code pepper must be at least {MIN_PEPPER_BYTES} random bytes",
            key="secrets.label_code_pepper",
        )


@dataclasses.dataclass(frozen=True, slots=True)
class LabelPayload:
    """What the label's QR code says: serial, optional verification code, model."""

    serial: str
    code: str | None = dataclasses.field(repr=False)
    model: str

    def __post_init__(self) -> None:
        validate_serial(self.serial)
        if self.code is not None:
            validate_label_code(self.code)
        validate_model(self.model)

    def format(self) -> str:
        """Return the QR text ``ZN1:<serial>:<code or empty>:<model>``."""
        return format_label_payload(self.serial, self.code, self.model)


def format_label_payload(serial: str, code: str | None, model: str) -> str:
    """Return the QR text for a label, validating every part."""
    validate_serial(serial)
    if code is not None:
        validate_label_code(code)
    validate_model(model)
    return f"{LABEL_PAYLOAD_PREFIX}:{serial}:{code or ''}:{model}"


def parse_label_payload(text: str) -> LabelPayload:
    """Parse scanned QR text into a :class:`LabelPayload`, naming the bad part on error."""
    if not isinstance(text, str):
        raise LabelPayloadInvalid("the label payload must be text", field="payload")
    if len(text) > MAX_LABEL_PAYLOAD_CHARS:
        raise LabelPayloadInvalid(
            f"the label payload is longer than {MAX_LABEL_PAYLOAD_CHARS} characters",
            field="payload",
        )
    parts = text.split(":")
    if parts[0] != LABEL_PAYLOAD_PREFIX:
        raise LabelPayloadInvalid(
            f"the label payload must start with '{LABEL_PAYLOAD_PREFIX}:'", field="prefix"
        )
    if len(parts) != 4:
        raise LabelPayloadInvalid(
            "the label payload has four ':'-separated parts: ZN1:<serial>:<code>:<model>",
            field="payload",
        )
    _, serial, code, model = parts
    if not SERIAL_PATTERN.fullmatch(serial):
        raise LabelPayloadInvalid("the serial part is not a valid serial", field="serial")
    if code and not _CODE_PATTERN.fullmatch(code):
        raise LabelPayloadInvalid("the code part must be empty or six letters A-Z", field="code")
    if not MODEL_PATTERN.fullmatch(model):
        raise LabelPayloadInvalid("the model part is not a valid model", field="model")
    return LabelPayload(serial=serial, code=code or None, model=model)
