"""Ops-only reads: de-identified statistics."""

from __future__ import annotations

from aiohttp import web

from provisioning.api.keys import SERVICES_KEY
from provisioning.api.models import ResponseModel
from provisioning.api.routing import Routes
from provisioning.domain.statistics import StatisticsService

routes = Routes(tag="ops")


class BreakdownOut(ResponseModel):
    groups: dict[str, int]
    suppressed_groups: int


class StatisticsOut(ResponseModel):
    min_group: int
    breakdowns: dict[str, BreakdownOut]


@routes.route(
    "GET",
    "/v1/ops/statistics",
    summary="De-identified counts by model, firmware and binding outcome",
    response=StatisticsOut,
    auth="ops",
)
async def statistics(request: web.Request) -> StatisticsOut:
    """Return aggregates with small groups suppressed."""
    services = request.app[SERVICES_KEY]
    stats = StatisticsService(
        db=services.db, min_group=services.settings.privacy.statistics_min_group
    )
    computed = await stats.compute()
    return StatisticsOut(
        min_group=stats.min_group,
        breakdowns={
            name: BreakdownOut(groups=b.groups, suppressed_groups=b.suppressed_groups)
            for name, b in computed.items()
        },
    )
