"""The phone app simulator against the real API and a protocomm device on a real local link."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.errors import (
    DeviceBoundToOther,
    DeviceNotFound,
    LocationNotAccepted,
    TooManyAttempts,
    VerificationCodeInvalid,
)
from provisioning.protocomm import BindRequest, ProtocommHttpServer, ProvisioningDevice, Sec2Config
from provisioning.security.codes import LabelPayload, format_label_payload, parse_label_payload
from provisioning.services import Services
from simulators.app import (
    NetworkNotFound,
    PhoneApp,
    SoftApLink,
    UnexpectedApiError,
    WifiChoice,
    WrongWifiPassword,
    api_error,
)
from simulators.wifi_world import WifiWorld
from tests.e2e.conftest import (
    HOME_PASSWORD,
    HOME_SSID,
    WRONG_PASSWORD,
    PhoneFactory,
    RequestLog,
)
from tests.fixtures.devices import FactoryDevice, RegisterDevice

BROKER = ("127.0.0.1", 8883)


class _TokenKeeper:
    """A bare device's zn-bind side: keeps the token it was handed."""

    def __init__(self, serial: str) -> None:
        self._serial = serial
        self.received: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)

    @property
    def serial(self) -> str:
        return self._serial

    def signing_key(self) -> ec.EllipticCurvePrivateKey | None:
        return None

    async def accept_bind(self, request: BindRequest) -> None:
        self.received.put_nowait(request.token)


@asynccontextmanager
async def bare_device(
    factory: FactoryDevice, world: WifiWorld, services: Services
) -> AsyncIterator[str]:
    """Serve a protocomm device over SoftAP; confirm its binding once it joined Wi-Fi."""
    assert factory.code is not None
    keeper = _TokenKeeper(factory.serial)
    station = world.station(factory.serial)
    device = ProvisioningDevice(
        Sec2Config.from_password(factory.code), station, bind_handler=keeper, device_type="camera"
    )

    async def confirm_when_online() -> None:
        token = await keeper.received.get()
        while station.connection is None:  # noqa: ASYNC110 (the station is a plain object)
            await asyncio.sleep(0.01)
        await services.binding.confirm(factory.serial, token.decode())

    async with device, ProtocommHttpServer(device.protocomm) as server, asyncio.TaskGroup() as tg:
        task = tg.create_task(confirm_when_online())
        try:
            yield server.url
        finally:
            task.cancel()


async def test_app_binds_a_device_after_a_wrong_wifi_password_in_the_same_session(
    phone: PhoneApp, register_device: RegisterDevice, wifi_world: WifiWorld, services: Services
) -> None:
    camera = await register_device("ZC1-APP0001")
    label = format_label_payload(camera.serial, camera.code, "CAM-100")
    async with bare_device(camera, wifi_world, services) as url, asyncio.timeout(30):
        bound = await phone.set_up_camera(
            label,
            SoftApLink(url),
            WifiChoice(HOME_SSID, [WRONG_PASSWORD, HOME_PASSWORD]),
            broker=BROKER,
        )
    assert bound.serial == camera.serial
    assert bound.wifi_attempts == 2
    assert bound.connection is not None
    assert bound.connection.ssid == HOME_SSID.encode()
    assert (await phone.device(camera.serial))["relation"] == "mine"
    assert wifi_world.station(camera.serial).name == camera.serial


async def test_app_reports_wrong_wifi_password_and_missing_network_as_typed_errors(
    phone: PhoneApp, register_device: RegisterDevice, wifi_world: WifiWorld, services: Services
) -> None:
    camera = await register_device("ZC1-APP0002")
    label = format_label_payload(camera.serial, camera.code, "CAM-100")
    async with bare_device(camera, wifi_world, services) as url, asyncio.timeout(30):
        with pytest.raises(WrongWifiPassword) as wrong:
            await phone.set_up_camera(
                label, SoftApLink(url), WifiChoice(HOME_SSID, [WRONG_PASSWORD]), broker=BROKER
            )
        assert wrong.value.attempts == 1
        assert WRONG_PASSWORD not in str(wrong.value)
        with pytest.raises(NetworkNotFound):
            await phone.set_up_camera(
                label, SoftApLink(url), WifiChoice("nowhere", [HOME_PASSWORD]), broker=BROKER
            )


