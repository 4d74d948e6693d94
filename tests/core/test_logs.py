"""The redaction filter masks secrets that reach a log call by mistake."""

from __future__ import annotations

import io
import logging

from provisioning.logs import RedactingFilter, redact


def test_tokens_and_secret_pairs_are_masked() -> None:
    line = redact(
        'login ok token=zs_AbCdEfGhIjKlMnOpQrStUv {"password": "hunter22"} '
        "Authorization: Bearer abc.def passphrase=wifi-secret"
    )
    for secret in ("zs_AbCdEfGhIjKlMnOpQrStUv", "hunter22", "abc.def", "wifi-secret"):
        assert secret not in line


def test_filter_rewrites_records_from_any_logger() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("bind token %s for %s", "zb_0123456789abcdefghij", "SN123")
    finally:
        logger.removeHandler(handler)
    assert "zb_0123456789abcdefghij" not in stream.getvalue()
    assert "SN123" in stream.getvalue()
