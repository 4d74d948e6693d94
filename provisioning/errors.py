"""The one exception root of the service and its stable error codes.

Every error a client can see is a :class:`ZanuoError` subclass that carries an
HTTP status and a stable ``code``. One middleware turns them into the JSON
error shape ``{"error": {"code", "message", "details"}}``; the MQTT bridge uses
the same codes in ``bind/result`` and ``cmd/ack`` payloads.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ZanuoError(Exception):
    """Root of every error the service raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON error shape."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationFailed(ZanuoError):
    status = 422
    code = "validation_error"
    default_message = "the request is not valid"


class LocationNotAccepted(ZanuoError):
    status = 422
    code = "location_not_accepted"
    default_message = "location data is never accepted by this service"


class BadRequest(ZanuoError):
    status = 400
    code = "bad_request"
    default_message = "the request could not be read"


class PayloadTooLarge(ZanuoError):
    status = 413
    code = "payload_too_large"
    default_message = "the request body is too large"


class UnsupportedMediaType(ZanuoError):
    status = 415
    code = "unsupported_media_type"
    default_message = "send application/json"


class Unauthenticated(ZanuoError):
    status = 401
    code = "unauthenticated"
    default_message = "sign in first"


class InvalidCredentials(ZanuoError):
    status = 401
    code = "invalid_credentials"
    default_message = "wrong account or password"


class Forbidden(ZanuoError):
    status = 403
    code = "forbidden"
    default_message = "not allowed"


class NotOwner(ZanuoError):
    status = 403
    code = "not_owner"
    default_message = "only the device owner may do this"


class ConsentRequired(ZanuoError):
    status = 403
    code = "consent_required"
    default_message = "this needs your consent first"


class BasicMode(ZanuoError):
    status = 403
    code = "basic_mode"
    default_message = "the account is in basic mode"


class VerificationCodeInvalid(ZanuoError):
    status = 403
    code = "verification_code_invalid"
    default_message = "the verification code is wrong"


class NotFound(ZanuoError):
    status = 404
    code = "not_found"
    default_message = "not found"


class DeviceNotFound(NotFound):
    code = "device_not_found"
    default_message = "no such device"


class MethodNotAllowed(ZanuoError):
    status = 405
    code = "method_not_allowed"
    default_message = "method not allowed"


class Conflict(ZanuoError):
    status = 409
    code = "conflict"
    default_message = "conflict"


class AccountExists(Conflict):
    code = "account_exists"
    default_message = "an account with this email or phone exists"


class DeviceBoundToOther(Conflict):
    code = "device_bound_to_other"
    default_message = "the device is bound to another account"


class DeviceAlreadyYours(Conflict):
    code = "device_already_yours"
    default_message = "the device is already bound to your account"


class TokenUsed(Conflict):
    code = "token_used"
    default_message = "the token was already used"


class CodeUsed(Conflict):
    code = "code_used"
    default_message = "the code was already used"


class TokenExpired(ZanuoError):
    status = 410
    code = "token_expired"
    default_message = "the token has expired"


class CodeExpired(ZanuoError):
    status = 410
    code = "code_expired"
    default_message = "the code has expired"


class TooManyAttempts(ZanuoError):
    status = 429
    code = "too_many_attempts"
    default_message = "too many attempts; try again later"

    def __init__(self, retry_after: int, message: str | None = None, **details: Any) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, retry_after=self.retry_after, **details)


class ServiceUnavailable(ZanuoError):
    status = 503
    code = "service_unavailable"
    default_message = "a dependency is not available"


class ConfigError(ZanuoError):
    """A configuration value is missing or wrong; the message names the key."""

    code = "config_error"
    default_message = "bad configuration"


class DeviceRevoked(Conflict):
    code = "device_revoked"
    default_message = "the device's credentials are revoked; it cannot be bound"


class CodeNotSupported(Conflict):
    code = "code_not_supported"
    default_message = "this device has no label code; bind it with a pairing token"


class TokenInvalid(ZanuoError):
    status = 404
    code = "token_invalid"
    default_message = "no such token"


class DeviceOffline(Conflict):
    code = "device_offline"
    default_message = "the device is offline"