async def test_app_rebuilds_the_servers_typed_errors(
    phone_factory: PhoneFactory,
    register_device: RegisterDevice,
    wifi_world: WifiWorld,
    services: Services,
) -> None:
    owner = await phone_factory("first@example.com")
    other = await phone_factory("second@example.com")
    camera = await register_device("ZC1-APP0003")
    label = format_label_payload(camera.serial, camera.code, "CAM-100")
    wrong = format_label_payload(
        camera.serial, "AAAAAA" if camera.code != "AAAAAA" else "BBBBBB", "CAM-100"
    )
    async with bare_device(camera, wifi_world, services) as url, asyncio.timeout(30):
        with pytest.raises(VerificationCodeInvalid):
            await owner.set_up_camera(
                wrong, SoftApLink(url), WifiChoice(HOME_SSID, [HOME_PASSWORD]), broker=BROKER
            )
        await owner.set_up_camera(
            label, SoftApLink(url), WifiChoice(HOME_SSID, [HOME_PASSWORD]), broker=BROKER
        )
    with pytest.raises(DeviceBoundToOther):
        await other.start_binding(parse_label_payload(label))
    with pytest.raises(DeviceNotFound):  # another account's device is not revealed
        await other.unbind(camera.serial)
    with pytest.raises(DeviceNotFound):
        await owner.set_up_camera(
            format_label_payload("ZC1-NOSUCH", "ABCDEF", "CAM-100"),
            SoftApLink("http://127.0.0.1:1"),
            WifiChoice(HOME_SSID, [HOME_PASSWORD]),
            broker=BROKER,
        )
    with pytest.raises(LocationNotAccepted):
        await owner.request(
            "POST",
            "/v1/bindings",
            json={"serial": camera.serial, "verification_code": "ABCDEF", "location": {"lat": 1}},
        )


async def test_wrong_codes_lock_the_app_out_with_a_retry_after(
    phone: PhoneApp, register_device: RegisterDevice
) -> None:
    camera = await register_device("ZC1-APP0004")
    wrong = "AAAAAA" if camera.code != "AAAAAA" else "BBBBBB"
    outcomes: list[Exception] = []
    while not outcomes or isinstance(outcomes[-1], VerificationCodeInvalid):
        assert len(outcomes) < 20, "wrong codes never locked the account out"
        try:
            await phone.start_binding(LabelPayload(camera.serial, wrong, "CAM-100"))
        except (VerificationCodeInvalid, TooManyAttempts) as err:
            outcomes.append(err)
    locked = outcomes[-1]
    assert isinstance(locked, TooManyAttempts)
    assert locked.retry_after >= 1


def test_unknown_error_codes_stay_readable() -> None:
    error = api_error(
        418, {"error": {"code": "teapot", "message": "short and stout", "details": {}}}
    )
    assert isinstance(error, UnexpectedApiError)
    assert (error.status_seen, error.code_seen, error.message) == (418, "teapot", "short and stout")
    assert isinstance(api_error(502, None), UnexpectedApiError)


async def test_the_phone_location_never_reaches_the_backend(
    phone: PhoneApp,
    register_device: RegisterDevice,
    wifi_world: WifiWorld,
    services: Services,
    request_log: RequestLog,
) -> None:
    camera = await register_device("ZC1-APP0005")
    label = format_label_payload(camera.serial, camera.code, "CAM-100")
    async with bare_device(camera, wifi_world, services) as url, asyncio.timeout(30):
        await phone.set_up_camera(
            label,
            SoftApLink(url),
            WifiChoice(HOME_SSID, [WRONG_PASSWORD, HOME_PASSWORD]),
            broker=BROKER,
        )
    assert request_log.requests, "the log recorded nothing: the canary check would be vacuous"
    for needle in (*phone.location.canary_strings(), HOME_PASSWORD, WRONG_PASSWORD):
        assert request_log.containing(needle) == []
