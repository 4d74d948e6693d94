"""CRLs: only a valid, newer CRL ever replaces the broker's file."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provisioning.clock import FrozenClock
from provisioning.security.crl import (
    Revocation,
    build_crl,
    crl_needs_reissue,
    crl_reissue_at,
    install_crl,
    parse_reason,
    read_crl,
    validate_crl_file,
    write_crl,
)
from provisioning.security.errors import CrlInvalid
from tests.fixtures.mosquitto import LocalPki


def test_written_crl_lists_the_revoked_certificate_and_openssl_accepts_it(
    device_pki: LocalPki,
) -> None:
    device = device_pki.mint_device("ZC1-0001")
    keep = device_pki.mint_device("ZC1-0002")
    info = device_pki.revoke(device)
    crl = read_crl(device_pki.crl_file)
    assert crl is not None
    entry = crl.get_revoked_certificate_by_serial_number(device.certificate.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise
    )
    assert crl.get_revoked_certificate_by_serial_number(keep.certificate.serial_number) is None
    assert info.revoked_count == 1
    assert info.next_update > device_pki.clock.now() + dt.timedelta(days=6)

    def verify(cert: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "verify", "-crl_check", "-CAfile", str(device_pki.ca_file),
             "-CRLfile", str(device_pki.crl_file), str(cert)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    assert "revoked" in verify(device.cert_file).stdout + verify(device.cert_file).stderr
    assert verify(keep.cert_file).returncode == 0


def test_each_new_crl_is_newer_even_within_the_same_second(device_pki: LocalPki) -> None:
    clock = FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    seen = []
    for _ in range(3):
        info = write_crl(device_pki.ca, {}, device_pki.crl_file, clock)
        seen.append((info.last_update, info.number))
    assert seen[0][0] < seen[1][0] < seen[2][0] <= clock.now()
    assert [number for _, number in seen] == sorted({number for _, number in seen})


def test_crl_is_never_dated_in_the_future(device_pki: LocalPki) -> None:
    # OpenSSL treats a future lastUpdate as "not yet valid": refuse to write one.
    clock = FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    ahead = build_crl(
        device_pki.ca,
        {},
        last_update=clock.now() + dt.timedelta(seconds=2),
        next_update=clock.now() + dt.timedelta(days=7),
        number=1000,
    ).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CrlInvalid, match="in the future"):
        install_crl(device_pki.crl_file, ahead, device_pki.ca.certificate, clock)


def test_garbage_crl_is_refused_and_the_installed_one_stays(device_pki: LocalPki) -> None:
    before = device_pki.crl_file.read_bytes()
    with pytest.raises(CrlInvalid, match="not a PEM"):
        install_crl(device_pki.crl_file, b"not a crl", device_pki.ca.certificate, device_pki.clock)
    assert device_pki.crl_file.read_bytes() == before
    assert not list(device_pki.crl_file.parent.glob(".crl.pem.*"))


def test_crl_from_another_ca_is_refused(device_pki: LocalPki, foreign_pki: LocalPki) -> None:
    before = device_pki.crl_file.read_bytes()
    foreign = foreign_pki.crl_file.read_bytes()
    with pytest.raises(CrlInvalid, match="not signed by the device CA"):
        install_crl(device_pki.crl_file, foreign, device_pki.ca.certificate, device_pki.clock)
    assert device_pki.crl_file.read_bytes() == before


def test_crl_already_past_next_update_is_refused(device_pki: LocalPki) -> None:
    now = device_pki.clock.now()
    stale = build_crl(
        device_pki.ca,
        {},
        last_update=now - dt.timedelta(days=8),
        next_update=now - dt.timedelta(days=1),
        number=99,
    ).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CrlInvalid, match="refuse every client"):
        install_crl(device_pki.crl_file, stale, device_pki.ca.certificate, device_pki.clock)


def test_crl_not_newer_than_the_installed_one_is_refused(device_pki: LocalPki) -> None:
    installed = read_crl(device_pki.crl_file)
    assert installed is not None
    same_time = build_crl(
        device_pki.ca,
        {123: Revocation(device_pki.clock.now())},
        last_update=installed.last_update_utc,
        next_update=device_pki.clock.now() + dt.timedelta(days=7),
        number=50,
    ).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CrlInvalid, match="not newer"):
        install_crl(device_pki.crl_file, same_time, device_pki.ca.certificate, device_pki.clock)


def test_crl_is_due_for_reissue_well_before_next_update(device_pki: LocalPki) -> None:
    start = device_pki.clock.now()
    clock = FrozenClock(start)
    write_crl(device_pki.ca, {}, device_pki.crl_file, clock, validity=dt.timedelta(days=7))
    crl = validate_crl_file(device_pki.crl_file, device_pki.ca.certificate, clock)
    assert crl_needs_reissue(device_pki.crl_file, device_pki.ca.certificate, clock) is False
    due = crl_reissue_at(crl)
    assert start + dt.timedelta(days=3) <= due < start + dt.timedelta(days=7)
    clock.set(due)
    assert crl_needs_reissue(device_pki.crl_file, device_pki.ca.certificate, clock)
    clock.set(start + dt.timedelta(days=8))
    assert crl_needs_reissue(device_pki.crl_file, device_pki.ca.certificate, clock)


def test_missing_crl_needs_issuing(device_pki: LocalPki, tmp_path: Path) -> None:
    assert crl_needs_reissue(tmp_path / "none.pem", device_pki.ca.certificate, device_pki.clock)


def test_revocation_reasons_are_named_like_the_cli_says(device_pki: LocalPki) -> None:
    assert parse_reason("key-compromise") is x509.ReasonFlags.key_compromise
    assert parse_reason("superseded") is x509.ReasonFlags.superseded
    with pytest.raises(CrlInvalid, match="unknown revocation reason"):
        parse_reason("because")
