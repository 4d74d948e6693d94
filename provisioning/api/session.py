"""Who is calling: the authenticated principal and the source address."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from provisioning.api.keys import SERVICES_KEY
from provisioning.api.routing import PRINCIPAL_KEY
from provisioning.domain.accounts import Principal
from provisioning.errors import DeviceNotFound, Unauthenticated
from provisioning.security.codes import SERIAL_PATTERN


async def authenticate_user(request: web.Request, token: str) -> Principal:
    """Resolve an app session token."""
    return await request.app[SERVICES_KEY].accounts.authenticate(token)


def principal(request: web.Request) -> Principal:
    """Return the authenticated caller of a user endpoint."""
    value = request.get(PRINCIPAL_KEY)
    if not isinstance(value, Principal):
        raise Unauthenticated()
    return value


def source_address(request: web.Request) -> str:
    """Return the client's address, honouring X-Forwarded-For only from trusted proxies."""
    remote = request.remote or "unknown"
    trusted = request.app[SERVICES_KEY].settings.server.trusted_proxies
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and remote in trusted:
        candidate = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return remote
    return remote


def path_serial(request: web.Request) -> str:
    """Return the ``{serial}`` path parameter; a malformed one is an unknown device."""
    serial = request.match_info["serial"]
    if not SERIAL_PATTERN.fullmatch(serial):
        raise DeviceNotFound(serial=serial[:40])
    return serial
