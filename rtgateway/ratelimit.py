"""Per-connection rate limiting: a token bucket and a sustained-abuse detector.

Both read time from an injected ``IReactorTime`` so tests drive them with
``task.Clock``; neither schedules timers, so an idle connection costs
nothing.
"""

from __future__ import annotations

import math

from twisted.internet.interfaces import IReactorTime


class TokenBucket:
    """Allows ``rate`` messages per second on average, ``burst`` at once.

    Tokens are refilled lazily from the elapsed time at each ``take()``, so
    the bucket needs no timer.
    """

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = clock.seconds()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty."""
        now = self._clock.seconds()
        tokens = self._tokens + (now - self._stamp) * self._rate
        self._stamp = now
        if tokens > self._burst:
            tokens = self._burst
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False

    def retry_after_ms(self) -> int:
        """Milliseconds until the next token is available (at least 1)."""
        missing = 1.0 - self._tokens
        return max(1, math.ceil(missing / self._rate * 1000.0))


class AbuseDetector:
    """Counts rejections in a fixed window; too many means sustained abuse.

    A client that keeps sending after being told to slow down is either
    broken or hostile; either way its connection is worth closing rather
    than answering every message with an error forever.
    """

    __slots__ = ("_clock", "_count", "_limit", "_window", "_window_end")

    def __init__(self, clock: IReactorTime, limit: int, window_s: float) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window_s
        self._window_end = -math.inf
        self._count = 0

    def rejected(self) -> bool:
        """Record one rejection; True once the limit is passed in the window."""
        now = self._clock.seconds()
        if now >= self._window_end:
            self._window_end = now + self._window
            self._count = 0
        self._count += 1
        return self._count > self._limit
