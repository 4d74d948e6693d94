"""Device-side logs at DEBUG never carry a label code, token, Wi-Fi passphrase or template."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest

from provisioning.domain.commands import WifiChanges, WifiCredentials
from provisioning.protocomm.bumble_backend import VirtualBleLink
from simulators.hub import Hub
from simulators.lock import Lock
from tests.simulators.conftest import (
    FAST_AGENT,
    FAST_SESSION,
    HOME_PASSWORD,
    HOME_SSID,
    OFFICE_PASSWORD,
    OFFICE_SSID,
    PUBLIC_BROKER,
    WAIT_S,
    Cloud,
    broker_of,
    eventually,
    softap_client,
)


async def test_device_logs_hold_no_code_token_passphrase_or_template(
    cloud: Cloud, ble_link: VirtualBleLink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    services, principal = cloud.services, cloud.owner.principal
    template = bytes(range(7, 71))
    hub = Hub(
        await cloud.manufacture("ZH1-LOGS-0001", "hub"),
        cloud.world,
        ble_link=ble_link,
        clock=cloud.clock,
        broker=broker_of(cloud.broker),
        session_options=FAST_SESSION,
        agent_options=FAST_AGENT,
    )
    lock = Lock(await cloud.manufacture("ZL1-LOGS-0001", "lock"), ble_link, clock=cloud.clock)
    async with hub, lock:
        issued = await services.binding.bind_with_code(
            principal, hub.serial, hub.label_code or "", "127.0.0.1"
        )
        async with softap_client(hub) as client, asyncio.timeout(WAIT_S):
            await client.bind(issued.bind_token.encode(), *PUBLIC_BROKER)
            await client.provision_wifi(HOME_SSID, HOME_PASSWORD)
            await hub.wait_bound()
            await hub.wait_online()
        await eventually(lambda: hub.agent is not None)
        await WifiChanges(services.devices, cloud.bridge, services.metrics).send_plain(
            principal,
            hub.serial,
            WifiCredentials(ssid=OFFICE_SSID.decode(), passphrase=OFFICE_PASSWORD.decode()),
        )
        await lock.press_button()
        pairing = await services.binding.create_pairing_token(principal)
        await hub.pair(pairing.token, lock.ble_address)
        lock.enroll_fingerprint(template)
        assert await lock.touch(template)

        def on_office() -> bool:
            connection = hub.wifi_connection
            return connection is not None and connection.ssid == OFFICE_SSID

        await eventually(on_office)
    secrets = {
        "label code": hub.label_code or "",
        "bind token": issued.bind_token,
        "pairing token": pairing.token,
        "home passphrase": HOME_PASSWORD.decode(),
        "office passphrase": OFFICE_PASSWORD.decode(),
        "template (hex)": template.hex(),
        "template (base64)": base64.b64encode(template).decode(),
    }
    text = caplog.text
    assert "zn-bind accepted" in text  # the flows ran and were logged
    assert [name for name, value in secrets.items() if value in text] == []
