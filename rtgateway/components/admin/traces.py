"""Who traces which session, within ``[admin] trace_max_sessions``.

A trace joins an admin connection to a traced connection: the traced one
shows its frames (:meth:`IConnection.watch`, keyed by the admin's
connection id), and each frame shown reaches the admin as an
``admin.frame`` notification. A trace ends when the admin asks
(``admin.untrace``) or when either connection goes; an admin whose traced
session went is told with ``admin.trace_ended``. The admin may be one of
another gateway (:class:`.remote.RemoteAdmin`), told over the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtgateway.wire.errors import Unavailable


@dataclass(slots=True, eq=False)
class Trace:
    """One admin connection tracing one session's connection."""

    admin: Any
    traced: Any
    session_id: str
    watcher: Any = None

    def deliver(self, record: dict[str, Any], watcher: Any) -> None:
        """A frame shown: to the admin, with the frames dropped so far."""
        self.admin.send_notification(
            "admin.frame",
            {"session_id": self.session_id, **record, "dropped": watcher.dropped},
        )

    def counts(self) -> dict[str, Any]:
        """What the trace showed and dropped."""
        watcher = self.watcher
        return {
            "session_id": self.session_id,
            "shown": watcher.shown if watcher is not None else 0,
            "dropped": watcher.dropped if watcher is not None else 0,
        }


class Traces:
    """The traces of one gateway, by admin and by traced connection."""

    def __init__(self, max_traces: int) -> None:
        self._max = max_traces
        #: admin connection id -> traced connection id -> trace
        self._by_admin: dict[str, dict[str, Trace]] = {}
        #: traced connection id -> admin connection id -> trace
        self._by_traced: dict[str, dict[str, Trace]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def start(self, admin: Any, traced: Any, session_id: str) -> Trace:
        """Trace ``traced`` for ``admin``; the running trace if there is one."""
        running = self._by_admin.get(admin.connection_id, {}).get(traced.connection_id)
        if running is not None:
            return running
        if self._count >= self._max:
            raise Unavailable(
                f"{self._max} traces are running on this gateway, its most"
            )
        trace = Trace(admin, traced, session_id)
        trace.watcher = traced.watch(admin.connection_id, trace.deliver)
        self._by_admin.setdefault(admin.connection_id, {})[traced.connection_id] = trace
        self._by_traced.setdefault(traced.connection_id, {})[admin.connection_id] = (
            trace
        )
        self._count += 1
        return trace

    def admins(self) -> list[Any]:
        """The admin connections that run traces here, each once."""
        return [next(iter(t.values())).admin for t in self._by_admin.values()]

    def stop(self, admin: Any, session_id: str) -> Trace | None:
        """End ``admin``'s trace of ``session_id``, if it runs."""
        for trace in list(self._by_admin.get(admin.connection_id, {}).values()):
            if trace.session_id == session_id:
                self._forget(trace)
                return trace
        return None

    def admin_gone(self, admin: Any, reason: str | None = None) -> None:
        """End the traces ``admin`` runs; with a ``reason``, tell it of each."""
        for trace in list(self._by_admin.get(admin.connection_id, {}).values()):
            self._forget(trace)
            if reason is not None:
                admin.send_notification(
                    "admin.trace_ended", {**trace.counts(), "reason": reason}
                )

    def connection_gone(self, connection: Any) -> None:
        """End the traces ``connection`` ran and those of it, telling admins."""
        self.admin_gone(connection)
        for trace in list(self._by_traced.get(connection.connection_id, {}).values()):
            self._forget(trace)
            trace.admin.send_notification(
                "admin.trace_ended", {**trace.counts(), "reason": "disconnected"}
            )

    def _forget(self, trace: Trace) -> None:
        admin_id = trace.admin.connection_id
        traced_id = trace.traced.connection_id
        _pop(self._by_admin, admin_id, traced_id)
        _pop(self._by_traced, traced_id, admin_id)
        trace.traced.unwatch(admin_id)
        self._count -= 1


def _pop(table: dict[str, dict[str, Trace]], outer: str, inner: str) -> None:
    entries = table.get(outer)
    if entries is None:
        return
    entries.pop(inner, None)
    if not entries:
        del table[outer]
