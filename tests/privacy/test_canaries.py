"""Canary suite for the HTTP flows: plant unique secrets, run every flow, find them nowhere.

Failures are part of the flows: wrong passwords up to the lockout, wrong label
codes, malformed bodies carrying secrets, location fields, expired tokens.
Afterwards the database file with its WAL, every captured log line, every file
the run left in the data dir and temp dir, and another user's export are
scanned for every canary. (The MQTT and provisioning flows have their own
canary scans in tests/bridge and tests/e2e.)
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets as pysecrets
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from provisioning.clock import FrozenClock
from provisioning.domain.binding import BindProof
from provisioning.notify.delivery import OutboxSender
from provisioning.services import Services
from tests.api.accounts_helpers import CLIENT_INFO, bearer, register, request_code
from tests.fixtures.devices import RegisterDevice

Client = TestClient[Any, Any]

# Files that hold secrets on purpose: the secrets file, the wrapped account keys
# and (development mode only) the outbox of verification codes.
INTENDED = ("secrets.toml", "outbox.jsonl", ".key")


def _files_to_scan(data_dir: Path, since: float) -> list[Path]:
    found = [p for p in data_dir.rglob("*") if p.is_file() and not p.name.endswith(INTENDED)]
    temp_root = Path(tempfile.gettempdir())
    for path in temp_root.glob("*"):
        try:
            if (
                path.is_file()
                and path.stat().st_mtime >= since
                and path.stat().st_size < 50_000_000
            ):
                found.append(path)
        except OSError:
            continue
    return found


@pytest.mark.sqlite_only
async def test_no_canary_reaches_a_store_or_a_log_on_any_http_flow(
    client: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
    clock: FrozenClock,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert services.db.is_sqlite, (
        "the raw file scan needs SQLite (the PostgreSQL run skips this file)"
    )
    started = time.time() - 1
    caplog.set_level(logging.DEBUG)
    tag = pysecrets.token_hex(4)
    password = f"canary-password-{tag}"
    wrong_password = f"canary-wrong-password-{tag}"
    phone_lat, phone_lon = 47.3769123 + int(tag, 16) % 1000 / 1e7, 8.5417456
    canaries: set[str] = {password, wrong_password, f"{phone_lat}", f"{phone_lon}"}

    owner = await register(client, outbox, f"canary-owner-{tag}@example.com", password=password)
    other = await register(client, outbox, f"canary-other-{tag}@example.com", password=password)
    canaries |= {owner["token"], other["token"]}

    # Failures: wrong passwords to the lockout, a malformed body that carries a
    # secret, the phone's location in a binding request.
    for _ in range(6):
        await client.post(
            "/v1/auth/login",
            json={
                "email": f"canary-owner-{tag}@example.com",
                "password": wrong_password,
                "client": CLIENT_INFO,
            },
        )
    await client.post("/v1/auth/login", json={"email": 7, "password": wrong_password, "client": {}})
    camera = await register_device(f"ZK1-{tag.upper()}")
    assert camera.code is not None
    canaries.add(camera.code)
    await client.post(
        "/v1/bindings",
        json={
            "serial": camera.serial,
            "verification_code": camera.code,
            "latitude": phone_lat,
            "longitude": phone_lon,
        },
        headers=bearer(owner["token"]),
    )
    wrong = "".join(reversed(camera.code)) if camera.code != camera.code[::-1] else "ZZZZZZ"
    for _ in range(6):
        await client.post(
            "/v1/bindings",
            json={"serial": camera.serial, "verification_code": wrong},
            headers=bearer(owner["token"]),
        )
    clock.advance(dt.timedelta(minutes=30))

    # Successes: bind, confirm, pairing token for a lock, share, export, cancel.
    issued = await (
        await client.post(
            "/v1/bindings",
            json={"serial": camera.serial, "verification_code": camera.code},
            headers=bearer(owner["token"]),
        )
    ).json()
    canaries.add(issued["bind_token"])
    assert (await services.binding.confirm(camera.serial, issued["bind_token"])).bound
    lock = await register_device(f"ZL1-{tag.upper()}", "lock", with_code=False)
    pairing = await (await client.post("/v1/pairing-tokens", headers=bearer(owner["token"]))).json()
    canaries.add(pairing["pairing_token"])
    proof = BindProof(*lock.proof(pairing["pairing_token"]))
    assert (
        await services.binding.confirm(lock.serial, pairing["pairing_token"], proof=proof)
    ).bound
    await client.post(
        f"/v1/devices/{camera.serial}/shares",
        json={"email": f"canary-other-{tag}@example.com", "permission": "view"},
        headers=bearer(owner["token"]),
    )
    other_export = await (await client.get("/v1/me/export", headers=bearer(other["token"]))).text()
    code = await request_code(client, outbox, f"canary-owner-{tag}@example.com", "delete_account")
    canaries.add(code)
    canaries |= {m["code"] for m in outbox.read_codes()}
    cancelled = await client.request(
        "DELETE", "/v1/me", json={"code": code}, headers=bearer(owner["token"])
    )
    assert cancelled.status == 200
    await services.db.dispose()

    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert "POST /v1/bindings" in logs, "the access log must have been captured"
    stores = {str(path): path.read_bytes() for path in _files_to_scan(data_dir, started)}
    assert any(name.endswith("zanuo.db") for name in stores)
    for canary in sorted(canaries):
        assert canary not in logs, f"canary {canary!r} in the logs"
        assert canary not in other_export, f"canary {canary!r} in another user's export"
        for name, raw in stores.items():
            assert canary.encode() not in raw, f"canary {canary!r} in {name}"
