"""Heartbeats and the idle timeout of one connection, on an injected clock.

Autobahn's own auto-ping runs on txaio's timers; doing it here on the
gateway's ``IReactorTime`` lets tests drive it with ``task.Clock`` and lets
the gateway measure the round-trip time of every ping (the ping payload is
the time it was sent).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

_STAMP = struct.Struct("!d")


class Heartbeat:
    """Pings every ``interval`` s; no pong within ``timeout`` s calls ``on_dead``.

    With ``idle_timeout`` > 0, ``on_idle`` is called once no application
    message arrived (``activity()``) for that long; pongs do not count as
    activity.
    """

    __slots__ = (
        "_clock",
        "_idle_call",
        "_idle_timeout",
        "_interval",
        "_last_activity",
        "_on_dead",
        "_on_idle",
        "_outstanding",
        "_ping_call",
        "_send_ping",
        "_timeout",
        "_timeout_call",
        "rtt_count",
        "rtt_total",
    )

    def __init__(
        self,
        clock: IReactorTime,
        *,
        interval: float,
        timeout: float,
        idle_timeout: float,
        send_ping: Callable[[bytes], None],
        on_dead: Callable[[], None],
        on_idle: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._timeout = timeout
        self._idle_timeout = idle_timeout
        self._send_ping = send_ping
        self._on_dead = on_dead
        self._on_idle = on_idle
        self._ping_call: IDelayedCall | None = None
        self._timeout_call: IDelayedCall | None = None
        self._idle_call: IDelayedCall | None = None
        self._outstanding: bytes | None = None
        self._last_activity = 0.0
        self.rtt_total = 0.0
        self.rtt_count = 0

    def start(self) -> None:
        """Begin pinging (and watching for idleness)."""
        self._ping_call = self._clock.callLater(self._interval, self._ping)
        self._last_activity = self._clock.seconds()
        if self._idle_timeout > 0:
            self._idle_call = self._clock.callLater(
                self._idle_timeout, self._check_idle
            )

    def stop(self) -> None:
        """Cancel every timer; safe to call more than once."""
        for name in ("_ping_call", "_timeout_call", "_idle_call"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)

    def activity(self) -> None:
        """An application message arrived: the connection is not idle."""
        self._last_activity = self._clock.seconds()

    def pong(self, payload: bytes) -> None:
        """A pong arrived; only the answer to the outstanding ping counts."""
        if self._outstanding is None or payload != self._outstanding:
            return
        (sent,) = _STAMP.unpack(payload)
        self.rtt_total += self._clock.seconds() - sent
        self.rtt_count += 1
        self._outstanding = None
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self._ping_call = self._clock.callLater(self._interval, self._ping)

    @property
    def average_rtt(self) -> float | None:
        """Mean ping round trip in seconds, None before the first pong."""
        return self.rtt_total / self.rtt_count if self.rtt_count else None

    def _ping(self) -> None:
        self._ping_call = None
        self._outstanding = _STAMP.pack(self._clock.seconds())
        self._timeout_call = self._clock.callLater(self._timeout, self._dead)
        self._send_ping(self._outstanding)

    def _dead(self) -> None:
        self._timeout_call = None
        self.stop()
        self._on_dead()

    def _check_idle(self) -> None:
        remaining = self._last_activity + self._idle_timeout - self._clock.seconds()
        if remaining > 0:
            self._idle_call = self._clock.callLater(remaining, self._check_idle)
            return
        self._idle_call = None
        self._on_idle()
