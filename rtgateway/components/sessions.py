"""Sessions: created on connect, resumable on any gateway, ended once.

Each connection gets a session and a resume token in its
``session.welcome``; only the token's SHA-256 digest is stored. A dropped
connection leaves its session detached for ``resume_window_s``; a client
that reconnects (to any gateway of the cluster) and calls
``session.resume`` gets it back with its subscriptions, and the events it
missed on reliable topics are replayed before live ones. A session still
attached elsewhere is taken over: its old connection closes 4003.

Components that keep per-session state register a listener
(:meth:`SessionsComponent.add_listener`) and are told when a session is
attached, detached and ended.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from rtgateway.analytics import SessionAnalytics, summarize
from rtgateway.auth import AuthenticationFailed, Authenticator
from rtgateway.backends.interfaces import IBackends, Position, SessionRecord
from rtgateway.backends.keys import CONTROL_CHANNEL, gateway_channel
from rtgateway.interfaces import ISessionManager
from rtgateway.routing.broker import Broker
from rtgateway.routing.router import Router
from rtgateway.wire import closecodes
from rtgateway.wire.errors import Forbidden, NotFound, Unavailable

PROTOCOL_VERSION = 1

POSITION_SCHEMA = {
    "type": "object",
    "properties": {
        "offset": {"type": "integer", "minimum": 0},
        "epoch": {"type": "string", "maxLength": 64},
    },
    "required": ["offset", "epoch"],
    "additionalProperties": False,
}
RESUME_PARAMS = {
    "type": "object",
    "properties": {
        "resume_token": {"type": "string", "minLength": 1, "maxLength": 128},
        "positions": {
            "type": "object",
            "maxProperties": 1000,
            "additionalProperties": POSITION_SCHEMA,
        },
    },
    "required": ["resume_token"],
    "additionalProperties": False,
}
RESUME_RESULT = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "resumed": {"const": True},
        "subscriptions": {"type": "array", "items": {"type": "string"}},
        "recovered": {"type": "object", "additionalProperties": {"type": "boolean"}},
    },
    "required": ["session_id", "resumed", "subscriptions", "recovered"],
}
REFRESH_PARAMS = {
    "type": "object",
    "properties": {"token": {"type": "string", "minLength": 1}},
    "required": ["token"],
    "additionalProperties": False,
}
KICK_PARAMS = {
    "type": "object",
    "properties": {
        "player_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "reason": {"type": "string", "maxLength": 100},
    },
    "required": ["player_id"],
    "additionalProperties": False,
}
EMPTY_RESULT = {"type": "object", "additionalProperties": False}
METHODS = ("session.resume", "session.refresh", "session.close", "admin.kick")
#: The store keeps a detached session this much longer than the resume
#: window, so that the gateway's own timer ends it (with its analytics and
#: listeners) before the store forgets it; resume checks the window itself.
STORE_GRACE_MS = 60_000


def token_digest(token: str) -> str:
    """What is stored of a resume token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True, eq=False)
class LocalSession:
    """A session attached to a connection of this gateway."""

    session_id: str
    player_id: str
    created_ms: int
    connection: Any
    topics: set[str] = field(default_factory=set)
    #: Set when the session is ending here (closed, kicked) or moved away
    #: (taken over): the connection's loss must then not detach it.
    released: bool = False
    timers: list[IDelayedCall] = field(default_factory=list)


