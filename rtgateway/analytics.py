"""Session analytics: one structured record per ended session.

When a session ends (closed, expired, kicked), its totals across every
connection it had (resumes included) go to the log as one event and into
Prometheus histograms, so operators can see how long players stay, how
chatty they are and how their network behaves.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.logger import Logger

#: Counters every connection contributes to its session.
STAT_NAMES = (
    "messages_in",
    "messages_out",
    "bytes_in",
    "bytes_out",
    "rtt_total_us",
    "rtt_count",
    "resumes",
)

_DURATION_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)
_COUNT_BUCKETS = (0, 10, 100, 1000, 10_000, 100_000, 1_000_000)
_BYTES_BUCKETS = (1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)
_RTT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class SessionAnalytics:
    """Writes the record of each ended session to the log and to metrics."""

    log = Logger()

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.ended = Counter(
            "rtgateway_sessions_ended",
            "Sessions ended, by reason (closed, expired, kicked).",
            ["reason"],
            registry=r,
        )
        self.resumes = Counter(
            "rtgateway_session_resumes",
            "Sessions resumed on a new connection.",
            registry=r,
        )
        self.duration = Histogram(
            "rtgateway_session_duration_seconds",
            "Lifetime of ended sessions.",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.messages = Histogram(
            "rtgateway_session_messages",
            "Messages of ended sessions, by direction.",
            ["direction"],
            buckets=_COUNT_BUCKETS,
            registry=r,
        )
        self.bytes = Histogram(
            "rtgateway_session_bytes",
            "Payload bytes of ended sessions, by direction.",
            ["direction"],
            buckets=_BYTES_BUCKETS,
            registry=r,
        )
        self.rtt = Histogram(
            "rtgateway_session_rtt_seconds",
            "Average heartbeat round trip of ended sessions.",
            buckets=_RTT_BUCKETS,
            registry=r,
        )

    def record(
        self, session: Any, reason: str, close_code: int | None, now_ms: int
    ) -> dict[str, Any]:
        """Log and count one ended session; returns the record."""
        record = summarize(session, reason, close_code, now_ms)
        stats = session_stats(session)
        self.log.info(
            "session {session_id} of {player_id} ended ({reason}) after {duration_s}s",
            session_analytics=record,
            **record,
        )
        self.ended.labels(reason).inc()
        self.duration.observe(record["duration_s"])
        for direction in ("in", "out"):
            self.messages.labels(direction).observe(stats[f"messages_{direction}"])
            self.bytes.labels(direction).observe(stats[f"bytes_{direction}"])
        if stats["rtt_count"]:
            self.rtt.observe(stats["rtt_total_us"] / stats["rtt_count"] / 1e6)
        return record


def session_stats(session: Any) -> dict[str, int]:
    """Every counter of :data:`STAT_NAMES` a session record holds (0 if absent)."""
    return {name: int(session.stats.get(name, 0)) for name in STAT_NAMES}


def summarize(
    session: Any, reason: str | None, close_code: int | None, now_ms: int
) -> dict[str, Any]:
    """A session's analytics record as of ``now_ms``, without logging or counting.

    The same shape serves a session that ended (with its ``reason`` and
    ``close_code``) and one still live, for services that ask how it is
    going so far (``reason`` and ``close_code`` None).
    """
    stats = session_stats(session)
    rtt_ms = (
        round(stats["rtt_total_us"] / stats["rtt_count"] / 1000, 3)
        if stats["rtt_count"]
        else None
    )
    return {
        "session_id": session.session_id,
        "player_id": session.player_id,
        "duration_s": max(0, now_ms - session.created_ms) / 1000,
        "reconnects": stats["resumes"],
        "messages_in": stats["messages_in"],
        "messages_out": stats["messages_out"],
        "bytes_in": stats["bytes_in"],
        "bytes_out": stats["bytes_out"],
        "avg_rtt_ms": rtt_ms,
        "close_code": close_code,
        "reason": reason,
    }
