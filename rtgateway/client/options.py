"""Everything a client can be configured with, in one frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rtgateway.client.backoff import ReconnectPolicy


@dataclass(frozen=True)
class ClientOptions:
    """Client settings; every one has a default that suits a game client."""

    #: ``"json"`` (text frames) or ``"cbor"`` (binary frames).
    encoding: str = "json"
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    #: Every call fails with :class:`CallTimeout` past this, queued or sent.
    call_timeout_s: float = 10.0
    #: TCP connect plus WebSocket opening handshake.
    connect_timeout_s: float = 10.0
    #: The outbound queue's total bound and optional per-priority bounds.
    queue_size: int = 1000
    queue_per_priority: Mapping[int, int] = field(default_factory=dict)
    #: A ``sys.ping`` this often while open, for RTT and liveness; 0: none.
    ping_interval_s: float = 5.0
    #: A ping unanswered this long means the link is dead (a network that
    #: went silent sends no reset): the connection is dropped and resumed.
    ping_timeout_s: float = 10.0
    #: How long an endpoint that failed is avoided.
    endpoint_down_s: float = 30.0
    #: Frames kept in the event log; ``trace`` also logs every frame.
    event_log_size: int = 200
    trace: bool = False
    #: None: three fast ticks of the joined zone.
    interpolation_delay_s: float | None = None
    max_extrapolation_s: float = 0.1
    stats_window_s: int = 5
    rtt_window: int = 100

    def __post_init__(self) -> None:
        if self.encoding not in ("json", "cbor"):
            raise ValueError(f"encoding must be json or cbor, not {self.encoding!r}")
        if self.call_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")

    @property
    def subprotocols(self) -> list[str]:
        return [f"rtgw.v1.{self.encoding}"]