@implementer(ISessionManager)
class SessionsComponent(Service):
    """Owns the sessions of this gateway's connections."""

    name = "sessions"
    log = Logger()

    def __init__(
        self,
        *,
        router: Router,
        config: Any,
        clock: IReactorTime,
        backends: IBackends,
        broker: Broker,
        authenticator: Authenticator,
        analytics: SessionAnalytics,
    ) -> None:
        self._router = router
        self._config = config
        self._clock = clock
        self._store = backends.sessions
        self._presence = backends.presence
        self._bus = backends.bus
        self._broker = broker
        self._authenticator = authenticator
        self._analytics = analytics
        self._gateway_id = config.gateway.id
        self._by_connection: dict[str, LocalSession] = {}
        self._expiries: dict[str, IDelayedCall] = {}
        self._listeners: list[Any] = []
        #: Session work still writing to the store; stopping waits for it.
        self._pending: set[Deferred] = set()

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        register = self._router.register
        register(
            "session.resume",
            self.resume,
            params=RESUME_PARAMS,
            result=RESUME_RESULT,
            summary="Take back a session after a reconnect, missed events included.",
        )
        register(
            "session.refresh",
            self.refresh,
            params=REFRESH_PARAMS,
            result={"type": "object", "required": ["expires_at_ms"]},
            summary="Replace the connection's JWT before it expires.",
        )
        register(
            "session.close",
            self.close_session,
            result=EMPTY_RESULT,
            summary="End the session for good (no resume); the connection closes 1000.",
        )
        register(
            "admin.kick",
            self.kick,
            params=KICK_PARAMS,
            result=EMPTY_RESULT,
            roles=["admin"],
            summary="Close every session of a player, cluster-wide (4010), for good.",
        )
        own = gateway_channel(self._gateway_id)
        self._broker.add_channel_handler(own, self._gateway_order)
        self._broker.add_channel_handler(CONTROL_CHANNEL, self._cluster_order)
        self._bus.subscribe(own).addErrback(self._log_failure, "joining {own}", own)
        self._bus.subscribe(CONTROL_CHANNEL).addErrback(
            self._log_failure, "joining {own}", CONTROL_CHANNEL
        )

    def stopService(self) -> Deferred:
        for name in METHODS:
            self._router.unregister(name)
        for call in self._expiries.values():
            if call.active():
                call.cancel()
        self._expiries.clear()
        super().stopService()
        return DeferredList(list(self._pending))

    def _track(self, d: Deferred) -> Deferred:
        """Keep ``d`` until it fires, so that stopping can wait for it."""
        self._pending.add(d)

        def done(result: Any) -> Any:
            self._pending.discard(d)
            return result

        return d.addBoth(done)

    def add_listener(self, listener: Any) -> None:
        """Tell ``listener`` of sessions attached, detached and ended.

        Each of ``session_attached(local)``, ``session_started(local)``
        (a new session, not a resumed one), ``session_detached(local)``,
        ``connection_detached(local)`` (the connection is gone, whether or
        not the session lives on), ``session_ended(record, reason)``,
        ``session_recorded(record, analytics)`` (the analytics record of
        every session that ended, replaced ones included) and
        ``session_resumed(local, record)`` (a coroutine, awaited before the
        resume is answered) and ``principal_changed(local)`` (a
        ``session.refresh`` swapped the token, whose roles may differ) is
        called when the listener has it.
        """
        self._listeners.append(listener)

    def local(self, connection: Any) -> LocalSession | None:
        """The session attached to a connection of this gateway."""
        return self._by_connection.get(connection.connection_id)

    def orphaned(self, gateway_id: str, session_id: str) -> Deferred:
        """A session its dead gateway left attached: detach it, so it expires.

        It stays resumable for the resume window; after that this gateway
        ends it (analytics, listeners, services' ``session.ended``) as its
        own gateway would have, and the store forgets it, instead of keeping
        it attached to nobody for ever.
        """
        return self._track(
            Deferred.fromCoroutine(self._detach_orphan(gateway_id, session_id))
        )

    async def _detach_orphan(self, gateway_id: str, session_id: str) -> None:
        record = await self._store.load(session_id)
        if record is None or record.gateway_id != gateway_id or not record.attached:
            return
        window_ms = int(self._config.session.resume_window_s * 1000) + STORE_GRACE_MS
        now_ms = self._now_ms()
        detached = await self._store.detach(
            session_id, record.connection_id, now_ms, window_ms
        )
        if detached:
            self._expiries[session_id] = self._clock.callLater(
                self._config.session.resume_window_s,
                self._expire_orphan,
                session_id,
                now_ms,
            )

    def _expire_orphan(self, session_id: str, detached_ms: int) -> None:
        self._expiries.pop(session_id, None)
        d = self._track(
            Deferred.fromCoroutine(self._end_orphan(session_id, detached_ms))
        )
        d.addErrback(self._log_failure, "expiring session {own}", session_id)

    async def _end_orphan(self, session_id: str, detached_ms: int) -> None:
        """End an orphan that nobody resumed within its resume window.

        A gateway that was only stalled, not dead, puts the sessions it still
        holds back into presence when it wakes up: those live on there and
        are not ended under it.
        """
        record = await self._store.load(session_id)
        if record is None or record.attached or record.detached_ms != detached_ms:
            return
        if session_id in await self._presence.sessions(record.player_id):
            return
        await self._end(session_id, "expired", None, None)

    def all_local(self) -> list[LocalSession]:
        """Every session attached to a connection of this gateway."""
        return list(self._by_connection.values())

    def by_connection_id(self, connection_id: str) -> LocalSession | None:
        """The session a connection of this gateway holds, by the connection's id."""
        return self._by_connection.get(connection_id)

    def sessions_of(self, player_id: str) -> list[LocalSession]:
        """The sessions of a player attached here."""
        return [s for s in self._by_connection.values() if s.player_id == player_id]

    # -- attach and detach ---------------------------------------------------------

    async def attach(self, connection: Any) -> dict[str, Any]:
        resume_token = secrets.token_urlsafe(32)
        now_ms = self._now_ms()
        record = SessionRecord(
            session_id=secrets.token_urlsafe(16),
            player_id=connection.principal.player_id,
            created_ms=now_ms,
            resume_digest=token_digest(resume_token),
            gateway_id=self._gateway_id,
            connection_id=connection.connection_id,
            last_active_ms=now_ms,
        )
        await self._store.create(record)
        local = LocalSession(
            record.session_id, record.player_id, now_ms, connection=connection
        )
        self._adopt(local)
        self._notify("session_started", local)
        return self._welcome(local, resume_token, now_ms)

    def _adopt(self, local: LocalSession) -> None:
        self._by_connection[local.connection.connection_id] = local
        self._schedule_token_expiry(local)
        self._notify("session_attached", local)

    def detach(self, connection: Any, close_code: int | None) -> None:
        local = self._by_connection.pop(connection.connection_id, None)
        if local is None:
            return
        self._notify("connection_detached", local)
        _cancel(local.timers)
        positions = {
            topic: self._broker.cursor(connection, topic) for topic in local.topics
        }
        self._broker.drop_connection(connection)
        if local.released:
            return
        now_ms = self._now_ms()
        window_ms = int(self._config.session.resume_window_s * 1000) + STORE_GRACE_MS
        d = self._track(
            Deferred.fromCoroutine(
                self._persist_detach(local, connection, positions, now_ms, window_ms)
            )
        )
        d.addCallback(self._detached, local, now_ms, close_code)
        d.addErrback(self._log_failure, "detaching session {own}", local.session_id)

    async def _persist_detach(
        self,
        local: LocalSession,
        connection: Any,
        positions: dict[str, Position | None],
        now_ms: int,
        window_ms: int,
    ) -> bool:
        sid = local.session_id
        await self._store.add_stats(sid, connection.connection_stats())
        for topic, position in positions.items():
            if position is not None:
                await self._store.set_subscription(sid, topic, position)
        return await self._store.detach(
            sid, connection.connection_id, now_ms, window_ms
        )

    def _detached(
        self, detached: bool, local: LocalSession, now_ms: int, close_code: int | None
    ) -> None:
        if not detached:
            return
        self._notify("session_detached", local)
        window = self._config.session.resume_window_s
        self._expiries[local.session_id] = self._clock.callLater(
            window, self._expire, local.session_id, now_ms, close_code
        )

    def _expire(
        self, session_id: str, detached_ms: int, close_code: int | None
    ) -> None:
        self._expiries.pop(session_id, None)
        d = self._store.load(session_id)
        d.addCallback(self._expire_if_still_detached, detached_ms, close_code)
        d.addErrback(self._log_failure, "expiring session {own}", session_id)

    def _expire_if_still_detached(
        self, record: SessionRecord | None, detached_ms: int, close_code: int | None
    ) -> Any:
        if record is None or record.attached or record.detached_ms != detached_ms:
            return None
        return Deferred.fromCoroutine(
            self._end(record.session_id, "expired", close_code, None)
        )

    async def _end(
        self, session_id: str, reason: str, close_code: int | None, connection: Any
    ) -> None:
        """End a session for good: once, whoever calls, with its analytics."""
        if connection is not None:
            await self._store.add_stats(session_id, connection.connection_stats())
        record = await self._store.end(session_id)
        if record is None:
            return
        analytics = self._analytics.record(record, reason, close_code, self._now_ms())
        self._notify("session_ended", record, reason)
        self._notify("session_recorded", record, analytics)

    # -- methods -------------------------------------------------------------------

    async def resume(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        current = self._require_local(caller)
        session_id = await self._store.find(token_digest(params["resume_token"]))
        if session_id is None:
            raise NotFound("no session for this resume token (expired or ended)")
        record = await self._store.load(session_id)
        if record is None:
            raise NotFound("no session for this resume token (expired or ended)")
        if record.player_id != caller.principal.player_id:
            raise Forbidden("this session belongs to another player")
        window_ms = self._config.session.resume_window_s * 1000
        if (
            record.detached_ms is not None
            and self._now_ms() - record.detached_ms > window_ms
        ):
            raise NotFound("no session for this resume token (expired or ended)")
        kicked_ms = await self._store.kicked_at(record.player_id)
        if kicked_ms is not None and record.created_ms <= kicked_ms:
            raise NotFound("this session was ended by an administrator")
        if session_id != current.session_id:
            await self._take_over(record, caller, current)
        local = self._by_connection[caller.connection_id]
        positions = {
            topic: Position(p["offset"], p["epoch"])
            for topic, p in params.get("positions", {}).items()
        }
        recovered, activations = await self._resubscribe(local, record, positions)
        for listener in self._listeners:
            resumed = getattr(listener, "session_resumed", None)
            if resumed is not None:
                await resumed(local, record)
        caller.after_reply(lambda: [activate() for activate in activations])
        return {
            "session_id": session_id,
            "resumed": True,
            "subscriptions": sorted(local.topics),
            "recovered": recovered,
        }

    async def _take_over(
        self, record: SessionRecord, caller: Any, fresh: LocalSession
    ) -> None:
        """Make ``caller`` the owner of ``record``; drop its fresh session."""
        previous = await self._store.attach(
            record.session_id, self._gateway_id, caller.connection_id
        )
        if previous is None:
            raise NotFound("no session for this resume token (expired or ended)")
        # Attached to a connection means attached on a gateway: both or neither.
        if previous.connection_id is not None and previous.gateway_id is not None:
            self._close_owner(
                previous.gateway_id, previous.connection_id, record.session_id
            )
        expiry = self._expiries.pop(record.session_id, None)
        if expiry is not None and expiry.active():
            expiry.cancel()
        fresh.released = True
        _cancel(fresh.timers)
        await self._store.add_stats(record.session_id, {"resumes": 1})
        self._analytics.resumes.inc()
        local = LocalSession(
            record.session_id,
            record.player_id,
            record.created_ms,
            connection=caller,
            topics=set(fresh.topics),
        )
        caller.session_id = record.session_id
        self._adopt(local)
        # Ended after the adoption, so that listeners (presence) never see
        # the player without a session: no offline flash.
        replaced = await self._store.end(fresh.session_id)
        if replaced is not None:
            self._notify("session_ended", replaced, "replaced")
            # Not counted in the metrics (it was never a session of its own
            # to the player), but it did start: followers see it end.
            analytics = summarize(replaced, "replaced", None, self._now_ms())
            self._notify("session_recorded", replaced, analytics)
        self.log.info(
            "session {session_id} resumed by connection {connection_id}",
            session_id=record.session_id,
            connection_id=caller.connection_id,
        )

    async def _resubscribe(
        self,
        local: LocalSession,
        record: SessionRecord,
        positions: dict[str, Position],
    ) -> tuple[dict[str, bool], list[Any]]:
        recovered: dict[str, bool] = {}
        activations = []
        policy = self._broker.policy
        for topic, stored in record.subscriptions.items():
            try:
                policy.authorize(local.connection.principal, "subscribe", topic)
            except Exception:
                await self._store.drop_subscription(local.session_id, topic)
                continue
            since = positions.get(topic, stored)
            _, was_recovered, activate = await self._broker.subscribe(
                local.connection, topic, since
            )
            local.topics.add(topic)
            recovered[topic] = bool(was_recovered)
            activations.append(activate)
        return recovered, activations

    def _close_owner(self, gateway_id: str, connection_id: str, sid: str) -> None:
        if gateway_id == self._gateway_id:
            self._take_from(connection_id)
            return
        order = {"op": "takeover", "session_id": sid, "connection_id": connection_id}
        self._bus.publish(gateway_channel(gateway_id), orjson.dumps(order)).addErrback(
            self._log_failure, "asking {own} to release a session", gateway_id
        )

    def _take_from(self, connection_id: str) -> None:
        local = self._by_connection.get(connection_id)
        if local is not None:
            local.released = True
            local.connection.close(closecodes.SESSION_TAKEN_OVER, "session taken over")

    async def refresh(self, caller: Any, params: dict[str, Any]) -> dict[str, int]:
        local = self._require_local(caller)
        try:
            principal = self._authenticator.authenticate(params["token"])
        except AuthenticationFailed as failure:
            raise Forbidden(f"token refused: {failure.reason}") from None
        if principal.player_id != caller.principal.player_id:
            raise Forbidden("the new token is for another player")
        caller.principal = principal
        self._notify("principal_changed", local)
        _cancel(local.timers)
        self._schedule_token_expiry(local)
        return {"expires_at_ms": int(principal.expires_at * 1000)}

    async def close_session(
        self, caller: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        local = self._require_local(caller)
        local.released = True
        await self._end(local.session_id, "closed", closecodes.NORMAL, caller)
        self.log.info(
            "session {session_id} closed by its player", session_id=local.session_id
        )
        caller.after_reply(lambda: caller.close(closecodes.NORMAL, "session closed"))
        return {}

    async def kick(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        player_id, reason = params["player_id"], params.get("reason", "kicked")
        await self._store.kick(player_id, self._now_ms())
        self._kick_here(player_id, reason)
        order = {
            "op": "kick",
            "player_id": player_id,
            "reason": reason,
            "g": self._gateway_id,
        }
        await self._bus.publish(CONTROL_CHANNEL, orjson.dumps(order))
        self.log.info(
            "player {player_id} kicked by {admin}: {reason}",
            player_id=player_id,
            admin=caller.principal.player_id,
            reason=reason,
        )
        return {}

    def _kick_here(self, player_id: str, reason: str) -> None:
        for local in self.sessions_of(player_id):
            local.released = True
            connection = local.connection
            d = Deferred.fromCoroutine(
                self._end(local.session_id, "kicked", closecodes.KICKED, connection)
            )
            d.addErrback(
                self._log_failure, "ending kicked session {own}", local.session_id
            )
            connection.close(closecodes.KICKED, reason)

    # -- bus orders ---------------------------------------------------------------

    def _gateway_order(self, message: bytes) -> None:
        order = orjson.loads(message)
        if order.get("op") == "takeover":
            self._take_from(order["connection_id"])

    def _cluster_order(self, message: bytes) -> None:
        order = orjson.loads(message)
        if order.get("op") == "kick" and order.get("g") != self._gateway_id:
            self._kick_here(order["player_id"], order.get("reason", "kicked"))

    # -- token expiry ------------------------------------------------------------

    def _schedule_token_expiry(self, local: LocalSession) -> None:
        expires_at = local.connection.principal.expires_at
        now = self._clock.seconds()
        warning_at = expires_at - self._config.session.token_expiry_warning_s
        local.timers = [
            self._clock.callLater(max(0, warning_at - now), self._warn, local),
            self._clock.callLater(max(0, expires_at - now), self._token_expired, local),
        ]

    def _warn(self, local: LocalSession) -> None:
        expires_at_ms = int(local.connection.principal.expires_at * 1000)
        local.connection.send_notification(
            "session.expiring", {"expires_at_ms": expires_at_ms}
        )

    def _token_expired(self, local: LocalSession) -> None:
        local.connection.close(closecodes.TOKEN_EXPIRED, "token expired")

    # -- helpers -------------------------------------------------------------------

    def _require_local(self, caller: Any) -> LocalSession:
        local = self._by_connection.get(caller.connection_id)
        if local is None:
            raise NotFound("this connection has no session")
        return local

    def _welcome(self, local: LocalSession, token: str, now_ms: int) -> dict[str, Any]:
        config = self._config
        limits = config.limits
        return {
            "session_id": local.session_id,
            "player_id": local.player_id,
            "gateway_id": self._gateway_id,
            "resume_token": token,
            "protocol": PROTOCOL_VERSION,
            "server_time_ms": now_ms,
            "heartbeat": {
                "interval_ms": int(config.heartbeat.interval_s * 1000),
                "timeout_ms": int(config.heartbeat.timeout_s * 1000),
            },
            "limits": {
                "max_message_bytes": limits.max_message_bytes,
                "max_batch": limits.max_batch,
                "rate_per_second": _number(limits.rate_per_second),
                "rate_burst": limits.rate_burst,
            },
        }

    def _notify(self, event: str, *args: Any) -> None:
        for listener in self._listeners:
            method = getattr(listener, event, None)
            if method is not None:
                method(*args)

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _log_failure(self, failure: Any, what: str, own: str) -> None:
        if failure.check(Unavailable):
            self.log.warn(what + " failed: the backend is unavailable", own=own)
        else:
            self.log.failure(what, failure=failure, own=own)


def _cancel(calls: Iterable[IDelayedCall]) -> None:
    for call in calls:
        if call.active():
            call.cancel()


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
