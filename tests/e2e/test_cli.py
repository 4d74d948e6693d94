"""Must show 5: ``zanuo demo`` and ``zanuo simulate …`` run as a user runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.mqtt.broker import free_local_port

CLI_TIMEOUT_S = 150.0


def cli_env(data_dir: Path) -> dict[str, str]:
    """Return the environment of a ``zanuo`` process on ``data_dir`` with free ports."""
    return {
        **os.environ,
        "ZANUO_PATHS__DATA_DIR": str(data_dir),
        "ZANUO_SERVER__PORT": str(free_local_port()),
        "ZANUO_MQTT__MANAGED_PORT": str(free_local_port()),
    }


async def zanuo(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run ``zanuo ARGS`` to completion; return its status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "provisioning.cli",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def zanuo_serve(env: dict[str, str], cwd: Path) -> AsyncIterator[str]:
    """Run ``zanuo serve`` until the block ends; yield its URL once its bridge is connected."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "provisioning.cli",
        "serve",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{env['ZANUO_SERVER__PORT']}"
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            while True:
                assert process.returncode is None, "zanuo serve exited"
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/metrics") as response:
                        if "zanuo_bridge_connected 1.0" in await response.text():
                            break
                await asyncio.sleep(0.2)
        yield url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()


async def test_zanuo_demo_binds_a_camera_a_hub_and_a_lock_and_shows_their_events(
    tmp_path: Path,
) -> None:
    configured = tmp_path / "configured-data"
    status, out, err = await zanuo("demo", env=cli_env(configured), cwd=tmp_path)
    assert status == 0, err[-2000:]
    assert "over SoftAP (a wrong Wi-Fi password first)" in out
    assert "Wi-Fi attempt 1 failed (AuthError)" in out
    assert "runs the BLE agent" in out
    assert "bound, parent hub ZH1-" in out
    assert "feed: motion from ZC1-" in out
    assert "feed: unlock (match) from ZL1-" in out
    # The service ran on a fresh temporary data directory, not the configured one.
    assert "data in /" in out
    assert not (configured / "zanuo.db").exists()


@pytest.mark.parametrize("link", ["softap", "ble"])
async def test_zanuo_simulate_camera_and_fleet_against_a_running_service(
    link: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)
    async with zanuo_serve(env, tmp_path) as url:
        common = ["--api", url, "--data-dir", str(data_dir), "--flash-dir", str(tmp_path / "flash")]
        status, out, err = await zanuo(
            "simulate", "camera", *common, "--link", link, env=env, cwd=tmp_path
        )
        assert status == 0, err[-2000:]
        assert "is online over MQTT" in out
        assert "reached" in out

        if link == "ble":
            return  # the fleet runs once
        report_file = tmp_path / "fleet.json"
        status, out, err = await zanuo(
            "simulate",
            "fleet",
            *common,
            "-n",
            "8",
            "--rate",
            "40",
            "--duration",
            "0.5",
            "--concurrency",
            "4",
            "--hubs",
            "1",
            "--locks-per-hub",
            "2",
            "--json",
            str(report_file),
            env=env,
            cwd=tmp_path,
        )
        assert status == 0, err[-2000:]
        assert "fleet report" in out
        assert "bound 11/11" in err  # the progress line: 8 cameras, a hub and its 2 locks
    report = json.loads(report_file.read_text())
    assert (report["bound"], report["online"], report["failures"]) == (11, 11, {})
    assert report["events_acked"] == report["events_sent"] == 20
    assert report["events_delivered"] == report["events_checked"] == 20


async def test_zanuo_simulate_lock_pairs_it_through_a_hub_over_the_api(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)
    async with zanuo_serve(env, tmp_path) as url:
        status, out, err = await zanuo(
            "simulate",
            "lock",
            "--api",
            url,
            "--data-dir",
            str(data_dir),
            "--flash-dir",
            str(tmp_path / "flash"),
            env=env,
            cwd=tmp_path,
        )
    assert status == 0, err[-2000:]
    assert "bound with the pairing token" in out
    assert "bound through hub" in out
