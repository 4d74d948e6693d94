"""De-identified statistics for ops: counts by group, small groups suppressed.

Only aggregates leave this module: no serial, account or time of a single
device. A group with fewer members than ``privacy.statistics_min_group`` is
left out (and counted as suppressed) so a rare model or firmware cannot point
at one household.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import ColumnElement

from provisioning.storage.devices import Binding, Device, Ownership
from provisioning.storage.engine import Database


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Counts per group, without the groups too small to show."""

    groups: dict[str, int]
    suppressed_groups: int


def suppress(counts: dict[str, int], min_group: int) -> Breakdown:
    """Drop groups smaller than ``min_group``."""
    shown = {key: n for key, n in counts.items() if n >= min_group}
    return Breakdown(shown, len(counts) - len(shown))


class StatisticsService:
    """Computes the ops statistics."""

    def __init__(self, *, db: Database, min_group: int) -> None:
        self.db = db
        self.min_group = min_group

    async def _count_by(
        self, column: ColumnElement[str] | InstrumentedAttribute[str], *, bound_only: bool = False
    ) -> dict[str, int]:
        query = select(column, func.count()).select_from(Device)
        if bound_only:
            query = query.join(Ownership, Ownership.serial == Device.serial)
        async with self.db.session() as session:
            rows = await session.execute(query.group_by(column))
        return {str(key): int(n) for key, n in rows.all()}

    async def compute(self) -> dict[str, Breakdown]:
        """Return every breakdown."""
        firmware = func.coalesce(Device.reported_firmware, Device.firmware_version)
        async with self.db.session() as session:
            outcomes = await session.execute(
                select(func.coalesce(Binding.reason, Binding.state), func.count()).group_by(
                    func.coalesce(Binding.reason, Binding.state)
                )
            )
            by_outcome = {str(k): int(n) for k, n in outcomes.all()}
        return {
            "registered_by_model": suppress(await self._count_by(Device.model), self.min_group),
            "bound_by_model": suppress(
                await self._count_by(Device.model, bound_only=True), self.min_group
            ),
            "bound_by_firmware": suppress(
                await self._count_by(firmware, bound_only=True), self.min_group
            ),
            "bindings_by_outcome": suppress(by_outcome, self.min_group),
        }
