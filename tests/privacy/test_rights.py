"""Export, cancellation (with crypto-shredding), privacy requests and retention."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from provisioning.clock import FrozenClock
from provisioning.domain.events import screenshot_context
from provisioning.domain.rights import due_date, exportable_tables
from provisioning.notify.delivery import OutboxSender
from provisioning.security.keys import DecryptionFailed, seal_bytes
from provisioning.services import Services
from provisioning.storage.base import Base
from provisioning.storage.catalog import Category, column_class
from provisioning.storage.devices import Command, Event
from provisioning.storage.engine import Database
from provisioning.storage.models import Account
from tests.api.accounts_helpers import bearer, register, request_code
from tests.fixtures.devices import RegisterDevice, bind_with_code

Client = TestClient[Any, Any]


def test_every_table_declares_how_it_belongs_to_an_account() -> None:
    for table in Base.metadata.sorted_tables:
        info = table.info
        assert (
            info.get("account_keys") or info.get("via_ownership") or info.get("export") is False
        ), table.name


async def _event(
    services: Services, serial: str, account_id: str, *, screenshot: bytes | None = None
) -> None:
    now = services.clock.now()
    owner = uuid.UUID(account_id)
    event_id = uuid.uuid4().hex
    async with services.db.session() as session:
        sealed = None
        if screenshot is not None:
            dek = await services.vault.data_key(session, owner)
            sealed = seal_bytes(dek, screenshot, screenshot_context(serial, event_id))
        session.add(
            Event(
                id=uuid.uuid4(),
                serial=serial,
                event_id=event_id,
                account_id=owner,
                event_type="motion",
                occurred_at=now,
                result=None,
                screenshot_enc=sealed,
                screenshot_delete_at=now + dt.timedelta(days=1) if sealed else None,
                in_feed=True,
                received_at=now,
            )
        )
        await session.commit()


async def test_export_holds_every_category_of_the_account_and_nothing_of_another(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    me = await register(client, outbox, "ex1@example.com", nickname="ExportMe")
    other = await register(client, outbox, "ex2@example.com", nickname="NotMine")
    serial = await bind_with_code(
        client, services, me["token"], await register_device("ZC4-0000001")
    )
    await bind_with_code(client, services, other["token"], await register_device("ZC4-0000002"))
    await client.post(
        "/v1/me/consents",
        json={"purpose": "device_location", "granted": True},
        headers=bearer(me["token"]),
    )
    await client.put(
        f"/v1/devices/{serial}/location",
        json={"latitude": 1.5, "longitude": 2.5},
        headers=bearer(me["token"]),
    )
    await client.post(
        f"/v1/devices/{serial}/shares",
        json={"email": "ex2@example.com", "permission": "view"},
        headers=bearer(me["token"]),
    )
    await _event(services, serial, me["account_id"], screenshot=b"\xff\xd8jpeg")
    await client.post(
        "/v1/me/privacy-requests",
        json={"kind": "access", "message": "hello"},
        headers=bearer(me["token"]),
    )

    response = await client.get("/v1/me/export", headers=bearer(me["token"]))
    assert response.status == 200
    text = await response.text()
    document = await response.json()
    expected = {
        entry.category.value
        for table in exportable_tables()
        for column in table.columns
        if (entry := column_class(column.info)) is not None
        and entry.category
        not in (Category.NONE, Category.SECURITY_SECRET_HASH, Category.KEY_MATERIAL)
    }
    assert expected <= set(document["categories"])
    assert document["tables"]["accounts"][0]["email"] == "ex1@example.com"
    assert document["tables"]["accounts"][0]["nickname"] == "ExportMe"
    assert document["tables"]["device_locations"][0]["location"] == '{"lat": 1.5, "lon": 2.5}'
    screenshot = document["tables"]["events"][0]["screenshot"]
    assert base64.b64decode(screenshot["base64"]) == b"\xff\xd8jpeg"
    assert [d["serial"] for d in document["tables"]["devices"]] == [serial]
    assert "NotMine" not in text
    assert "ZC4-0000002" not in text
    assert other["account_id"] not in text.replace(
        document["tables"]["shares"][0].get("invitee_id") or "-", ""
    )
    assert me["token"] not in text


@pytest.mark.sqlite_only
async def test_cancellation_erases_the_account_and_old_database_copies_stay_sealed(
    client: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    assert services.db.is_sqlite, "a raw file scan (the PostgreSQL run deselects sqlite_only)"
    me = await register(client, outbox, "gone@example.com", nickname="CanaryNickname")
    serial = await bind_with_code(
        client, services, me["token"], await register_device("ZC4-0000003")
    )
    await client.patch(
        f"/v1/devices/{serial}", json={"name": "CanaryDeviceName"}, headers=bearer(me["token"])
    )
    await services.db.dispose()
    copy = tmp_path / "before"
    copy.mkdir()
    for path in data_dir.glob("zanuo.db*"):
        shutil.copy(path, copy / path.name)

    code = await request_code(client, outbox, "gone@example.com", "delete_account")
    response = await client.request(
        "DELETE", "/v1/me", json={"code": code}, headers=bearer(me["token"])
    )
    assert response.status == 200
    confirmation = await response.json()
    assert confirmation["devices_reset"] == [serial]
    assert (await client.get("/v1/me", headers=bearer(me["token"]))).status == 401

    async with services.db.session() as session:
        commands = (
            (await session.execute(select(Command.name).where(Command.serial == serial)))
            .scalars()
            .all()
        )
    assert commands == ["reset"]
    await services.db.dispose()
    raw = b"".join(p.read_bytes() for p in data_dir.glob("zanuo.db*"))
    for value in (
        b"CanaryNickname",
        b"CanaryDeviceName",
        b"gone@example.com",
        me["account_id"].encode(),
    ):
        assert value not in raw

    old = Database(f"sqlite+aiosqlite:///{copy / 'zanuo.db'}")
    try:
        async with old.session() as session:
            account = await session.get(Account, uuid.UUID(me["account_id"]))
            assert account is not None, "the old copy still has the sealed row"
            with pytest.raises(DecryptionFailed):
                await services.vault.data_key(session, account.id)
    finally:
        await old.dispose()


async def test_cancellation_deletes_every_row_of_the_account_and_its_key(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    me = await register(client, outbox, "gone2@example.com", nickname="Gone")
    serial = await bind_with_code(
        client, services, me["token"], await register_device("ZC4-0000005")
    )
    code = await request_code(client, outbox, "gone2@example.com", "delete_account")
    response = await client.request(
        "DELETE", "/v1/me", json={"code": code}, headers=bearer(me["token"])
    )
    assert response.status == 200
    account_id = uuid.UUID(me["account_id"])
    async with services.db.session() as session:
        for table in exportable_tables():
            keys = table.info.get("account_keys", ())
            for key in keys:
                rows = (
                    await session.execute(select(table).where(table.c[key] == account_id))
                ).all()
                assert rows == [], f"{table.name}.{key} still holds the account"
        assert await services.vault.store.get(session, account_id) is None
        commands = (
            (await session.execute(select(Command.name).where(Command.serial == serial)))
            .scalars()
            .all()
        )
    assert commands == ["reset"]


async def test_cancellation_needs_a_fresh_delete_code(client: Client, outbox: OutboxSender) -> None:
    me = await register(client, outbox, "keep@example.com")
    login_code = await request_code(client, outbox, "keep@example.com", "login")
    response = await client.request(
        "DELETE", "/v1/me", json={"code": login_code}, headers=bearer(me["token"])
    )
    assert response.status == 403
    assert (await client.get("/v1/me", headers=bearer(me["token"]))).status == 200


def test_due_date_counts_fifteen_working_days_skipping_holidays() -> None:
    friday = dt.date(2026, 12, 18)
    assert due_date(friday, frozenset()) == dt.date(2027, 1, 8)
    holidays = frozenset({dt.date(2026, 12, 25), dt.date(2027, 1, 1)})
    assert due_date(friday, holidays) == dt.date(2027, 1, 12)


async def test_privacy_request_gets_a_due_date(
    client: Client, outbox: OutboxSender, clock: FrozenClock
) -> None:
    me = await register(client, outbox, "pr@example.com")
    response = await client.post(
        "/v1/me/privacy-requests",
        json={"kind": "rectification", "message": "fix my name"},
        headers=bearer(me["token"]),
    )
    assert response.status == 201
    body = await response.json()
    assert body["due_at"].startswith(due_date(clock.now().date(), frozenset()).isoformat())


async def test_next_day_retention_deletes_screenshots_and_reports_it(
    client: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
    clock: FrozenClock,
) -> None:
    me = await register(client, outbox, "rt@example.com")
    serial = await bind_with_code(
        client, services, me["token"], await register_device("ZC4-0000004")
    )
    await _event(services, serial, me["account_id"], screenshot=b"\xff\xd8canary-shot")
    assert (await services.retention.run())["screenshots"] == 0
    clock.advance(dt.timedelta(days=1, seconds=1))
    done = await services.retention.run()
    assert done["screenshots"] == 1
    async with services.db.session() as session:
        shots = (await session.execute(select(Event.screenshot_enc))).scalars().all()
    assert shots == [None]
    clock.advance(dt.timedelta(days=1))
    later = await services.retention.run()
    assert later["verification_codes"] >= 1, "spent codes are purged after their grace day"
