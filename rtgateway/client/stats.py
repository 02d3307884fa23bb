"""Network statistics of one client, on the time the core is given.

Rates are counted in one-second buckets over the last ``window_s`` whole
seconds, so ``stats()`` costs the same at 10 or 10,000 messages a second;
round-trip times keep the last ``rtt_window`` samples.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any


def percentile(samples: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``samples`` (None without any)."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Rate:
    """Counts in one-second buckets over a sliding window."""

    __slots__ = ("_buckets", "total", "window_s")

    def __init__(self, window_s: int = 5) -> None:
        self.window_s = window_s
        self._buckets: deque[list[float]] = deque()  # [second, count]
        self.total = 0.0

    def add(self, now: float, amount: float = 1.0) -> None:
        second = math.floor(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += amount
        else:
            self._buckets.append([second, amount])
            while self._buckets and self._buckets[0][0] <= second - self.window_s:
                self._buckets.popleft()
        self.total += amount

    def per_second(self, now: float) -> float:
        """The average rate over the last ``window_s`` complete seconds."""
        current = math.floor(now)
        counted = sum(
            count
            for second, count in self._buckets
            if current - self.window_s <= second < current
        )
        return counted / self.window_s


class Stats:
    """Everything ``client.stats()`` reports."""

    def __init__(self, window_s: int = 5, rtt_window: int = 100) -> None:
        self.rtts: deque[float] = deque(maxlen=rtt_window)
        self.messages_in = Rate(window_s)
        self.messages_out = Rate(window_s)
        self.bytes_in = Rate(window_s)
        self.bytes_out = Rate(window_s)
        self.state_messages = Rate(window_s)
        self.reconnects = 0
        self.resume_attempts = 0
        self.resumes = 0
        self.last_close_code: int | None = None
        self.last_close_reason: str | None = None
        #: Why the last connection attempt failed (no WebSocket was opened).
        self.last_connect_error: str | None = None

    def frame_in(self, now: float, size: int) -> None:
        self.messages_in.add(now)
        self.bytes_in.add(now, size)

    def frame_out(self, now: float, size: int) -> None:
        self.messages_out.add(now)
        self.bytes_out.add(now, size)

    def snapshot(self, now: float, **extra: Any) -> dict[str, Any]:
        rtts = list(self.rtts)
        return {
            "rtt_ms": {
                "p50": _ms(percentile(rtts, 0.5)),
                "p99": _ms(percentile(rtts, 0.99)),
                "samples": len(rtts),
            },
            "messages_in_per_s": self.messages_in.per_second(now),
            "messages_out_per_s": self.messages_out.per_second(now),
            "bytes_in_per_s": self.bytes_in.per_second(now),
            "bytes_out_per_s": self.bytes_out.per_second(now),
            "messages_in": int(self.messages_in.total),
            "messages_out": int(self.messages_out.total),
            "reconnects": self.reconnects,
            "resume_attempts": self.resume_attempts,
            "resumes": self.resumes,
            "resume_success_rate": (
                self.resumes / self.resume_attempts if self.resume_attempts else None
            ),
            "last_close_code": self.last_close_code,
            "last_close_reason": self.last_close_reason,
            "last_connect_error": self.last_connect_error,
            "state_messages_per_s": self.state_messages.per_second(now),
            **extra,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0
