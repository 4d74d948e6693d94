"""Certificate revocation lists for the broker's ``crlfile``.

Measured Mosquitto behaviour drives the shape of this module (see
``MQTT.md``): an unparseable CRL at ``SIGHUP`` makes the broker *fail open*, a
CRL past its ``nextUpdate`` makes it refuse *every* client, and a new CRL is
only taken when its ``lastUpdate`` is newer. So :func:`write_crl` validates the
encoded CRL (parse back, CA signature, issuer, ``nextUpdate`` in the future,
``lastUpdate`` after the installed one) before it atomically replaces the file,
and :func:`crl_needs_reissue` tells the caller when to write the next one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.clock import Clock
from provisioning.security.ca import CertificateAuthority, write_file_atomically
from provisioning.security.errors import CrlInvalid

_LOGGER = logging.getLogger(__name__)

DEFAULT_CRL_VALIDITY: Final = dt.timedelta(days=7)
# Reissue when less than this is left before nextUpdate: several days of slack
# for an outage of whatever runs the reissue.
DEFAULT_REISSUE_MARGIN: Final = dt.timedelta(days=4)
_ONE_SECOND: Final = dt.timedelta(seconds=1)
# lastUpdate is backdated by this much. OpenSSL treats a CRL whose lastUpdate
# is in the future as not yet valid, yet every new CRL must carry a strictly
# newer lastUpdate than the one the broker holds; starting in the past leaves
# room for many CRLs within one second without ever dating one in the future.
LAST_UPDATE_BACKDATE: Final = dt.timedelta(minutes=5)

REASONS: Final[Mapping[str, x509.ReasonFlags]] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "certificate_hold": x509.ReasonFlags.certificate_hold,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Revocation:
    """When and why one certificate was revoked."""

    revoked_at: dt.datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


@dataclasses.dataclass(frozen=True, slots=True)
class CrlInfo:
    """Public facts about an installed CRL."""

    path: Path
    number: int
    last_update: dt.datetime
    next_update: dt.datetime
    revoked_count: int


def parse_reason(name: str) -> x509.ReasonFlags:
    """Map a CLI reason name (e.g. ``key_compromise``) to its X.509 reason flag."""
    try:
        return REASONS[name.strip().lower().replace("-", "_")]
    except KeyError:
        raise CrlInvalid(
            f"unknown revocation reason; use one of {', '.join(REASONS)}", reason=name
        ) from None


def _whole_seconds(when: dt.datetime) -> dt.datetime:
    # X.509 times have one-second resolution; compare what will be encoded.
    return when.astimezone(dt.UTC).replace(microsecond=0)


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def read_crl(path: Path) -> x509.CertificateRevocationList | None:
    """Return the CRL at ``path``, or None when the file is missing or unparseable."""
    try:
        return x509.load_pem_x509_crl(Path(path).read_bytes())
    except (OSError, ValueError):
        return None


def build_crl(
    ca: CertificateAuthority,
    revoked: Mapping[int, Revocation],
    *,
    last_update: dt.datetime,
    next_update: dt.datetime,
    number: int,
) -> x509.CertificateRevocationList:
    """Sign a CRL listing ``revoked`` (certificate serial number → revocation)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(_whole_seconds(last_update))
        .next_update(_whole_seconds(next_update))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False
        )
    )
    for serial_number, revocation in sorted(revoked.items()):
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial_number)
            .revocation_date(_whole_seconds(revocation.revoked_at))
        )
        if revocation.reason is not x509.ReasonFlags.unspecified:
            # RFC 5280 5.3.1: omit the extension rather than say "unspecified".
            entry = entry.add_extension(x509.CRLReason(revocation.reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.private_key, hashes.SHA256())


def validate_crl(
    data: bytes,
    ca_certificate: x509.Certificate,
    clock: Clock,
    *,
    newer_than: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """Parse and check a PEM CRL as the broker will use it; raise :class:`CrlInvalid`."""
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError as err:
        raise CrlInvalid("the CRL is not a PEM certificate revocation list") from err
    ca_key = ca_certificate.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePublicKey):
        raise CrlInvalid("the CA certificate does not hold an EC key")
    if crl.issuer != ca_certificate.subject or not crl.is_signature_valid(ca_key):
        raise CrlInvalid("the CRL is not signed by the device CA")
    next_update = crl.next_update_utc
    now = clock.now()
    if next_update is None or next_update <= now:
        raise CrlInvalid(
            "the CRL's nextUpdate is not in the future; the broker would refuse every client",
            next_update=None if next_update is None else next_update.isoformat(),
        )
    if crl.last_update_utc > now:
        raise CrlInvalid(
            "the CRL's lastUpdate is in the future; the broker would treat it as not yet valid",
            last_update=crl.last_update_utc.isoformat(),
        )
    if newer_than is not None and crl.last_update_utc <= newer_than:
        raise CrlInvalid(
            "the CRL's lastUpdate is not newer than the installed CRL; the broker would keep "
            "the old one",
            last_update=crl.last_update_utc.isoformat(),
            installed=newer_than.isoformat(),
        )
    return crl


def validate_crl_file(
    path: Path, ca_certificate: x509.Certificate, clock: Clock
) -> x509.CertificateRevocationList:
    """Check the CRL file the broker is about to (re)load; raise :class:`CrlInvalid`."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CrlInvalid("the CRL file cannot be read", path=str(path)) from err
    return validate_crl(data, ca_certificate, clock)


def install_crl(
    path: Path, data: bytes, ca_certificate: x509.Certificate, clock: Clock
) -> x509.CertificateRevocationList:
    """Validate PEM CRL bytes, then atomically replace ``path``; a bad CRL changes nothing."""
    path = Path(path)
    installed = read_crl(path)
    newer_than = None
    if installed is not None and installed.issuer == ca_certificate.subject:
        newer_than = installed.last_update_utc
    crl = validate_crl(data, ca_certificate, clock, newer_than=newer_than)
    # The broker may run as another user; a CRL holds no secret.
    write_file_atomically(path, data, mode=0o644)
    return crl


def write_crl(
    ca: CertificateAuthority,
    revoked: Mapping[int, Revocation],
    path: Path,
    clock: Clock,
    *,
    validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
) -> CrlInfo:
    """Build, validate and atomically install the CRL at ``path`` (then reload the broker)."""
    if validity <= dt.timedelta(minutes=1):
        raise CrlInvalid("a CRL must be valid for more than a minute")
    path = Path(path)
    now = _whole_seconds(clock.now())
    previous = read_crl(path)
    last_update, number = now - LAST_UPDATE_BACKDATE, 1
    if previous is not None and previous.issuer == ca.subject:
        # The broker keeps using the CRL with the newest lastUpdate, so two
        # revocations in the same second must still produce a newer CRL.
        last_update = max(last_update, previous.last_update_utc + _ONE_SECOND)
        number = _crl_number(previous) + 1
    if last_update > now:
        raise CrlInvalid(
            "too many CRLs in a short time: the next one would be dated in the future; "
            "retry in a few seconds"
        )
    crl = build_crl(ca, revoked, last_update=last_update, next_update=now + validity, number=number)
    data = crl.public_bytes(serialization.Encoding.PEM)
    installed = install_crl(path, data, ca.certificate, clock)
    next_update = installed.next_update_utc
    assert next_update is not None  # validate_crl guarantees it
    _LOGGER.info(
        "Installed CRL #%s with %s revoked certificate(s), next update %s",
        number,
        len(revoked),
        next_update.isoformat(),
    )
    return CrlInfo(
        path=path,
        number=number,
        last_update=installed.last_update_utc,
        next_update=next_update,
        revoked_count=len(revoked),
    )


def crl_reissue_at(
    crl: x509.CertificateRevocationList, *, margin: dt.timedelta = DEFAULT_REISSUE_MARGIN
) -> dt.datetime:
    """Return when to replace the CRL: ``margin`` (at most half its window) before nextUpdate."""
    next_update = crl.next_update_utc
    if next_update is None:
        return crl.last_update_utc
    window = next_update - crl.last_update_utc
    return next_update - min(margin, window / 2)


def crl_needs_reissue(
    path: Path,
    ca_certificate: x509.Certificate,
    clock: Clock,
    *,
    margin: dt.timedelta = DEFAULT_REISSUE_MARGIN,
) -> bool:
    """Return True when the CRL at ``path`` is missing, invalid or due for reissue."""
    try:
        crl = validate_crl_file(path, ca_certificate, clock)
    except CrlInvalid:
        return True
    return clock.now() >= crl_reissue_at(crl, margin=margin)
