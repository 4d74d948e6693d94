"""Measure protocomm handshakes: sec1 and sec2 sessions/s for one device, and event-loop stall.

Run: ``.venv/bin/python benchmarks/handshake.py [--seconds 5] [--concurrency 4]``

Each scheme runs twice: with the handshake maths in the default thread pool
(Python's big-int ``pow`` holds the GIL, so the loop still stalls for the
length of one exponentiation) and in a process pool (the loop stays free).

Clients talk to the device in-process (no sockets), so the figures are the
cost of the security work plus the state machine. A ticker task sleeps 1 ms at
a time and records how late it wakes: that lag is how long the loop was
stalled, and the worst figure per handshake is what a transport would feel.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass

from provisioning.protocomm.device import ProtocommDevice
from provisioning.protocomm.endpoints import PROV_SESSION
from provisioning.protocomm.local import LocalTransport
from provisioning.protocomm.security import (
    ClientSecurity,
    Sec1Client,
    Sec1Config,
    Sec2Client,
    Sec2Config,
    SecurityConfig,
)

TICK = 0.001


@dataclass(frozen=True, slots=True)
class Result:
    """One scheme's figures."""

    name: str
    sessions: int
    seconds: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    stall_per_session_ms: float

    def line(self) -> str:
        """Format as one report line."""
        return (
            f"{self.name}: {self.sessions / self.seconds:8.1f} sessions/s "
            f"({self.sessions} in {self.seconds:.1f} s); "
            f"loop stall {self.stall_per_session_ms:.2f} ms "
            f"per handshake; tick lag p50 {self.lag_p50_ms:.2f} / p99 {self.lag_p99_ms:.2f} / "
            f"max {self.lag_max_ms:.2f} ms"
        )


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(TICK)
        lags.append(max(0.0, loop.time() - before - TICK))


async def _client_loop(
    device: ProtocommDevice, security: ClientSecurity, deadline: float, counter: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        async with LocalTransport(device) as transport:

            async def send(data: bytes, transport: LocalTransport = transport) -> bytes:
                return await transport.request(PROV_SESSION, data)

            await security.handshake(send)
        counter[0] += 1


async def measure(
    name: str,
    config: SecurityConfig,
    security: ClientSecurity,
    seconds: float,
    concurrency: int,
    executor: Executor | None,
) -> Result:
    """Run handshakes for ``seconds`` with ``concurrency`` clients and report."""
    device = ProtocommDevice(config, max_sessions=concurrency, executor=executor)
    lags: list[float] = []
    stop = asyncio.Event()
    counter = [0]
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_ticker(lags, stop))
        async with asyncio.TaskGroup() as clients:
            for _ in range(concurrency):
                clients.create_task(_client_loop(device, security, start + seconds, counter))
        stop.set()
    elapsed = loop.time() - start
    ordered = sorted(lags) or [0.0]
    return Result(
        name,
        counter[0],
        elapsed,
        statistics.median(ordered) * 1000,
        ordered[int(0.99 * (len(ordered) - 1))] * 1000,
        ordered[-1] * 1000,
        sum(lags) * 1000 / max(1, counter[0]),
    )


def _warm_up() -> None:
    """Give every pool worker its imports before the clock starts."""


async def main(seconds: float, concurrency: int) -> None:
    """Benchmark sec1 and sec2 with thread and process executors and print the figures."""
    pop = b"abcd1234"
    sec2 = Sec2Config.from_password("ABCDEF")
    print(f"one device, {concurrency} concurrent in-process clients, {seconds:.0f} s per run")
    with ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")) as pool:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(pool, _warm_up) for _ in range(8)))
        for label, executor in (("threads", None), ("processes", pool)):
            cases: list[tuple[str, SecurityConfig, ClientSecurity]] = [
                ("sec1", Sec1Config(pop=pop), Sec1Client(pop)),
                ("sec2", sec2, Sec2Client("ABCDEF", executor=executor)),
            ]
            for name, config, client in cases:
                result = await measure(
                    f"{name} ({label})", config, client, seconds, concurrency, executor
                )
                print(result.line())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency))
