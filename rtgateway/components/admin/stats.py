"""``admin.stats``: the gateway's figures, sampled into a bounded ring.

Every ``[admin] stats_interval_s`` the sampler reads cumulative counters
(messages in and out, the call latency histogram, resume attempts and
resumes, each zone's tick time histogram) and the number of open
connections, keeping the last ``stats_samples`` readings. A sample of the
series is the difference between two consecutive readings: messages a
second, the p99 of the calls answered in that interval, reconnects and
resumes in it. Reading costs a sum over the open connections once per
interval, and nothing per message: the connections count their messages
anyway, and those that closed are added up as they close
(:meth:`StatsRing.connection_closed`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from rtgateway.metrics import GatewayMetrics, StateMetrics, quantile


@dataclass(frozen=True, slots=True)
class Reading:
    """Cumulative figures of the gateway at one instant."""

    time_ms: int
    connections: int
    messages_in: int
    messages_out: int
    latency: tuple[int, ...]
    reconnects: int
    resumes: int
    ticks: dict[str, tuple[int, ...]]


class StatsRing:
    """Readings every ``interval_s``, the last ``samples`` intervals kept."""

    def __init__(
        self,
        *,
        clock: IReactorTime,
        interval_s: float,
        samples: int,
        metrics: GatewayMetrics,
        state_metrics: StateMetrics | None,
        zones: Iterable[str],
        connections: Callable[[], Collection[Any]],
    ) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._metrics = metrics
        self._state_metrics = state_metrics
        self._zones = tuple(sorted(zones))
        self._connections = connections
        # n samples are the differences of n + 1 readings.
        self._readings: deque[Reading] = deque(maxlen=samples + 1)
        self._closed_in = self._closed_out = 0
        self.resumes = 0
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock

    def start(self) -> None:
        self._readings.append(self.read())
        self._loop.start(self._interval_s, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def connection_closed(self, connection: Any) -> None:
        """Keep the messages of a connection that went in the totals."""
        self._closed_in += connection.messages_in
        self._closed_out += connection.messages_out

    def sample(self) -> None:
        self._readings.append(self.read())

    def read(self) -> Reading:
        """The figures now."""
        open_connections = list(self._connections())
        metrics = self._metrics
        state = self._state_metrics
        return Reading(
            time_ms=int(self._clock.seconds() * 1000),
            connections=len(open_connections),
            messages_in=self._closed_in + sum(c.messages_in for c in open_connections),
            messages_out=self._closed_out
            + sum(c.messages_out for c in open_connections),
            latency=tuple(metrics.call_latency.counts()),
            reconnects=int(metrics.messages_in.value("session.resume")),
            resumes=self.resumes,
            ticks={
                zone: tuple(state.tick_seconds.counts(zone)) if state else ()
                for zone in self._zones
            },
        )

    def series(self, last: int | None = None) -> dict[str, Any]:
        """The samples, oldest first (only the ``last`` ones if given)."""
        readings = list(self._readings)
        pairs = list(itertools.pairwise(readings))
        if last is not None:
            pairs = pairs[-last:]
        bounds = self._metrics.call_latency.bounds
        samples = []
        for before, after in pairs:
            seconds = max(1e-9, (after.time_ms - before.time_ms) / 1000)
            p99 = quantile(bounds, _minus(after.latency, before.latency), 0.99)
            samples.append(
                {
                    "time_ms": after.time_ms,
                    "connections": after.connections,
                    "messages_in_per_s": round(
                        (after.messages_in - before.messages_in) / seconds, 3
                    ),
                    "messages_out_per_s": round(
                        (after.messages_out - before.messages_out) / seconds, 3
                    ),
                    "p99_call_ms": _ms(p99),
                    "reconnects": after.reconnects - before.reconnects,
                    "resumes": after.resumes - before.resumes,
                }
            )
        return {"interval_ms": int(self._interval_s * 1000), "samples": samples}

    def tick_p99_ms(self, zone: str, now: Reading) -> float | None:
        """The p99 tick time of ``zone`` from the oldest reading kept to ``now``."""
        state = self._state_metrics
        if state is None or not self._readings:
            return None
        oldest = self._readings[0].ticks.get(zone, ())
        counts = now.ticks.get(zone, ())
        if oldest:
            counts = _minus(counts, oldest)
        return _ms(quantile(state.tick_seconds.bounds, counts, 0.99))

    @property
    def window_ms(self) -> int:
        """The time the kept readings span."""
        if not self._readings:
            return 0
        return int(self._clock.seconds() * 1000) - self._readings[0].time_ms


def _minus(after: tuple[int, ...], before: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(a - b for a, b in zip(after, before, strict=True))


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 3) if seconds is not None else None
