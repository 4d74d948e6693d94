"""`zanuo serve` on its embedded defaults: starts, serves, stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_serve_on_defaults_answers_health_and_openapi(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "ZANUO_SERVER__PORT": str(port),
        "ZANUO_PATHS__DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("ZANUO_DATABASE__URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "provisioning.cli",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.returncode is None, "zanuo serve exited early"
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("zanuo serve did not come up")
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200
            async with http.get(f"http://127.0.0.1:{port}/openapi.json") as response:
                paths = (await response.json())["paths"]
                assert "/v1/auth/register" in paths
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, output.decode()
    assert (tmp_path / "data" / "zanuo.db").exists()
