"""Presence: who is online, away, busy or (seemingly) offline, and where.

A player is online while any of its sessions lives; a session that lost
its connection keeps the player online through the resume window, so a
reconnect shows no offline/online flap to watchers. Invisible players look
offline to everybody else, zone included. Changes go out as
``presence.changed`` on ``presence.<player_id>`` (watching a player is
subscribing to that topic) and zone moves as ``zone.joined`` /
``zone.left`` on ``zone.<zone>``, through the broker, so watchers on any
gateway see them within milliseconds.

Each gateway refreshes its liveness in the presence store; the sessions of
a gateway that died are found by the others after ``gateway_ttl_s`` and
ended, so its players go offline and their watchers are told.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rtgateway.backends.interfaces import IPresenceStore, PresenceChange, PresenceRecord
from rtgateway.components.sessions import SessionsComponent
from rtgateway.config.topics import TopicConfig
from rtgateway.routing.broker import Broker
from rtgateway.routing.events import EventRegistry
from rtgateway.routing.names import topic_error
from rtgateway.routing.router import Router
from rtgateway.wire.errors import NotFound, Unavailable

PLAYER_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
ZONE = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
PRESENCE = {
    "type": "object",
    "properties": {
        "player_id": PLAYER_ID,
        "status": {"enum": ["online", "away", "busy", "invisible", "offline"]},
        "last_seen_ms": {"type": ["integer", "null"]},
        "zone": {"type": ["string", "null"]},
        "region": {"type": ["string", "null"]},
        "activity": {"type": ["string", "null"]},
    },
    "required": ["player_id", "status", "last_seen_ms", "zone", "region", "activity"],
}
SET_PARAMS = {
    "type": "object",
    "properties": {
        "status": {"enum": ["online", "away", "busy", "invisible"]},
        "zone": {"anyOf": [ZONE, {"type": "null"}]},
        "region": {"type": ["string", "null"], "maxLength": 64},
        "activity": {"type": ["string", "null"], "maxLength": 256},
    },
    "additionalProperties": False,
}
ZONE_EVENT = {
    "type": "object",
    "properties": {"player_id": PLAYER_ID, "zone": ZONE},
    "required": ["player_id", "zone"],
}
#: Presence and zone topics: anyone may follow them, only the gateway speaks.
BUILT_IN_NAMESPACE = TopicConfig(
    subscribe="any", publish="none", history_size=0, history_ttl_s=0
)
METHODS = (
    "presence.set",
    "presence.get",
    "presence.watch",
    "presence.unwatch",
    "presence.zone",
)


def presence_topic(player_id: str) -> str:
    return f"presence.{player_id}"


def view(record: PresenceRecord, viewer: str | None, now_ms: int) -> dict[str, Any]:
    """The presence ``viewer`` may see (None: any other player).

    Players see themselves as they are; others see an invisible player as
    offline, without zone, region or activity. ``last_seen_ms`` of an
    online player is now.
    """
    seen = record.online if record.player_id == viewer else record.visible
    if not seen:
        return {
            "player_id": record.player_id,
            "status": "offline",
            "last_seen_ms": record.last_seen_ms,
            "zone": None,
            "region": None,
            "activity": None,
        }
    return {
        "player_id": record.player_id,
        "status": record.status,
        "last_seen_ms": now_ms,
        "zone": record.zone,
        "region": record.region,
        "activity": record.activity,
    }


class PresenceComponent(Service):
    """Presence methods, lifecycle and propagation."""

    name = "presence"
    log = Logger()

    def __init__(
        self,
        *,
        router: Router,
        broker: Broker,
        events: EventRegistry,
        sessions: SessionsComponent,
        store: IPresenceStore,
        session_store: Any,
        config: Any,
        clock: IReactorTime,
    ) -> None:
        self._router = router
        self._broker = broker
        self._sessions = sessions
        self._store = store
        self._session_store = session_store
        self._settings = config.presence
        self._gateway_id = config.gateway.id
        self._clock = clock
        broker.policy.add_namespace("presence", BUILT_IN_NAMESPACE)
        broker.policy.add_namespace("zone", BUILT_IN_NAMESPACE)
        events.register(
            "presence.changed",
            PRESENCE,
            reliable=False,
            summary="A watched player's presence changed.",
        )
        events.register(
            "zone.joined",
            ZONE_EVENT,
            reliable=False,
            summary="A player entered the zone.",
        )
        events.register(
            "zone.left", ZONE_EVENT, reliable=False, summary="A player left the zone."
        )
        sessions.add_listener(self)
        self._registered = False
        self._heartbeat = LoopingCall(self._alive)
        self._heartbeat.clock = clock
        self._reaper = LoopingCall(self._reap)
        self._reaper.clock = clock

    # -- service ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        settings = self._settings
        players = {
            "type": "array",
            "items": PLAYER_ID,
            "minItems": 1,
            "maxItems": settings.max_players,
            "uniqueItems": True,
        }
        players_params = {
            "type": "object",
            "properties": {"players": players},
            "required": ["players"],
            "additionalProperties": False,
        }
        players_result = {
            "type": "object",
            "properties": {
                "players": {"type": "object", "additionalProperties": PRESENCE}
            },
            "required": ["players"],
        }
        register = self._router.register
        register(
            "presence.set",
            self.set,
            params=SET_PARAMS,
            result={"type": "object", "properties": {"presence": PRESENCE}},
            summary="Set your status, zone, region or activity.",
        )
        register(
            "presence.get",
            self.get,
            params=players_params,
            result=players_result,
            summary="The presence of players.",
        )
        register(
            "presence.watch",
            self.watch,
            params=players_params,
            result=players_result,
            summary="The presence of players, and presence.changed as it changes.",
        )
        register(
            "presence.unwatch",
            self.unwatch,
            params=players_params,
            result={"type": "object", "additionalProperties": False},
            summary="Stop following players' presence.",
        )
        register(
            "presence.zone",
            self.zone,
            params={
                "type": "object",
                "properties": {
                    "zone": ZONE,
                    "cursor": {"type": ["string", "null"], "maxLength": 64},
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": settings.zone_page_max,
                    },
                },
                "required": ["zone"],
                "additionalProperties": False,
            },
            result={
                "type": "object",
                "properties": {
                    "count": {"type": "integer"},
                    "players": {"type": "array", "items": PLAYER_ID},
                    "cursor": {"type": ["string", "null"]},
                },
                "required": ["count", "players", "cursor"],
            },
            summary="A page of the players visible in a zone, and their count.",
        )
        self._heartbeat.start(settings.gateway_ttl_s / 3, now=True).addErrback(
            self._loop_failed, "liveness"
        )
        self._reaper.start(settings.reap_interval_s, now=False).addErrback(
            self._loop_failed, "reaper"
        )

    def stopService(self) -> None:
        for name in METHODS:
            self._router.unregister(name)
        for loop in (self._heartbeat, self._reaper):
            if loop.running:
                loop.stop()
        super().stopService()

    # -- methods ---------------------------------------------------------------

    async def set(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        self._require_session(caller)
        player_id = caller.principal.player_id
        change = await self._store.update(player_id, params, self._now_ms())
        await self._announce(change)
        return {"presence": view(change.after, player_id, self._now_ms())}

    async def get(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        records = await self._store.get(params["players"])
        viewer, now_ms = caller.principal.player_id, self._now_ms()
        return {"players": {p: view(r, viewer, now_ms) for p, r in records.items()}}

    async def watch(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        local = self._require_session(caller)
        players = params["players"]
        topics = [presence_topic(p) for p in players]
        watched = sum(1 for t in local.topics if t.startswith("presence."))
        new = [t for t in topics if t not in local.topics]
        if watched + len(new) > self._settings.max_watch:
            raise topic_error(
                f"at most {self._settings.max_watch} watched players", "/players"
            )
        subscribed = await gatherResults(
            [Deferred.fromCoroutine(self._broker.subscribe(caller, t)) for t in topics],
            consumeErrors=True,
        )
        local.topics.update(topics)
        await gatherResults(
            [
                self._session_store.set_subscription(local.session_id, t, None)
                for t in new
            ],
            consumeErrors=True,
        )
        result = await self.get(caller, params)
        caller.after_reply(lambda: [activate() for _, _, activate in subscribed])
        return result

    async def unwatch(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        local = self._require_session(caller)
        for player_id in params["players"]:
            topic = presence_topic(player_id)
            self._broker.unsubscribe(caller, topic)
            if topic in local.topics:
                local.topics.discard(topic)
                await self._session_store.drop_subscription(local.session_id, topic)
        return {}

    async def zone(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        limit = params.get("limit", self._settings.zone_page_size)
        count, players, cursor = await self._store.zone(
            params["zone"], params.get("cursor"), limit
        )
        return {"count": count, "players": players, "cursor": cursor}

    def set_zone(self, player_id: str, zone: str | None) -> Deferred:
        """Move a player to ``zone`` (None: no zone), as the state component does."""
        return Deferred.fromCoroutine(self._set_zone(player_id, zone))

    async def _set_zone(self, player_id: str, zone: str | None) -> None:
        change = await self._store.update(player_id, {"zone": zone}, self._now_ms())
        await self._announce(change)

    # -- lifecycle (session listener) -----------------------------------------

    def session_attached(self, local: Any) -> None:
        self._run(
            self._store.connect(local.player_id, local.session_id, self._gateway_id),
            "marking {player_id} online",
            local.player_id,
        )

    def session_ended(self, record: Any, reason: str) -> None:
        last_seen = (
            record.detached_ms if record.detached_ms is not None else self._now_ms()
        )
        self._run(
            self._store.disconnect(record.player_id, record.session_id, last_seen),
            "marking {player_id} offline",
            record.player_id,
        )

    def _run(self, d: Deferred, what: str, player_id: str) -> None:
        d.addCallback(lambda change: Deferred.fromCoroutine(self._announce(change)))
        d.addErrback(self._log_failure, what, player_id)

    # -- propagation ------------------------------------------------------------

    async def _announce(self, change: PresenceChange) -> None:
        """Publish what others can see of a change, if they can see one."""
        before, after = change.before, change.after
        now_ms = self._now_ms()
        public_before, public_after = view(before, None, 0), view(after, None, 0)
        if public_before != public_after:
            await self._broker.emit(
                presence_topic(after.player_id),
                "presence.changed",
                view(after, None, now_ms),
            )
        was_in = before.zone if before.visible else None
        now_in = after.zone if after.visible else None
        if was_in != now_in:
            if was_in is not None:
                data = {"player_id": after.player_id, "zone": was_in}
                await self._broker.emit(f"zone.{was_in}", "zone.left", data)
            if now_in is not None:
                data = {"player_id": after.player_id, "zone": now_in}
                await self._broker.emit(f"zone.{now_in}", "zone.joined", data)

    # -- liveness and crash recovery -------------------------------------------

    def _alive(self) -> Deferred:
        ttl_ms = int(self._settings.gateway_ttl_s * 1000)
        d = self._store.gateway_alive(self._gateway_id, ttl_ms)
        d.addCallback(self._check_presumed_dead)
        return d.addErrback(
            self._log_failure, "refreshing liveness of {player_id}", self._gateway_id
        )

    def _check_presumed_dead(self, known: bool) -> None:
        """After a stall the others may have ended our players: bring them back."""
        registered, self._registered = self._registered, True
        if known or not registered:
            return
        local = self._sessions.all_local()
        self.log.warn(
            "gateway {player_id} was presumed dead; restoring {count} sessions",
            player_id=self._gateway_id,
            count=len(local),
        )
        for session in local:
            self.session_attached(session)

    def _reap(self) -> Deferred:
        d = self._store.claim_dead_gateways()
        d.addCallback(self._end_orphans)
        return d.addErrback(self._log_failure, "claiming dead gateways", "")

    def _end_orphans(self, orphans: list[tuple[str, str, str]]) -> None:
        now_ms = self._now_ms()
        for gateway_id, player_id, session_id in orphans:
            self.log.info(
                "session {session_id} of {player_id} died with its gateway",
                session_id=session_id,
                player_id=player_id,
            )
            self._run(
                self._store.disconnect(player_id, session_id, now_ms, gateway_id),
                "marking {player_id} offline",
                player_id,
            )
            self._sessions.orphaned(gateway_id, session_id).addErrback(
                self._log_failure, "detaching a session of {player_id}", player_id
            )

    # -- helpers -------------------------------------------------------------------

    def _require_session(self, caller: Any) -> Any:
        local = self._sessions.local(caller)
        if local is None:
            raise NotFound("this connection has no session")
        return local

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _log_failure(self, failure: Any, what: str, player_id: str) -> None:
        if failure.check(Unavailable):
            self.log.warn(
                what + " failed: the backend is unavailable", player_id=player_id
            )
        else:
            self.log.failure(what, failure=failure, player_id=player_id)

    def _loop_failed(self, failure: Any, loop: str) -> None:
        self.log.failure("the presence {loop} loop stopped", failure=failure, loop=loop)
