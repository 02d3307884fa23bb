"""The embedded backends: everything in this process's memory.

This is the default (``[backend] kind = "memory"``): one gateway, no other
service. Several gateways in one process (tests) can share a
:class:`MemoryHub` and then behave as a cluster, bus included. Every method
returns an already-fired Deferred, like the Redis backends' would later.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from rtgateway.backends.interfaces import (
    IBackends,
    IBus,
    IBusHandler,
    ISessionStore,
    ITopicHistory,
    Position,
    Replay,
    SessionRecord,
    StoredEvent,
)
from rtgateway.backends.keys import topic_channel
from rtgateway.backends.memory_presence import MemoryPresenceStore, PresenceHub
from rtgateway.backends.memory_procedures import MemoryProcedureRegistry, ProcedureHub
from rtgateway.backends.memory_state import MemoryStateStore, StateHub


def new_epoch() -> str:
    """A fresh epoch name: unguessable, so two runs never share one."""
    return secrets.token_hex(6)


@dataclass(slots=True)
class _TopicLog:
    epoch: str
    top: int = 0
    events: deque[StoredEvent] = field(default_factory=deque)
    expires_at: float = float("inf")


@dataclass(slots=True)
class _StoredSession:
    record: SessionRecord
    expires_at: float = float("inf")


class MemoryHub:
    """The shared state of every memory backend in one process."""

    def __init__(self) -> None:
        self.sessions: dict[str, _StoredSession] = {}
        self.digests: dict[str, str] = {}
        self.kicks: dict[str, int] = {}
        self.topics: dict[str, _TopicLog] = {}
        self.channels: dict[str, set[MemoryBus]] = {}
        self.presence = PresenceHub()
        self.state = StateHub()
        self.procedures = ProcedureHub()


@implementer(IBus)
class MemoryBus:
    """Delivers each publication to every bus of the hub subscribed to it."""

    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub
        self.handler: IBusHandler | None = None

    def subscribe(self, channel: str) -> Deferred:
        self._hub.channels.setdefault(channel, set()).add(self)
        return succeed(None)

    def unsubscribe(self, channel: str) -> Deferred:
        buses = self._hub.channels.get(channel)
        if buses is not None:
            buses.discard(self)
            if not buses:
                del self._hub.channels[channel]
        return succeed(None)

    def publish(self, channel: str, message: bytes) -> Deferred:
        for bus in list(self._hub.channels.get(channel, ())):
            if bus.handler is not None:  # else nobody listens on that bus yet
                bus.handler.bus_message(channel, message)
        return succeed(None)


@implementer(ITopicHistory)
class MemoryHistory:
    """Per-topic logs in a deque; the whole log expires ttl after its last event."""

    def __init__(self, hub: MemoryHub, bus: MemoryBus, clock: IReactorTime) -> None:
        self._hub = hub
        self._bus = bus
        self._clock = clock

    def _log(self, topic: str) -> _TopicLog:
        log = self._hub.topics.get(topic)
        if log is None or log.expires_at <= self._clock.seconds():
            log = self._hub.topics[topic] = _TopicLog(epoch=new_epoch())
        return log

    def append(self, topic: str, body: bytes, size: int, ttl_ms: int) -> Deferred:
        log = self._log(topic)
        log.top += 1
        log.events.append(StoredEvent(log.top, log.epoch, body))
        while len(log.events) > size:
            log.events.popleft()
        log.expires_at = self._clock.seconds() + ttl_ms / 1000
        self._bus.publish(topic_channel(topic), envelope(log.top, log.epoch, body))
        return succeed(Position(log.top, log.epoch))

    def read(self, topic: str, since: Position | None, limit: int) -> Deferred:
        log = self._log(topic)
        return succeed(replay(log.epoch, log.top, log.events, since, limit))


def replay(
    epoch: str, top: int, events: Any, since: Position | None, limit: int
) -> Replay:
    """The :class:`Replay` of ``events`` (in offset order) after ``since``.

    Shared by every history implementation, so that they all answer the
    same question the same way.
    """
    position = Position(top, epoch)
    if since is None:
        return Replay((), position, True)
    if since.epoch != epoch or since.offset > top:
        return Replay((), position, False)
    missing = top - since.offset
    if missing == 0:
        return Replay((), position, True)
    found = tuple(e for e in events if e.offset > since.offset)
    if len(found) != missing or missing > limit:
        return Replay((), position, False)
    return Replay(found, position, True)


def envelope(offset: int | None, epoch: str | None, body: bytes) -> bytes:
    """A topic event as it travels on the bus: ``offset|epoch|body``.

    The Redis history builds the same bytes inside its Lua script, where the
    offset is assigned; volatile events travel as ``-|-|body``.
    """
    if offset is None:
        return b"-|-|" + body
    assert epoch is not None  # a stored event has both
    return b"%d|%s|%s" % (offset, epoch.encode(), body)


def open_envelope(message: bytes) -> tuple[int | None, str | None, bytes]:
    """The inverse of :func:`envelope`."""
    offset, epoch, body = message.split(b"|", 2)
    if offset == b"-":
        return None, None, body
    return int(offset), epoch.decode(), body


@implementer(ISessionStore)
class MemorySessionStore:
    """Sessions in a dict; detached ones expire lazily on the clock."""

    def __init__(self, hub: MemoryHub, clock: IReactorTime) -> None:
        self._hub = hub
        self._clock = clock

    def _get(self, session_id: str) -> _StoredSession | None:
        stored = self._hub.sessions.get(session_id)
        if stored is not None and stored.expires_at <= self._clock.seconds():
            self._forget(session_id)
            return None
        return stored

    def _forget(self, session_id: str) -> SessionRecord | None:
        stored = self._hub.sessions.pop(session_id, None)
        if stored is None:
            return None
        self._hub.digests.pop(stored.record.resume_digest, None)
        return stored.record

    def create(self, record: SessionRecord) -> Deferred:
        self._hub.sessions[record.session_id] = _StoredSession(record)
        self._hub.digests[record.resume_digest] = record.session_id
        return succeed(None)

    def load(self, session_id: str) -> Deferred:
        stored = self._get(session_id)
        return succeed(stored.record if stored else None)

    def find(self, resume_digest: str) -> Deferred:
        session_id = self._hub.digests.get(resume_digest)
        if session_id is None or self._get(session_id) is None:
            return succeed(None)
        return succeed(session_id)

    def attach(self, session_id: str, gateway_id: str, connection_id: str) -> Deferred:
        stored = self._get(session_id)
        if stored is None:
            return succeed(None)
        before = stored.record
        stored.record = replace(
            before, gateway_id=gateway_id, connection_id=connection_id, detached_ms=None
        )
        stored.expires_at = float("inf")
        return succeed(before)

    def detach(
        self, session_id: str, connection_id: str, now_ms: int, window_ms: int
    ) -> Deferred:
        stored = self._get(session_id)
        if stored is None or stored.record.connection_id != connection_id:
            return succeed(False)
        stored.record = replace(
            stored.record,
            gateway_id=None,
            connection_id=None,
            detached_ms=now_ms,
            last_active_ms=now_ms,
        )
        stored.expires_at = self._clock.seconds() + window_ms / 1000
        return succeed(True)

    def _update(self, session_id: str, **changes: Any) -> Deferred:
        stored = self._get(session_id)
        if stored is not None:
            stored.record = replace(stored.record, **changes)
        return succeed(None)

    def set_subscription(
        self, session_id: str, topic: str, position: Position | None
    ) -> Deferred:
        stored = self._get(session_id)
        if stored is None:
            return succeed(None)
        subscriptions = {**stored.record.subscriptions, topic: position}
        return self._update(session_id, subscriptions=subscriptions)

    def drop_subscription(self, session_id: str, topic: str) -> Deferred:
        stored = self._get(session_id)
        if stored is None:
            return succeed(None)
        subscriptions = dict(stored.record.subscriptions)
        subscriptions.pop(topic, None)
        return self._update(session_id, subscriptions=subscriptions)

    def set_metadata(self, session_id: str, key: str, value: Any) -> Deferred:
        stored = self._get(session_id)
        if stored is None:
            return succeed(None)
        return self._update(session_id, metadata={**stored.record.metadata, key: value})

    def add_stats(self, session_id: str, stats: dict[str, int]) -> Deferred:
        stored = self._get(session_id)
        if stored is None:
            return succeed(None)
        totals = dict(stored.record.stats)
        for name, value in stats.items():
            totals[name] = totals.get(name, 0) + value
        return self._update(session_id, stats=totals)

    def end(self, session_id: str) -> Deferred:
        if self._get(session_id) is None:
            return succeed(None)
        return succeed(self._forget(session_id))

    def kick(self, player_id: str, now_ms: int) -> Deferred:
        self._hub.kicks[player_id] = now_ms
        return succeed(None)

    def kicked_at(self, player_id: str) -> Deferred:
        return succeed(self._hub.kicks.get(player_id))


@implementer(IBackends)
class MemoryBackends(Service):
    """The memory sessions, history, bus, presence, state and procedures."""

    name = "backends"

    def __init__(self, clock: IReactorTime, hub: MemoryHub | None = None) -> None:
        self.hub = hub if hub is not None else MemoryHub()
        self.bus = MemoryBus(self.hub)
        self.history = MemoryHistory(self.hub, self.bus, clock)
        self.sessions = MemorySessionStore(self.hub, clock)
        self.presence = MemoryPresenceStore(self.hub.presence, clock)
        self.state = MemoryStateStore(self.hub.state, self.bus)
        self.procedures = MemoryProcedureRegistry(self.hub.procedures, clock)

    def ready(self) -> bool:
        return True
