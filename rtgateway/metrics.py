"""Prometheus metrics of one gateway, kept in its own registry.

A registry per gateway (instead of prometheus_client's global one) lets a
test run several gateways in one process and read each one's figures.
Label values are bounded: methods are the registered names or ``unknown``,
error codes and close codes are the protocol's, auth failure reasons a
fixed set.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.messages_in = Counter(
            "rtgateway_messages_in",
            "JSON-RPC messages received (batch entries each), by method.",
            ["method"],
            registry=r,
        )
        self.messages_out = Counter(
            "rtgateway_messages_out",
            "JSON-RPC messages sent (responses under their request's method).",
            ["method"],
            registry=r,
        )
        self.errors = Counter(
            "rtgateway_errors",
            "JSON-RPC error responses sent, by error code.",
            ["code"],
            registry=r,
        )
        self.call_latency = Histogram(
            "rtgateway_call_latency_seconds",
            "Time from a request's arrival to its response, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes_in = Counter(
            "rtgateway_bytes_in",
            "WebSocket message payload bytes received.",
            registry=r,
        )
        self.bytes_out = Counter(
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
