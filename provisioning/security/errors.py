"""Errors raised by the device credential code (CA, CRL, sealing, label codes)."""

from __future__ import annotations

from typing import ClassVar

from provisioning.errors import ZanuoError


class SecurityError(ZanuoError):
    """Root of every error from :mod:`provisioning.security`."""

    code: ClassVar[str] = "security_error"
    default_message: ClassVar[str] = "a credential operation failed"


class CaNotInitialized(SecurityError):
    """The device CA files are missing; run ``zanuo ca init`` first."""

    status = 503
    code = "ca_not_initialized"
    default_message = "the device CA is not initialised; run `zanuo ca init`"


class CaAlreadyExists(SecurityError):
    """``init_ca`` found an existing CA and refuses to overwrite it."""

    status = 409
    code = "ca_already_exists"
    default_message = "a device CA already exists here; refusing to overwrite it"


class CaUnreadable(SecurityError):
    """The CA files exist but cannot be used (wrong passphrase, corrupt, mismatched)."""

    code = "ca_unreadable"
    default_message = "the device CA cannot be loaded"


class CsrInvalid(SecurityError):
    """A certificate signing request is malformed, badly signed or not acceptable."""

    status = 422
    code = "csr_invalid"
    default_message = "the certificate signing request is not acceptable"


class SerialInvalid(SecurityError):
    """A device serial number does not follow the serial rule."""

    status = 422
    code = "serial_invalid"
    default_message = "the serial number is not valid"


class CertificateInvalid(SecurityError):
    """A certificate does not fit the purpose it is used for."""

    status = 422
    code = "certificate_invalid"
    default_message = "the certificate is not valid for this use"


class CrlInvalid(SecurityError):
    """A CRL failed validation and was not installed."""

    code = "crl_invalid"
    default_message = "the certificate revocation list is not valid"


class SealError(SecurityError):
    """A sealed message could not be made or opened (the reason is kept vague on purpose)."""

    status = 422
    code = "seal_error"
    default_message = "the sealed message cannot be opened"


class LabelCodeInvalid(SecurityError):
    """A label verification code is not six letters A-Z."""

    status = 422
    code = "label_code_invalid"
    default_message = "a label verification code is six letters A-Z"


class LabelPayloadInvalid(SecurityError):
    """A scanned label payload is malformed; the message names the part."""

    status = 422
    code = "label_payload_invalid"
    default_message = "the label payload is malformed"
