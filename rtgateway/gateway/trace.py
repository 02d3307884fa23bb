"""One connection's frames, shown to the admins who trace it (``admin.trace``).

A connection that nobody traces has no :class:`FrameTap`: its hot paths
check one attribute (``tap is None``) and do nothing else. Once an admin
traces it, each frame in and out passes through the tap, which first asks
every watcher's token bucket (``[admin] trace_rate``) whether it may be
shown; a frame no watcher may see is only counted as dropped, and never
decoded, so the cost of a trace on a busy connection is bounded by the rate,
not by the traffic.

A frame shown is decoded with the connection's codec and described as JSON:
its method, size and time, and the document itself, where every member
named ``token``, ``access_token`` or ``resume_token`` (the welcome's resume
token, ``session.refresh``, ``session.resume``) and every string shaped like
a JWT is replaced by ``"[redacted]"``, then cut to ``trace_max_frame_bytes``
of JSON. The JWT of the upgrade is never a frame, so never passes here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import orjson
from twisted.internet.interfaces import IReactorTime

from rtgateway.ratelimit import TokenBucket
from rtgateway.wire.codecs import Codec
from rtgateway.wire.errors import RTGatewayError

#: Members whose value is a credential, wherever they appear in a frame.
SECRET_MEMBERS = frozenset({"token", "access_token", "resume_token"})
REDACTED = "[redacted]"
#: Three base64url segments, the first a JSON header (``{"`` is ``eyJ``).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
#: The most of a frame's method a trace shows: no real method is longer, so
#: only a client's garbage is cut, which could otherwise carry a frame's
#: worth of bytes past ``trace_max_frame_bytes``.
MAX_METHOD_CHARS = 128
#: What the gateway pushes to a tracing admin: never traced, or two admins
#: tracing each other would feed each other's traces for ever.
UNTRACED_METHODS = frozenset({"admin.frame", "admin.trace_ended"})

Sink = Callable[[dict[str, Any], "Watcher"], None]


class Watcher:
    """One admin's trace of a connection: its rate bound and its counts."""

    __slots__ = ("_bucket", "dropped", "shown", "sink")

    def __init__(self, clock: IReactorTime, rate: float, sink: Sink) -> None:
        self._bucket = TokenBucket(clock, rate, max(1, math.ceil(rate)))
        self.sink = sink
        self.shown = 0
        self.dropped = 0

    def admits(self) -> bool:
        """Take a token for one frame, or count the frame as dropped."""
        if self._bucket.take():
            return True
        self.dropped += 1
        return False


class FrameTap:
    """Installed on a connection (as its ``tap``) while someone traces it."""

    __slots__ = ("_clock", "_codec", "_max_bytes", "watchers")

    def __init__(self, clock: IReactorTime, codec: Codec, max_bytes: int) -> None:
        self._clock = clock
        self._codec = codec
        self._max_bytes = max_bytes
        self.watchers: dict[Any, Watcher] = {}

    def watch(self, key: Any, rate: float, sink: Sink) -> Watcher:
        """Show frames to ``sink`` under ``key`` (replacing its former watcher)."""
        watcher = self.watchers[key] = Watcher(self._clock, rate, sink)
        return watcher

    def __call__(self, direction: str, payload: bytes) -> None:
        """A frame went ``"in"`` or ``"out"``: show it to who may see it now."""
        # Most frames of a busy traced connection are over the rate: those
        # cost a token check per watcher and nothing else, not even a list.
        admitted = None
        for watcher in self.watchers.values():
            if watcher.admits():
                if admitted is None:
                    admitted = [watcher]
                else:
                    admitted.append(watcher)
        if admitted is None:
            return
        record = describe(
            self._codec,
            direction,
            payload,
            int(self._clock.seconds() * 1000),
            self._max_bytes,
        )
        if record is None:
            return
        for watcher in admitted:
            watcher.shown += 1
            watcher.sink(record, watcher)


def describe(
    codec: Codec, direction: str, payload: bytes, time_ms: int, max_bytes: int
) -> dict[str, Any] | None:
    """What a trace shows of one frame; None for the trace's own pushes."""
    record: dict[str, Any] = {
        "direction": direction,
        "method": None,
        "size": len(payload),
        "time_ms": time_ms,
    }
    try:
        document = codec.decode(payload)
    except RTGatewayError:
        # Nothing of it is shown: undecodable bytes cannot be redacted.
        return {**record, "frame": None, "undecodable": True}
    method = _method(document)
    if direction == "out" and method in UNTRACED_METHODS:
        return None
    record["method"] = None if method is None else redact(method)[:MAX_METHOD_CHARS]
    shown = redact(document)
    # Both codecs decode only the JSON data model: orjson writes all of it.
    text = orjson.dumps(shown)
    if len(text) <= max_bytes:
        record["frame"] = shown
    else:
        record["frame"] = text[:max_bytes].decode("utf-8", "ignore")
        record["truncated"] = True
    return record


def redact(value: Any) -> Any:
    """``value`` with every credential replaced by ``"[redacted]"``."""
    if isinstance(value, dict):
        return {
            k: REDACTED if k in SECRET_MEMBERS else redact(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str) and _JWT.search(value):
        return REDACTED
    return value


def _method(document: Any) -> str | None:
    """The method of a request or notification, ``"batch"`` for an array."""
    if isinstance(document, list):
        return "batch"
    if isinstance(document, dict) and isinstance(document.get("method"), str):
        method: str = document["method"]
        return method
    return None
