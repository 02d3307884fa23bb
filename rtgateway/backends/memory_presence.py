"""The embedded presence store: players, zones and gateways in memory.

Zone listings are kept as sorted lists of player ids, so a page is a
bisection and a count is a ``len``: the same costs the Redis store gets
from sorted sets.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from rtgateway.backends.interfaces import IPresenceStore, PresenceChange, PresenceRecord


@dataclass(slots=True)
class PresenceHub:
    """Presence state shared by the gateways of one process."""

    records: dict[str, PresenceRecord] = field(default_factory=dict)
    #: player -> session -> gateway
    sessions: dict[str, dict[str, str]] = field(default_factory=dict)
    zones: dict[str, list[str]] = field(default_factory=dict)
    #: gateway -> time (s) its liveness runs out
    gateways: dict[str, float] = field(default_factory=dict)


@implementer(IPresenceStore)
class MemoryPresenceStore:
    """An :class:`IPresenceStore` in a :class:`PresenceHub`."""

    def __init__(self, hub: PresenceHub, clock: IReactorTime) -> None:
        self._hub = hub
        self._clock = clock

    def _record(self, player_id: str) -> PresenceRecord:
        return self._hub.records.get(player_id) or PresenceRecord(player_id)

    def _store(self, before: PresenceRecord, after: PresenceRecord) -> PresenceChange:
        self._hub.records[after.player_id] = after
        if before.visible and (not after.visible or after.zone != before.zone):
            self._leave(before.zone, before.player_id)
        if after.visible and (not before.visible or after.zone != before.zone):
            self._join(after.zone, after.player_id)
        return PresenceChange(before, after)

    def _join(self, zone: str | None, player_id: str) -> None:
        if zone is not None:
            members = self._hub.zones.setdefault(zone, [])
            index = bisect.bisect_left(members, player_id)
            if index == len(members) or members[index] != player_id:
                members.insert(index, player_id)

    def _leave(self, zone: str | None, player_id: str) -> None:
        members = self._hub.zones.get(zone) if zone is not None else None
        if members:
            index = bisect.bisect_left(members, player_id)
            if index < len(members) and members[index] == player_id:
                del members[index]

    def connect(self, player_id: str, session_id: str, gateway_id: str) -> Deferred:
        self._hub.sessions.setdefault(player_id, {})[session_id] = gateway_id
        before = self._record(player_id)
        after = replace(before, online=True)
        if not before.online and before.status != "invisible":
            after = replace(after, status="online")
        return succeed(self._store(before, after))

    def disconnect(
        self,
        player_id: str,
        session_id: str,
        last_seen_ms: int,
        gateway_id: str | None = None,
    ) -> Deferred:
        sessions = self._hub.sessions.get(player_id, {})
        before = self._record(player_id)
        if gateway_id is not None and sessions.get(session_id) != gateway_id:
            return succeed(PresenceChange(before, before))
        sessions.pop(session_id, None)
        if sessions or not before.online:
            return succeed(PresenceChange(before, before))
        self._hub.sessions.pop(player_id, None)
        after = replace(before, online=False, zone=None, activity=None)
        if before.status != "invisible":  # others last saw it turn invisible
            after = replace(after, last_seen_ms=last_seen_ms)
        return succeed(self._store(before, after))

    def sessions(self, player_id: str) -> Deferred:
        return succeed(dict(self._hub.sessions.get(player_id, {})))

    def update(self, player_id: str, changes: dict[str, Any], now_ms: int) -> Deferred:
        before = self._record(player_id)
        after = replace(before, **changes)
        if before.visible and after.status == "invisible":
            after = replace(after, last_seen_ms=now_ms)
        return succeed(self._store(before, after))

    def get(self, player_ids: list[str]) -> Deferred:
        return succeed({p: self._record(p) for p in player_ids})

    def zone(self, zone: str, cursor: str | None, limit: int) -> Deferred:
        members = self._hub.zones.get(zone, [])
        start = bisect.bisect_right(members, cursor) if cursor is not None else 0
        page = members[start : start + limit]
        more = start + limit < len(members)
        return succeed((len(members), page, page[-1] if more and page else None))

    def gateway_alive(self, gateway_id: str, ttl_ms: int) -> Deferred:
        known = gateway_id in self._hub.gateways
        self._hub.gateways[gateway_id] = self._clock.seconds() + ttl_ms / 1000
        return succeed(known)

    def claim_dead_gateways(self) -> Deferred:
        now = self._clock.seconds()
        dead = {g for g, until in self._hub.gateways.items() if until <= now}
        for gateway_id in dead:
            del self._hub.gateways[gateway_id]
        return succeed(
            [
                (gateway_id, player_id, session_id)
                for player_id, sessions in self._hub.sessions.items()
                for session_id, gateway_id in sessions.items()
                if gateway_id in dead
            ]
        )
