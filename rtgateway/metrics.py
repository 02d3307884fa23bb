"""Prometheus metrics of one gateway, kept in its own registry.

A registry per gateway (instead of prometheus_client's global one) lets a
test run several gateways in one process and read each one's figures.
Label values are bounded: methods are the registered names or ``unknown``,
error codes and close codes are the protocol's, auth failure reasons a
fixed set.

The metrics updated for every message (messages in and out, errors, bytes,
call latency) are :class:`FastCounter` and :class:`FastHistogram`: plain
numbers, turned into Prometheus samples only when ``/metrics`` is read.
prometheus_client's own metrics take a lock on every update, which cost a
tenth of the gateway's CPU per message. No lock is needed here: the gateway
runs on one thread, the reactor's, and every update and every scrape of the
registry (``MetricsResource`` renders on that thread) happen there, one
after the other. Names, types, labels and buckets are those that
prometheus_client's ``Counter`` and ``Histogram`` would expose.
"""

from __future__ import annotations

import sys
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

#: Call latencies of a real-time gateway sit far below a second.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class _Count:
    """One labelled child of a :class:`FastCounter`."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value: float = 0
        self.created = time.time()

    def inc(self, amount: int | float = 1) -> None:
        """Add ``amount`` (never negative: callers count sizes and events)."""
        self.value += amount


class FastCounter:
    """A Prometheus counter without a lock; see the module's docstring.

    ``labels(...).inc(n)`` as with prometheus_client; a counter without
    labels is incremented with ``inc(n)`` directly.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Count] = {}
        if not self._labelnames:
            self._children[()] = self._only = _Count()
        registry.register(self)

    def labels(self, *values: object) -> _Count:
        """The child of these label values, created at its first use."""
        key = tuple(str(value) for value in values)
        if len(key) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = _Count()
        return child

    def inc(self, amount: int | float = 1) -> None:
        """Add ``amount`` to a counter without labels."""
        self._only.value += amount

    def total(self) -> float:
        """The sum over every label value (what the admin statistics sample)."""
        return sum(child.value for child in self._children.values())

    def value(self, *values: object) -> float:
        """The count of these label values, 0 if never counted (not created)."""
        child = self._children.get(tuple(str(value) for value in values))
        return child.value if child is not None else 0

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = self._family()
        for key, child in list(self._children.items()):
            family.add_metric(key, float(child.value), created=child.created)
        return [family]

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            self._name, self._documentation, labels=self._labelnames
        )


