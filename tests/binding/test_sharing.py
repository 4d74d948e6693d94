"""Sharing: invitations, permissions, and what a shared user may not do."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp.test_utils import TestClient

from provisioning.clock import FrozenClock
from provisioning.notify.delivery import OutboxSender
from provisioning.services import Services
from tests.api.accounts_helpers import bearer, register
from tests.fixtures.devices import RegisterDevice

Client = TestClient[Any, Any]


async def _owned_camera(
    client: Client, services: Services, token: str, register_device: RegisterDevice
) -> str:
    camera = await register_device("ZC2-0000001")
    issued = await (
        await client.post(
            "/v1/bindings",
            json={"serial": camera.serial, "verification_code": camera.code},
            headers=bearer(token),
        )
    ).json()
    assert (await services.binding.confirm(camera.serial, issued["bind_token"])).bound
    return camera.serial


async def test_shared_user_sees_the_device_but_cannot_unbind_or_reshare(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    owner = await register(client, outbox, "owner@example.com")
    guest = await register(client, outbox, "guest@example.com")
    serial = await _owned_camera(client, services, owner["token"], register_device)

    invited = await client.post(
        f"/v1/devices/{serial}/shares",
        json={"email": "guest@example.com", "permission": "view"},
        headers=bearer(owner["token"]),
    )
    assert invited.status == 201
    invitations = await (await client.get("/v1/invitations", headers=bearer(guest["token"]))).json()
    assert [s["serial"] for s in invitations["shares"]] == [serial]
    share_id = invitations["shares"][0]["share_id"]
    accepted = await client.post(
        f"/v1/invitations/{share_id}/accept", headers=bearer(guest["token"])
    )
    assert (await accepted.json())["state"] == "accepted"

    listed = await (await client.get("/v1/devices", headers=bearer(guest["token"]))).json()
    assert [(d["serial"], d["permission"]) for d in listed["devices"]] == [(serial, "view")]
    assert listed["devices"][0]["shares"] is None
    assert listed["devices"][0]["settings"] is None

    for method, url, body in (
        ("DELETE", f"/v1/devices/{serial}", None),
        (
            "POST",
            f"/v1/devices/{serial}/shares",
            {"email": "third@example.com", "permission": "view"},
        ),
        ("PATCH", f"/v1/devices/{serial}", {"name": "mine now"}),
    ):
        response = await client.request(method, url, json=body, headers=bearer(guest["token"]))
        assert response.status == 403, (method, url)
        assert (await response.json())["error"]["code"] == "not_owner"

    revoke = await client.delete(
        f"/v1/devices/{serial}/shares/{share_id}", headers=bearer(owner["token"])
    )
    assert revoke.status == 204
    assert (await (await client.get("/v1/devices", headers=bearer(guest["token"]))).json())[
        "devices"
    ] == []
    assert (await client.get(f"/v1/devices/{serial}", headers=bearer(guest["token"]))).status == 404


async def test_invitation_expires_after_seven_days(
    client: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
    clock: FrozenClock,
) -> None:
    owner = await register(client, outbox, "o2@example.com")
    guest = await register(client, outbox, "g2@example.com")
    serial = await _owned_camera(client, services, owner["token"], register_device)
    share = await (
        await client.post(
            f"/v1/devices/{serial}/shares",
            json={"email": "g2@example.com", "permission": "control"},
            headers=bearer(owner["token"]),
        )
    ).json()
    clock.advance(dt.timedelta(days=7, seconds=1))
    assert (await (await client.get("/v1/invitations", headers=bearer(guest["token"]))).json())[
        "shares"
    ] == []
    late = await client.post(
        f"/v1/invitations/{share['share_id']}/accept", headers=bearer(guest["token"])
    )
    assert late.status == 410
    assert (await late.json())["error"]["code"] == "token_expired"


async def test_owner_renames_and_changes_settings(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    owner = await register(client, outbox, "o3@example.com")
    serial = await _owned_camera(client, services, owner["token"], register_device)
    response = await client.patch(
        f"/v1/devices/{serial}",
        json={"name": "Front door", "notifications": False},
        headers=bearer(owner["token"]),
    )
    device = await response.json()
    assert device["name"] == "Front door"
    assert device["settings"] == {"auto_upgrade": True, "notifications": False}


async def test_shared_user_reads_events_and_only_the_owner_has_a_feed(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    import uuid

    from provisioning.storage.devices import Event

    owner = await register(client, outbox, "o4@example.com")
    guest = await register(client, outbox, "g4@example.com")
    serial = await _owned_camera(client, services, owner["token"], register_device)
    share = await (
        await client.post(
            f"/v1/devices/{serial}/shares",
            json={"email": "g4@example.com", "permission": "view"},
            headers=bearer(owner["token"]),
        )
    ).json()
    await client.post(f"/v1/invitations/{share['share_id']}/accept", headers=bearer(guest["token"]))
    now = services.clock.now()
    async with services.db.session() as session:
        for event_id, in_feed in (("e-feed", True), ("e-quiet", False)):
            session.add(
                Event(
                    id=uuid.uuid4(),
                    serial=serial,
                    event_id=event_id,
                    account_id=uuid.UUID(owner["account_id"]),
                    event_type="motion",
                    occurred_at=now,
                    in_feed=in_feed,
                    received_at=now,
                )
            )
        await session.commit()
    seen = await (
        await client.get(f"/v1/devices/{serial}/events", headers=bearer(guest["token"]))
    ).json()
    assert sorted(e["event_id"] for e in seen["events"]) == ["e-feed", "e-quiet"]
    feed = await (await client.get("/v1/messages", headers=bearer(owner["token"]))).json()
    assert [e["event_id"] for e in feed["events"]] == ["e-feed"]
    assert (await (await client.get("/v1/messages", headers=bearer(guest["token"]))).json())[
        "events"
    ] == []
