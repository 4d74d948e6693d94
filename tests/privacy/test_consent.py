"""Consent ledger, basic mode, purpose gating and withdrawal, each with a visible effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from provisioning.notify.delivery import OutboxSender
from provisioning.services import Services
from provisioning.storage.devices import DeviceLocation
from provisioning.storage.models import Consent
from tests.api.accounts_helpers import bearer, register
from tests.fixtures.devices import RegisterDevice, bind_with_code

Client = TestClient[Any, Any]


async def _consent(client: Client, token: str, purpose: str, granted: bool) -> dict[str, Any]:
    response = await client.post(
        "/v1/me/consents", json={"purpose": purpose, "granted": granted}, headers=bearer(token)
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_policy_lists_every_purpose_and_optional_ones_start_off(
    client: Client, outbox: OutboxSender
) -> None:
    policy = await (await client.get("/v1/privacy/policy")).json()
    purposes = {p["purpose"]: p["optional"] for p in policy["purposes"]}
    assert purposes == {
        "policy": False,
        "device_location": True,
        "event_screenshots": True,
        "push_notifications": True,
        "biometric_features": True,
        "video_analysis": True,
    }
    me = await register(client, outbox, "cs@example.com")
    consents = await (await client.get("/v1/me/consents", headers=bearer(me["token"]))).json()
    assert consents["accepted_policy_version"] == policy["version"]
    assert consents["needs_reconsent"] is False
    assert consents["basic_mode"] is False
    assert set(consents["purposes"].values()) == {False}


async def test_withdrawing_the_policy_leaves_basic_mode_and_granting_restores(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    me = await register(client, outbox, "bm@example.com")
    await bind_with_code(client, services, me["token"], await register_device("ZC3-0000001"))
    await _consent(client, me["token"], "policy", False)

    for method, url in (
        ("GET", "/v1/devices"),
        ("POST", "/v1/pairing-tokens"),
        ("GET", "/v1/devices/ZC3-0000001"),
    ):
        response = await client.request(method, url, headers=bearer(me["token"]))
        assert response.status == 403, url
        assert (await response.json())["error"]["code"] == "basic_mode"
    # Public content and the account's own rights stay available.
    assert (await client.get("/v1/privacy/policy")).status == 200
    assert (await client.get("/v1/me/export", headers=bearer(me["token"]))).status == 200
    assert (await client.get("/v1/me/consents", headers=bearer(me["token"]))).status == 200

    await _consent(client, me["token"], "policy", True)
    listed = await client.get("/v1/devices", headers=bearer(me["token"]))
    assert listed.status == 200
    assert [d["serial"] for d in (await listed.json())["devices"]] == ["ZC3-0000001"]


async def test_device_location_needs_consent_and_withdrawal_deletes_it(
    client: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
    data_dir: Path,
) -> None:
    me = await register(client, outbox, "dl@example.com")
    serial = await bind_with_code(
        client, services, me["token"], await register_device("ZC3-0000002")
    )
    place = {"latitude": 48.137154, "longitude": 11.576124}
    refused = await client.put(
        f"/v1/devices/{serial}/location", json=place, headers=bearer(me["token"])
    )
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "consent_required"

    await _consent(client, me["token"], "device_location", True)
    stored = await client.put(
        f"/v1/devices/{serial}/location", json=place, headers=bearer(me["token"])
    )
    assert stored.status == 200
    read = await (
        await client.get(f"/v1/devices/{serial}/location", headers=bearer(me["token"]))
    ).json()
    assert (read["latitude"], read["longitude"]) == (48.137154, 11.576124)

    await _consent(client, me["token"], "device_location", False)
    async with services.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(DeviceLocation)) == 0
    gone = await client.get(f"/v1/devices/{serial}/location", headers=bearer(me["token"]))
    assert (await gone.json())["error"]["code"] == "consent_required"


async def test_phone_location_is_never_accepted_even_with_consent(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    me = await register(client, outbox, "pl@example.com")
    await _consent(client, me["token"], "device_location", True)
    camera = await register_device("ZC3-0000003")
    response = await client.post(
        "/v1/bindings",
        json={
            "serial": camera.serial,
            "verification_code": camera.code,
            "latitude": 48.1,
            "longitude": 11.5,
        },
        headers=bearer(me["token"]),
    )
    assert (await response.json())["error"]["code"] == "location_not_accepted"


async def test_consent_ledger_is_append_only(
    client: Client, outbox: OutboxSender, services: Services
) -> None:
    me = await register(client, outbox, "lg@example.com")
    for granted in (True, False, True):
        await _consent(client, me["token"], "event_screenshots", granted)
    async with services.db.session() as session:
        rows = (
            await session.execute(
                select(Consent.granted, Consent.method, Consent.policy_version)
                .where(Consent.purpose == "event_screenshots")
                .order_by(Consent.created_at)
            )
        ).all()
        assert [r.granted for r in rows] == [True, False, True]
        assert {r.method for r in rows} == {"app_settings"}
        assert await services.consents.allows(session, services_account(me), "event_screenshots")


def services_account(issued: dict[str, Any]) -> Any:
    """Return the account id of an issued session."""
    import uuid

    return uuid.UUID(issued["account_id"])


async def test_ops_statistics_are_aggregates_with_small_groups_suppressed(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    me = await register(client, outbox, "st@example.com")
    for n in range(5):
        await bind_with_code(client, services, me["token"], await register_device(f"ZC5-000000{n}"))
    await register_device("ZL5-0000001", "lock", with_code=False)
    ops = {"Authorization": f"Bearer {services.secrets.ops_token.get_secret_value()}"}
    assert (await client.get("/v1/ops/statistics", headers=bearer(me["token"]))).status == 401
    response = await client.get("/v1/ops/statistics", headers=ops)
    text = await response.text()
    body = await response.json()
    assert body["breakdowns"]["bound_by_model"]["groups"] == {"CAM-100": 5}
    assert body["breakdowns"]["registered_by_model"]["groups"] == {"CAM-100": 5}
    assert body["breakdowns"]["registered_by_model"]["suppressed_groups"] == 1
    assert "LOCK-2" not in text
    assert "ZC5-" not in text
    assert me["account_id"] not in text


async def test_material_policy_change_asks_every_account_to_consent_again(
    client: Client, outbox: OutboxSender, services: Services, monkeypatch: Any
) -> None:
    import datetime as dt

    from provisioning.domain import consent as consent_module

    me = await register(client, outbox, "rc@example.com")
    newer = consent_module.PolicyVersion("2027-03-01", dt.date(2027, 3, 1), material=True)
    monkeypatch.setattr(consent_module, "POLICY_VERSIONS", (*consent_module.POLICY_VERSIONS, newer))
    monkeypatch.setattr(services.consents, "policy", newer)
    before = await (await client.get("/v1/me/consents", headers=bearer(me["token"]))).json()
    assert before["needs_reconsent"] is True
    assert before["current_policy_version"] == "2027-03-01"
    after = await client.post(
        "/v1/me/consents",
        json={"purpose": "policy", "granted": True, "method": "reconsent_prompt"},
        headers=bearer(me["token"]),
    )
    body = await after.json()
    assert body["needs_reconsent"] is False
    assert body["accepted_policy_version"] == "2027-03-01"
