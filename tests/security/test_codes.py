"""Label verification codes and the label payload the app scans."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.errors import ConfigError
from provisioning.security.codes import (
    LabelPayload,
    format_label_payload,
    generate_label_code,
    label_code_digest,
    parse_label_payload,
    validate_label_code,
    validate_serial,
    verify_label_code,
)
from provisioning.security.errors import LabelCodeInvalid, LabelPayloadInvalid, SerialInvalid

PEPPER = b"p" * 32

serials = st.from_regex(r"[A-Z0-9][A-Z0-9-]{3,31}", fullmatch=True)
codes = st.text(alphabet=string.ascii_uppercase, min_size=6, max_size=6)
models = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", fullmatch=True)


def test_generated_codes_are_six_capital_letters_and_vary() -> None:
    generated = {generate_label_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isascii() and code.isupper() for code in generated)
    assert all(set(code) <= set(string.ascii_uppercase) for code in generated)
    assert len(generated) > 190


@given(serial=serials, code=codes)
def test_stored_digest_never_equals_or_contains_the_code(serial: str, code: str) -> None:
    digest = label_code_digest(PEPPER, serial, code)
    assert len(digest) == 32
    for form in (digest, digest.hex().encode(), digest.hex().upper().encode()):
        assert code.encode() not in form
        assert code.lower().encode() not in form
    assert digest != code.encode()


def test_right_code_verifies_wrong_code_does_not() -> None:
    digest = label_code_digest(PEPPER, "ZC1-0001", "QWERTY")
    assert verify_label_code(PEPPER, "ZC1-0001", "QWERTY", digest)
    assert verify_label_code(PEPPER, "ZC1-0001", " qwerty ", digest)
    assert not verify_label_code(PEPPER, "ZC1-0001", "QWERTZ", digest)
    assert not verify_label_code(PEPPER, "ZC1-0002", "QWERTY", digest)
    assert not verify_label_code(b"q" * 32, "ZC1-0001", "QWERTY", digest)
    assert not verify_label_code(PEPPER, "ZC1-0001", "QWERT", digest)
    assert not verify_label_code(PEPPER, "ZC1-0001", "", digest)


def test_digest_binds_serial_and_code_unambiguously() -> None:
    # Naive concatenation would make ("ZC1-0001A", "BCDEFG") collide with
    # ("ZC1-0001", "ABCDEF") + "G"; length prefixes keep them apart.
    assert label_code_digest(PEPPER, "ZC1-0001", "ABCDEF") != label_code_digest(
        PEPPER, "ZC1-00010", "ABCDEF"
    )
    assert label_code_digest(PEPPER, "ZC1-0001", "ABCDEF") != label_code_digest(
        PEPPER, "ZC1-0001", "ABCDEG"
    )


def test_short_pepper_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="pepper"):
        label_code_digest(b"short", "ZC1-0001", "ABCDEF")


@pytest.mark.parametrize("code", ["abcdef", "ABCDE", "ABCDEFG", "ABC1EF", "ÄBCDEF", "ABCDE\n"])
def test_code_outside_six_capital_letters_is_refused_without_echoing_it(code: str) -> None:
    with pytest.raises(LabelCodeInvalid) as caught:
        validate_label_code(code)
    assert code.strip() not in caught.value.message
    assert code not in str(caught.value.details)


@pytest.mark.parametrize(
    "serial", ["bridge", "BRIDGE/1", "ZC1+", "ZC#1", "ZC1:1", "AB", "-ZC1", ""]
)
def test_serials_that_could_escape_topics_or_identities_are_refused(serial: str) -> None:
    with pytest.raises(SerialInvalid):
        validate_serial(serial)


def test_label_payload_reads_back_what_was_printed() -> None:
    text = format_label_payload("ZC1-0000042", "QWERTY", "CAM-100")
    assert text == "ZN1:ZC1-0000042:QWERTY:CAM-100"
    assert parse_label_payload(text) == LabelPayload("ZC1-0000042", "QWERTY", "CAM-100")
    assert parse_label_payload("ZN1:ZL1-0007::lock.2") == LabelPayload("ZL1-0007", None, "lock.2")


def test_label_payload_repr_hides_the_code() -> None:
    assert "QWERTY" not in repr(parse_label_payload("ZN1:ZC1-0001:QWERTY:CAM"))


@given(serial=serials, code=st.none() | codes, model=models)
def test_every_valid_label_round_trips(serial: str, code: str | None, model: str) -> None:
    text = format_label_payload(serial, code, model)
    assert parse_label_payload(text) == LabelPayload(serial, code, model)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "prefix"),
        ("ZN2:ZC1-0001:QWERTY:CAM", "prefix"),
        ("zn1:ZC1-0001:QWERTY:CAM", "prefix"),
        ("ZN1:ZC1-0001:QWERTY", "payload"),
        ("ZN1:ZC1-0001:QWERTY:CAM:extra", "payload"),
        ("ZN1:zc1-0001:QWERTY:CAM", "serial"),
        ("ZN1:ZC1-0001:qwerty:CAM", "code"),
        ("ZN1:ZC1-0001:QWERT:CAM", "code"),
        ("ZN1:ZC1-0001:QWERTY:", "model"),
        ("ZN1:ZC1-0001:QWERTY:CAM 100", "model"),
        ("ZN1:ZC1-0001:QWERTY:" + "M" * 200, "payload"),
    ],
)
def test_malformed_label_payload_names_the_bad_part(text: str, field: str) -> None:
    with pytest.raises(LabelPayloadInvalid) as caught:
        parse_label_payload(text)
    assert caught.value.details["field"] == field


@given(st.text(max_size=200))
def test_arbitrary_scanned_text_parses_to_a_valid_label_or_a_clear_error(text: str) -> None:
    try:
        payload = parse_label_payload(text)
    except LabelPayloadInvalid as err:
        field = err.details["field"]
    else:
        assert payload.format() == text
        return
    assert field in {"payload", "prefix", "serial", "code", "model"}


@given(
    st.lists(st.one_of(st.text(max_size=20), serials, codes, models), min_size=0, max_size=6).map(
        lambda parts: "ZN1:" + ":".join(parts)
    )
)
def test_near_miss_payloads_never_parse_into_something_else(text: str) -> None:
    try:
        payload = parse_label_payload(text)
    except LabelPayloadInvalid:
        return
    assert payload.format() == text
