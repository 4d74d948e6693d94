"""The fleet generator against the real stack, with a small N."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from provisioning.notify.delivery import OutboxSender
from simulators.app import outbox_code_reader
from simulators.fleet import FleetPlan, run_fleet
from simulators.fleet_report import format_report, percentile
from tests.e2e.conftest import PHONE_LOCATION, Manufacture, Stack


@pytest.mark.parametrize("link", ["softap", "local"])
async def test_fleet_binds_every_camera_and_every_sampled_event_arrives(
    link: str, stack: Stack, manufacture: Manufacture, outbox: OutboxSender
) -> None:
    folders = [await manufacture(f"ZF1-{link[:2].upper()}-{i:04d}") for i in range(6)]
    progress = io.StringIO()
    stats = await run_fleet(
        FleetPlan(
            api_url=stack.api_url,
            broker=stack.broker_address,
            flash_folders=folders,
            read_code=outbox_code_reader(outbox.path),
            location=PHONE_LOCATION,
            events_per_second=40,
            event_seconds=0.5,
            concurrency=3,
            accounts=2,
            link="softap" if link == "softap" else "local",
        ),
        progress=progress,
    )
    report = stats.report()
    assert report["failures"] == {}
    assert (report["bound"], report["online"]) == (6, 6)
    assert report["events_acked"] == report["events_sent"] == 20
    assert report["events_delivered"] == report["events_checked"] == 20
    assert "bound 6/6" in progress.getvalue()
    assert "events_per_second" in format_report(report)


def test_percentiles_use_the_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert [percentile(samples, p) for p in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert percentile([], 50) == 0.0


async def test_fleet_counts_a_broken_device_by_reason_and_carries_on(
    stack: Stack, manufacture: Manufacture, outbox: OutboxSender, tmp_path: Path
) -> None:
    broken = tmp_path / "ZF1-BROKEN-0001"
    broken.mkdir()  # no certificate, no key: this flash cannot boot
    folders = [await manufacture("ZF1-OK-0001"), broken]
    stats = await run_fleet(
        FleetPlan(
            api_url=stack.api_url,
            broker=stack.broker_address,
            flash_folders=folders,
            read_code=outbox_code_reader(outbox.path),
            location=PHONE_LOCATION,
            events_per_second=0,
            link="local",
        )
    )
    report = stats.report()
    assert (report["bound"], report["online"]) == (1, 1)
    assert report["failures"] == {"boot:FlashError": 1}
