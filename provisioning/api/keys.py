"""Typed application keys."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from provisioning.services import Services

SERVICES_KEY = web.AppKey("services", Services)
OPENAPI_KEY = web.AppKey("openapi", dict[str, Any])
