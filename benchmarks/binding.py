"""Measure binding: bind requests/s over HTTP and device confirmations/s.

Run: ``.venv/bin/python benchmarks/binding.py [--devices 2000] [--concurrency 16]``

The service runs in-process on a fresh SQLite data dir (the embedded default)
behind a real loopback HTTP socket. Each bind request is the full path an app
takes: bearer authentication, lockout checks, the constant-time label-code
check, a pending binding with a hashed one-time token, the operation log.
Each confirmation is the domain call the MQTT bridge makes when a device
presents its token (ownership decided by the database).

Baseline, in the same run and through the same client: a bare aiohttp handler
that parses the same JSON body and answers 201 with a JSON document. The
printed ratios (service / bare) are the figures to compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.app import create_app
from provisioning.clock import SystemClock
from provisioning.config import load_secrets, load_settings
from provisioning.security import ca as device_ca
from provisioning.security.codes import generate_label_code, label_code_digest
from provisioning.security.keys import derive_subkey
from provisioning.security.tokens import hash_token, new_token
from provisioning.services import Services, open_services
from provisioning.storage.devices import Device
from provisioning.storage.models import Account, Session

NO_PASSWORD = "!"  # not an Argon2 hash: these accounts cannot sign in with a password


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # the bound port is only known after start
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"http://127.0.0.1:{port}"


async def _drive(
    jobs: list[Callable[[], Awaitable[None]]], concurrency: int
) -> tuple[float, list[float]]:
    queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            started = time.perf_counter()
            await job()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return time.perf_counter() - started, latencies


def _report(name: str, count: int, elapsed: float, latencies: list[float]) -> float:
    rate = count / elapsed
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<28} {rate:9.0f}/s   p50 {cuts[49] * 1000:6.2f} ms   p99 {cuts[98] * 1000:6.2f} ms"
    )
    return rate


async def bare_baseline(http: aiohttp.ClientSession, count: int, concurrency: int) -> float:
    """Measure a bare aiohttp handler that parses JSON and answers 201."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {"binding_id": str(uuid.uuid4()), "serial": body["serial"]}, status=201
        )

    app = web.Application()
    app.router.add_post("/v1/bindings", handler)
    runner, base = await _serve(app)
    try:

        async def one() -> None:
            async with http.post(
                f"{base}/v1/bindings", json={"serial": "ZB1-0000001", "verification_code": "ABCDEF"}
            ) as r:
                assert r.status == 201
                await r.read()

        elapsed, latencies = await _drive([one] * count, concurrency)
    finally:
        await runner.cleanup()
    return _report("bare aiohttp handler", count, elapsed, latencies)


async def main(devices: int, concurrency: int) -> None:
    """Run the benchmark and print its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        settings = load_settings(environ={"ZANUO_PATHS__DATA_DIR": str(data)})
        secrets = load_secrets(settings, environ={}, generate=True)
        clock = SystemClock()
        async with open_services(settings, secrets, migrate=True) as services:
            # Factory: one CA, real certificates, label codes stored as keyed hashes.
            authority = device_ca.init_ca(
                data / "ca", secrets.ca_passphrase.get_secret_value(), clock
            )
            public = ec.generate_private_key(ec.SECP256R1()).public_key()
            label_key = derive_subkey(secrets.pepper.get_secret_value(), "label-codes")
            codes: dict[str, str] = {}
            now = clock.now()
            async with services.db.session() as session:
                for n in range(devices):
                    serial = f"ZB1-{n:07d}"
                    codes[serial] = generate_label_code()
                    cert = device_ca.issue_device_certificate(authority, serial, public, clock)
                    session.add(
                        Device(
                            serial=serial,
                            model="CAM-100",
                            device_type="camera",
                            capabilities=["wifi"],
                            label_code_digest=label_code_digest(label_key, serial, codes[serial]),
                            firmware_version="1.0.0",
                            certificate_pem=device_ca.certificate_pem(cert).decode(),
                            certificate_fingerprint=device_ca.certificate_fingerprint(cert),
                            certificate_serial=format(cert.serial_number, "x"),
                            import_digest=hashlib.sha256(serial.encode()).hexdigest(),
                            imported_at=now,
                        )
                    )
                # Accounts with ready sessions (sign-in is not what is measured).
                tokens: list[str] = []
                for _ in range(concurrency * 4):
                    account_id = uuid.uuid4()
                    token = new_token("zs")
                    tokens.append(token)
                    session.add(
                        Account(
                            id=account_id, password_hash=NO_PASSWORD, created_at=now, updated_at=now
                        )
                    )
                    await session.flush()
                    await services.vault.create_key(session, account_id, now)
                    session.add(
                        Session(
                            id=uuid.uuid4(),
                            account_id=account_id,
                            token_hash=hash_token(token),
                            client_type="other",
                            client_version="1",
                            device_model="bench",
                            os_version="1",
                            created_at=now,
                            last_used_at=now,
                            expires_at=now.replace(year=now.year + 1),
                        )
                    )
                await session.commit()

            @contextlib.asynccontextmanager
            async def given() -> AsyncIterator[Services]:
                yield services

            runner, base = await _serve(create_app(settings, secrets, services=given))
            issued: list[tuple[str, str]] = []
            try:
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=concurrency)
                ) as http:
                    print(f"binding: {devices} devices, concurrency {concurrency}, SQLite (WAL)")
                    baseline = await bare_baseline(http, devices, concurrency)

                    def bind_job(n: int, serial: str) -> Callable[[], Awaitable[None]]:
                        async def job() -> None:
                            headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
                            body = {"serial": serial, "verification_code": codes[serial]}
                            async with http.post(
                                f"{base}/v1/bindings", json=body, headers=headers
                            ) as r:
                                assert r.status == 201, await r.text()
                                issued.append((serial, (await r.json())["bind_token"]))

                        return job

                    elapsed, lat = await _drive(
                        [bind_job(n, s) for n, s in enumerate(codes)], concurrency
                    )
                    bind_rate = _report("bind requests (HTTP)", devices, elapsed, lat)

                    def confirm_job(serial: str, token: str) -> Callable[[], Awaitable[None]]:
                        async def job() -> None:
                            result = await services.binding.confirm(serial, token)
                            assert result.bound, result.reason

                        return job

                    elapsed, lat = await _drive([confirm_job(s, t) for s, t in issued], concurrency)
                    confirm_rate = _report("confirmations (domain)", devices, elapsed, lat)
            finally:
                await runner.cleanup()
        print(f"ratio bind/bare           {bind_rate / baseline:9.3f}")
        print(f"ratio confirm/bare        {confirm_rate / baseline:9.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.devices, args.concurrency))
