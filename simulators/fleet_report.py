"""What a fleet run measures: counters, latency samples, the progress line and the final report."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self, TextIO

PERCENTILES = (50.0, 90.0, 99.0)


def percentile(samples: Sequence[float], pct: float) -> float:
    """Return the ``pct`` percentile of ``samples`` (nearest rank; 0 for no samples)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def failure_reason(error: BaseException) -> str:
    """Return a short, secret-free label for a failure: the stable code or the class name."""
    code = getattr(error, "code", None)
    if isinstance(code, str) and code:
        return code
    if isinstance(error, TimeoutError):
        return "timeout"
    return type(error).__name__


@dataclasses.dataclass(slots=True)
class FleetStats:
    """Counters and latency samples of one run (one event loop, so no locking)."""

    requested: int
    bound: int = 0
    online: int = 0
    events_sent: int = 0
    events_acked: int = 0
    events_delivered: int | None = None
    events_checked: int = 0
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    bind_latencies: list[float] = dataclasses.field(default_factory=list)
    event_latencies: list[float] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.perf_counter)
    bind_finished: float | None = None
    events_started: float | None = None
    events_finished: float | None = None

    def failed(self, stage: str, error: BaseException) -> None:
        """Count one failure under ``stage:reason``."""
        self.failures[f"{stage}:{failure_reason(error)}"] += 1

    @property
    def bind_seconds(self) -> float:
        """Return the wall time of the bring-up phase."""
        end = self.bind_finished or time.perf_counter()
        return max(end - self.started, 1e-9)

    @property
    def event_seconds(self) -> float:
        """Return the wall time of the event phase."""
        if self.events_started is None:
            return 0.0
        end = self.events_finished or time.perf_counter()
        return max(end - self.events_started, 1e-9)

    def progress_line(self) -> str:
        """Return the one-line progress display."""
        line = (
            f"bound {self.bound}/{self.requested} "
            f"({self.bound / self.bind_seconds:,.1f}/s) online {self.online}"
        )
        if self.events_started is not None:
            line += (
                f" · events {self.events_acked}/{self.events_sent} "
                f"({self.events_acked / max(self.event_seconds, 1e-9):,.1f}/s)"
            )
        failed = sum(self.failures.values())
        if failed:
            line += f" · failed {failed}"
        return line

    def report(self) -> dict[str, object]:
        """Return the final report as plain data (JSON-ready)."""
        return {
            "devices": self.requested,
            "bound": self.bound,
            "online": self.online,
            "bind_seconds": round(self.bind_seconds, 3),
            "bound_per_second": round(self.bound / self.bind_seconds, 2),
            "bind_latency_ms": {
                f"p{p:g}": round(1000 * percentile(self.bind_latencies, p), 1) for p in PERCENTILES
            }
            | {"max": round(1000 * max(self.bind_latencies, default=0.0), 1)},
            "events_sent": self.events_sent,
            "events_acked": self.events_acked,
            "event_seconds": round(self.event_seconds, 3),
            "events_per_second": round(self.events_acked / self.event_seconds, 2)
            if self.event_seconds
            else 0.0,
            "event_ack_latency_ms": {
                f"p{p:g}": round(1000 * percentile(self.event_latencies, p), 1) for p in PERCENTILES
            }
            | {"max": round(1000 * max(self.event_latencies, default=0.0), 1)},
            "events_delivered": self.events_delivered,
            "events_checked": self.events_checked,
            "failures": dict(sorted(self.failures.items())),
        }


def format_report(report: dict[str, object]) -> str:
    """Return the report as aligned text for a person."""
    lines = ["fleet report"]
    for key, value in report.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
            lines.append(f"  {key:<22} {inner}")
        else:
            lines.append(f"  {key:<22} {value}")
    return "\n".join(lines)


class ProgressDisplay:
    """Redraws :meth:`FleetStats.progress_line` on ``stream`` every ``interval`` seconds."""

    def __init__(self, stats: FleetStats, stream: TextIO, *, interval: float = 0.5) -> None:
        self._stats = stats
        self._stream = stream
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._tty = stream.isatty()

    def draw(self) -> None:
        """Draw the current line (``\\r``-redrawn on a terminal, one line per draw otherwise)."""
        line = self._stats.progress_line()
        self._stream.write(f"\r\x1b[K{line}" if self._tty else f"{line}\n")
        self._stream.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.draw()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="fleet-progress")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.draw()
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
