"""A provisioning device: protocomm with the Wi-Fi endpoints and, optionally, ``zn-bind``."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from types import TracebackType
from typing import Self

from provisioning.protocomm.bind import BindEndpoint, BindHandler
from provisioning.protocomm.device import DEFAULT_MAX_SESSIONS, EndpointHandler, ProtocommDevice
from provisioning.protocomm.endpoints import (
    CAP_NO_POP,
    CAP_NO_SEC,
    CAP_WIFI_SCAN,
    PROV_CONFIG,
    PROV_CTRL,
    PROV_SCAN,
    ZN_BIND,
    VersionInfo,
)
from provisioning.protocomm.security import Sec0Config, Sec1Config, SecurityConfig
from provisioning.protocomm.wifi import WifiProvisioner, WifiStation


def capabilities_for(security: SecurityConfig) -> tuple[str, ...]:
    """Return the ``proto-ver`` capabilities implied by the security configuration."""
    caps = [CAP_WIFI_SCAN]
    if isinstance(security, Sec0Config):
        caps.append(CAP_NO_SEC)
    if isinstance(security, Sec1Config) and not security.pop:
        caps.append(CAP_NO_POP)
    return tuple(caps)


class ProvisioningDevice:
    """The device side of local provisioning; run it with ``async with``.

    Transports take :attr:`protocomm`; simulators read :attr:`wifi` for the
    station state and pass a :class:`BindHandler` to take part in binding.
    """

    def __init__(
        self,
        security: SecurityConfig,
        station: WifiStation,
        *,
        bind_handler: BindHandler | None = None,
        device_type: str = "device",
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        on_reprovision: Callable[[], None] | None = None,
        executor: Executor | None = None,
    ) -> None:
        version = VersionInfo(
            sec_ver=security.version,
            sec_patch_ver=security.patch,
            capabilities=capabilities_for(security),
            device_type=device_type,
        )
        self.protocomm = ProtocommDevice(
            security, version=version, max_sessions=max_sessions, executor=executor
        )
        self.wifi = WifiProvisioner(station, on_reprovision=on_reprovision)
        self.protocomm.add_endpoint(PROV_SCAN, self.wifi.handle_scan)
        self.protocomm.add_endpoint(PROV_CTRL, self.wifi.handle_ctrl)
        self.protocomm.add_endpoint(PROV_CONFIG, self.wifi.handle_config)
        if bind_handler is not None:
            self.protocomm.add_endpoint(ZN_BIND, BindEndpoint(bind_handler))

    def add_endpoint(
        self, name: str, handler: EndpointHandler, *, uuid16: int | None = None
    ) -> None:
        """Register a custom encrypted endpoint."""
        self.protocomm.add_endpoint(name, handler, uuid16=uuid16)

    async def __aenter__(self) -> Self:
        await self.wifi.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.wifi.__aexit__(exc_type, exc, tb)
