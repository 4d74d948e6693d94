"""The redaction filter masks secrets that reach a log call by mistake."""

from __future__ import annotations

import io
import logging
from typing import Any

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


async def test_access_log_has_no_query_string_and_no_body(client: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await client.get("/healthz?token=zs_canaryQueryToken1234567")
    await client.post(
        "/v1/auth/codes", json={"email": "body-canary@example.com", "purpose": "login"}
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any(line.startswith("GET /healthz 200") for line in lines), lines
    joined = "\n".join(lines)
    assert "zs_canaryQueryToken" not in joined
    assert "body-canary" not in joined