class _Observations:
    """One labelled child of a :class:`FastHistogram`."""

    __slots__ = ("_bounds", "buckets", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        # One count per bucket, not cumulative; the last is +Inf's.
        self.buckets = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose bound is >= it."""
        self.buckets[bisect_left(self._bounds, amount)] += 1
        self.sum += amount


class FastHistogram:
    """A Prometheus histogram without a lock; see the module's docstring."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = tuple(float(b) for b in buckets)
        if list(self._bounds) != sorted(self._bounds) or float("inf") in self._bounds:
            raise ValueError("buckets must be finite and sorted")
        self._le = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        self._children: dict[tuple[str, ...], _Observations] = {}
        registry.register(self)

    def labels(self, *values: object) -> _Observations:
        """The child of these label values, created at its first use."""
        key = tuple(str(value) for value in values)
        if len(key) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = _Observations(self._bounds)
        return child

    @property
    def bounds(self) -> tuple[float, ...]:
        """The buckets' upper bounds, without +Inf."""
        return self._bounds

    def counts(self, *values: object) -> list[int]:
        """Per-bucket counts (not cumulative, +Inf last) of these label values.

        Without values, summed over every label value. Never creates a child.
        """
        if values:
            child = self._children.get(tuple(str(value) for value in values))
            children = [child] if child is not None else []
        else:
            children = list(self._children.values())
        totals = [0] * (len(self._bounds) + 1)
        for each in children:
            for i, count in enumerate(each.buckets):
                totals[i] += count
        return totals

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = self._family()
        for key, child in list(self._children.items()):
            total = 0
            cumulative = []
            for le, count in zip(self._le, child.buckets, strict=True):
                total += count
                cumulative.append((le, float(total)))
            family.add_metric(key, cumulative, child.sum)
            family.samples.append(
                Sample(
                    self._name + "_created",
                    dict(zip(self._labelnames, key, strict=True)),
                    child.created,
                )
            )
        return [family]

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            self._name, self._documentation, labels=self._labelnames
        )


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile of ``counts``.

    ``counts`` are per-bucket (as :meth:`FastHistogram.counts`), so the
    difference of two readings gives the quantile over the time between
    them. None without observations; an observation past the last bound
    reads as that bound (the estimate is then a floor).
    """
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for bound, count in zip(bounds, counts, strict=False):
        seen += count
        if seen >= rank:
            return bound
    return bounds[-1]


def reactor_delayed_calls() -> float:
    """Calls waiting on the installed reactor's timers, counted now.

    Every heartbeat, timeout, resume window and tick of the gateway is a
    delayed call; their number follows the connections and sessions, and
    one that grows while they do not is a timer that is never cancelled.
    Read at scrape time from ``getDelayedCalls()``, on the reactor's
    thread, like every scrape (see the module's docstring). The reactor is
    looked up, not imported: importing ``twisted.internet.reactor`` would
    install one in a process that has none (a test reading a registry),
    and such a process has no delayed calls.
    """
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return 0.0
    return float(len(reactor.getDelayedCalls()))


class GatewayMetrics:
    """Every collector the gateway layer updates, all prefixed ``rtgateway_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "rtgateway_connections", "Open WebSocket connections.", registry=r
        )
        self.connections_opened = Counter(
            "rtgateway_connections_opened",
            "WebSocket connections accepted.",
            registry=r,
        )
        self.connections_closed = Counter(
            "rtgateway_connections_closed",
            "WebSocket connections closed, by close code (none: dropped).",
            ["code"],
            registry=r,
        )
        self.handshake_refusals = Counter(
            "rtgateway_handshake_refusals",
            "Upgrade requests refused before the WebSocket existed, by HTTP status.",
            ["status"],
            registry=r,
        )
        self.auth_failures = Counter(
            "rtgateway_auth_failures",
            "Failed JWT checks at the upgrade, by reason.",
            ["reason"],
            registry=r,
        )
        self.messages_in = FastCounter(
            "rtgateway_messages_in",
            "JSON-RPC messages received (batch entries each), by method.",
            ["method"],
            registry=r,
        )
        self.messages_out = FastCounter(
            "rtgateway_messages_out",
            "JSON-RPC messages sent (responses under their request's method).",
            ["method"],
            registry=r,
        )
        self.errors = FastCounter(
            "rtgateway_errors",
            "JSON-RPC error responses sent, by error code.",
            ["code"],
            registry=r,
        )
        self.call_latency = FastHistogram(
            "rtgateway_call_latency_seconds",
            "Time from a request's arrival to its response, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes_in = FastCounter(
            "rtgateway_bytes_in",
            "WebSocket message payload bytes received.",
            registry=r,
        )
        self.bytes_out = FastCounter(
            "rtgateway_bytes_out", "WebSocket message payload bytes sent.", registry=r
        )
        self.slow_consumers = Counter(
            "rtgateway_slow_consumers",
            "Connections closed 4008 for not reading what they were sent.",
            registry=r,
        )
        self.rate_limited = Counter(
            "rtgateway_rate_limited",
            "Messages refused by the per-connection rate limit.",
            registry=r,
        )
        self.events_published = Counter(
            "rtgateway_events_published",
            "Events accepted for publication on this gateway.",
            registry=r,
        )
        self.event_deliveries = Counter(
            "rtgateway_event_deliveries",
            "Events handed to local subscribers (one per subscriber).",
            registry=r,
        )
        self.events_dropped = Counter(
            "rtgateway_events_dropped",
            "Volatile events not sent to a connection whose buffer was full.",
            registry=r,
        )
        self.bus_messages_received = Counter(
            "rtgateway_bus_messages_received",
            "Messages this gateway received from the bus.",
            registry=r,
        )
        self.bus_subscriptions = Gauge(
            "rtgateway_bus_subscriptions",
            "Topics this gateway listens to on the bus (local interest).",
            registry=r,
        )
        self.stream_repairs = Counter(
            "rtgateway_stream_repairs",
            "Gaps in a topic's event stream filled from history.",
            registry=r,
        )
        self.reactor_delayed_calls = Gauge(
            "rtgateway_reactor_delayed_calls",
            "Delayed calls (timers) pending on the reactor, counted at scrape.",
            registry=r,
        )
        self.reactor_delayed_calls.set_function(reactor_delayed_calls)


#: Tick durations: a 60 Hz tick has 16.7 ms.
TICK_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.0167, 0.033, 0.1)


class StateMetrics:
    """The state component's figures, in the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.ticks = FastCounter(
            "rtgateway_state_ticks", "Ticks run, by zone.", ["zone"], registry=r
        )
        self.overruns = FastCounter(
            "rtgateway_state_tick_overruns",
            "Ticks that took longer than their interval or were missed, by zone.",
            ["zone"],
            registry=r,
        )
        self.tick_seconds = FastHistogram(
            "rtgateway_state_tick_seconds",
            "Time one tick of a zone took, publish to send.",
            ["zone"],
            buckets=TICK_BUCKETS,
            registry=r,
        )
        self.messages = FastCounter(
            "rtgateway_state_messages",
            "State messages (snapshots, deltas, checks) sent, by zone.",
            ["zone"],
            registry=r,
        )
        self.inputs_rejected = FastCounter(
            "rtgateway_state_inputs_rejected",
            "state.update inputs refused (unknown field, wrong type, stale).",
            registry=r,
        )
        self.corrections = FastCounter(
            "rtgateway_state_corrections",
            "Inputs applied with corrected values (speed, bounds, min/max).",
            registry=r,
        )
        self.slow_clients = FastCounter(
            "rtgateway_state_slow_clients",
            "Clients closed 4008 for staying behind their zone's ticks.",
            registry=r,
        )
        self.tick_failures = FastCounter(
            "rtgateway_state_tick_failures",
            "Ticks that raised (logged; the zone ticks on), by zone.",
            ["zone"],
            registry=r,
        )
