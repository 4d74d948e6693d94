"""The account flow over real HTTP: codes, registration, sign-in, sessions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from provisioning.clock import FrozenClock
from provisioning.notify.delivery import OutboxSender
from provisioning.services import Services
from provisioning.storage.models import Account, Session, VerificationCode
from tests.api.accounts_helpers import CLIENT_INFO, bearer, register, request_code

Client = TestClient[Any, Any]
PASSWORD = "correct horse battery"


async def test_code_register_login_sessions_revoke_logout(
    client: Client, outbox: OutboxSender
) -> None:
    first = await register(client, outbox, "ana@example.com", nickname="Ana")
    ipad = {**CLIENT_INFO, "client_type": "ios", "device_model": "iPad Air", "os_version": "18.1"}
    response = await client.post(
        "/v1/auth/login", json={"email": "ana@example.com", "password": PASSWORD, "client": ipad}
    )
    assert response.status == 200
    second = await response.json()

    me = await client.get("/v1/me", headers=bearer(second["token"]))
    assert me.status == 200
    profile = await me.json()
    assert profile["email"] == "ana@example.com"
    assert profile["nickname"] == "Ana"

    listed = await (await client.get("/v1/me/sessions", headers=bearer(second["token"]))).json()
    by_model = {s["device_model"]: s for s in listed["sessions"]}
    assert set(by_model) == {"Pixel 8", "iPad Air"}
    assert by_model["iPad Air"]["client_type"] == "ios"
    assert by_model["iPad Air"]["os_version"] == "18.1"
    assert by_model["iPad Air"]["current"] is True
    assert by_model["Pixel 8"]["current"] is False

    revoked = await client.delete(
        f"/v1/me/sessions/{first['session_id']}", headers=bearer(second["token"])
    )
    assert revoked.status == 204
    stale = await client.get("/v1/me", headers=bearer(first["token"]))
    assert stale.status == 401
    assert (await stale.json())["error"]["code"] == "unauthenticated"

    out = await client.post("/v1/auth/logout", headers=bearer(second["token"]))
    assert out.status == 204
    assert (await client.get("/v1/me", headers=bearer(second["token"]))).status == 401

    ops = await client.post(
        "/v1/auth/login",
        json={"email": "ana@example.com", "password": PASSWORD, "client": CLIENT_INFO},
    )
    token = (await ops.json())["token"]
    log = await (await client.get("/v1/me/operations", headers=bearer(token))).json()
    actions = [entry["action"] for entry in log["operations"]]
    assert {"account.register", "account.login", "session.revoke", "account.logout"} <= set(actions)


async def test_login_with_code_opens_a_session(client: Client, outbox: OutboxSender) -> None:
    await register(client, outbox, "bo@example.com")
    code = await request_code(client, outbox, "bo@example.com", "login")
    response = await client.post(
        "/v1/auth/login", json={"email": "bo@example.com", "code": code, "client": CLIENT_INFO}
    )
    assert response.status == 200
    assert (
        await client.get("/v1/me", headers=bearer((await response.json())["token"]))
    ).status == 200


async def test_register_by_phone_and_duplicate_is_refused(
    client: Client, outbox: OutboxSender
) -> None:
    phone = "+4915112345678"
    for expected in (201, 409):
        await client.post("/v1/auth/codes", json={"phone": phone, "purpose": "register"})
        code = [m for m in outbox.read_codes() if m["recipient"] == phone][-1]["code"]
        response = await client.post(
            "/v1/auth/register",
            json={"phone": phone, "password": PASSWORD, "code": code, "client": CLIENT_INFO},
        )
        assert response.status == expected
    assert (await response.json())["error"]["code"] == "account_exists"


async def test_used_code_is_refused_with_code_used(client: Client, outbox: OutboxSender) -> None:
    code = await request_code(client, outbox, "cy@example.com", "register")
    body = {"email": "cy@example.com", "password": PASSWORD, "code": code, "client": CLIENT_INFO}
    assert (await client.post("/v1/auth/register", json=body)).status == 201
    again = await client.post("/v1/auth/register", json=body)
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "code_used"


async def test_expired_code_is_refused_with_code_expired(
    client: Client, outbox: OutboxSender, clock: FrozenClock
) -> None:
    code = await request_code(client, outbox, "di@example.com", "register")
    clock.advance(dt.timedelta(minutes=5, seconds=1))
    response = await client.post(
        "/v1/auth/register",
        json={"email": "di@example.com", "password": PASSWORD, "code": code, "client": CLIENT_INFO},
    )
    assert response.status == 410
    assert (await response.json())["error"]["code"] == "code_expired"


async def test_wrong_codes_burn_the_live_code(client: Client, outbox: OutboxSender) -> None:
    code = await request_code(client, outbox, "ed@example.com", "register")
    wrong = "000000" if code != "000000" else "111111"
    body = {"email": "ed@example.com", "password": PASSWORD, "client": CLIENT_INFO}
    for _ in range(5):
        response = await client.post("/v1/auth/register", json={**body, "code": wrong})
        assert (await response.json())["error"]["code"] == "verification_code_invalid"
    late = await client.post("/v1/auth/register", json={**body, "code": code})
    assert late.status == 403, "the right code must not work after five wrong guesses"


async def test_sixth_wrong_password_gets_429_with_retry_after(
    client: Client, outbox: OutboxSender, clock: FrozenClock
) -> None:
    await register(client, outbox, "fa@example.com")
    body = {"email": "fa@example.com", "password": "not the password", "client": CLIENT_INFO}
    for _ in range(5):
        response = await client.post("/v1/auth/login", json=body)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_credentials"
    sixth = await client.post("/v1/auth/login", json=body)
    assert sixth.status == 429
    assert (await sixth.json())["error"]["code"] == "too_many_attempts"
    assert 0 < int(sixth.headers["Retry-After"]) <= 900
    right = await client.post("/v1/auth/login", json={**body, "password": PASSWORD})
    assert right.status == 429, "even the right password waits out the lockout"
    clock.advance(dt.timedelta(seconds=901))
    assert (await client.post("/v1/auth/login", json={**body, "password": PASSWORD})).status == 200


async def test_code_requests_are_limited_per_recipient(
    client: Client, outbox: OutboxSender
) -> None:
    statuses = []
    for _ in range(6):
        response = await client.post(
            "/v1/auth/codes", json={"email": "gi@example.com", "purpose": "login"}
        )
        statuses.append(response.status)
    assert statuses == [202] * 5 + [429]
    assert "Retry-After" in response.headers


async def test_password_reset_ends_every_session(client: Client, outbox: OutboxSender) -> None:
    issued = await register(client, outbox, "ha@example.com")
    code = await request_code(client, outbox, "ha@example.com", "reset_password")
    response = await client.post(
        "/v1/auth/password-reset",
        json={"email": "ha@example.com", "code": code, "new_password": "a whole new secret"},
    )
    assert response.status == 204
    assert (await client.get("/v1/me", headers=bearer(issued["token"]))).status == 401
    old = await client.post(
        "/v1/auth/login",
        json={"email": "ha@example.com", "password": PASSWORD, "client": CLIENT_INFO},
    )
    assert old.status == 401
    new = await client.post(
        "/v1/auth/login",
        json={"email": "ha@example.com", "password": "a whole new secret", "client": CLIENT_INFO},
    )
    assert new.status == 200


async def test_profile_update_round_trips(client: Client, outbox: OutboxSender) -> None:
    issued = await register(client, outbox, "io@example.com")
    response = await client.patch(
        "/v1/me",
        json={"nickname": "Io", "avatar_url": "https://cdn.example.com/a.png", "region": "DE"},
        headers=bearer(issued["token"]),
    )
    assert response.status == 200
    profile = await (await client.get("/v1/me", headers=bearer(issued["token"]))).json()
    assert (profile["nickname"], profile["region"]) == ("Io", "DE")
    assert profile["avatar_url"] == "https://cdn.example.com/a.png"


async def test_codes_tokens_and_contacts_are_stored_only_as_hashes(
    client: Client, outbox: OutboxSender, services: Services, data_dir: Path
) -> None:
    password = "canary-password-7731"
    issued = await register(
        client, outbox, "canary.jo@example.com", password=password, nickname="CanaryNick"
    )
    codes = [m["code"] for m in outbox.read_codes()]
    async with services.db.session() as session:
        rows = [
            *(await session.execute(select(VerificationCode))).scalars(),
            *(await session.execute(select(Session))).scalars(),
            *(await session.execute(select(Account))).scalars(),
        ]
    dumped = "".join(repr({c.key: getattr(r, c.key) for c in r.__mapper__.columns}) for r in rows)
    for secret in (*codes, issued["token"], password, "canary.jo@example.com", "CanaryNick"):
        assert secret not in dumped
    if services.db.is_sqlite:
        await services.db.dispose()  # checkpoint nothing away: scan file and WAL as they are
        raw = b"".join(p.read_bytes() for p in data_dir.glob("zanuo.db*"))
        for secret in (issued["token"], password, "canary.jo@example.com", "CanaryNick"):
            assert secret.encode() not in raw
