"""Session data for backend services: ``session.get`` and lifecycle events.

Services that follow players (matchmaking, moderation, billing) need to
know where a player is connected and how its sessions go, whichever
gateway holds them. Nothing new is stored for that: the presence store
already indexes a player's live sessions cluster-wide (session -> gateway),
the session store holds each session's record, counters and zone, and
presence holds its status. ``session.get`` reads them together.

Lifecycle events (``session.started``, ``session.resumed``,
``session.ended`` with the analytics record) are published on the
topic :data:`EVENTS_TOPIC` of the gateway's own ``session`` namespace, which
only services may subscribe to and nobody may publish to. It keeps a
history, so a service that reconnects resumes the stream without gaps,
and it travels through the broker, so services on every gateway hear the
sessions of all of them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rtgateway.analytics import STAT_NAMES, summarize
from rtgateway.backends.interfaces import IPresenceStore, ISessionStore, SessionRecord
from rtgateway.components.presence import PRESENCE, view
from rtgateway.components.sessions import LocalSession, SessionsComponent
from rtgateway.components.state import ZONE_KEY
from rtgateway.config.topics import TopicConfig
from rtgateway.routing.broker import Broker
from rtgateway.routing.events import EventRegistry
from rtgateway.routing.router import Router
from rtgateway.routing.topics import SERVICE_ROLE
from rtgateway.wire.errors import Unavailable

#: The gateway's namespace for session topics (the ``session.`` methods' own).
NAMESPACE = "session"
EVENTS_TOPIC = "session.events"
#: Services only may follow sessions; only the gateway speaks. The history
#: covers a service's reconnect (five minutes, the last 1,000 events).
EVENTS_NAMESPACE = TopicConfig(
    subscribe="service", publish="none", history_size=1000, history_ttl_s=300
)

PLAYER_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
NULLABLE_INT = {"type": ["integer", "null"]}
ANALYTICS = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "player_id": PLAYER_ID,
        "duration_s": {"type": "number", "minimum": 0},
        "reconnects": {"type": "integer"},
        "messages_in": {"type": "integer"},
        "messages_out": {"type": "integer"},
        "bytes_in": {"type": "integer"},
        "bytes_out": {"type": "integer"},
        "avg_rtt_ms": {"type": ["number", "null"]},
        "close_code": NULLABLE_INT,
        "reason": {"type": ["string", "null"]},
    },
    "required": [
        "session_id",
        "player_id",
        "duration_s",
        "reconnects",
        "messages_in",
        "messages_out",
        "bytes_in",
        "bytes_out",
        "avg_rtt_ms",
        "close_code",
        "reason",
    ],
}
SESSION = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "gateway_id": {"type": ["string", "null"]},
        "state": {"enum": ["attached", "detached"]},
        "created_ms": {"type": "integer"},
        "detached_ms": NULLABLE_INT,
        "resume_until_ms": NULLABLE_INT,
        "zone": {"type": ["string", "null"]},
        "analytics": ANALYTICS,
    },
    "required": [
        "session_id",
        "gateway_id",
        "state",
        "created_ms",
        "detached_ms",
        "resume_until_ms",
        "zone",
        "analytics",
    ],
}
GET_PARAMS = {
    "type": "object",
    "properties": {"player_id": PLAYER_ID},
    "required": ["player_id"],
    "additionalProperties": False,
}
GET_RESULT = {
    "type": "object",
    "properties": {
        "player_id": PLAYER_ID,
        "presence": PRESENCE,
        "sessions": {"type": "array", "items": SESSION},
    },
    "required": ["player_id", "presence", "sessions"],
}


def _event_schema(extra: dict[str, Any]) -> dict[str, Any]:
    properties = {
        "session_id": {"type": "string"},
        "player_id": PLAYER_ID,
        "gateway_id": {"type": "string"},
        **extra,
    }
    return {"type": "object", "properties": properties, "required": list(properties)}


STARTED = _event_schema({"created_ms": {"type": "integer"}})
#: ``detached_ms`` None: taken over from a connection that still held it.
RESUMED = _event_schema({"detached_ms": NULLABLE_INT})
ENDED = _event_schema({"reason": {"type": "string"}, "analytics": ANALYTICS})


class SessionDataComponent(Service):
    """``session.get`` for services, and the sessions' lifecycle events."""

    name = "session_data"
    log = Logger()

    def __init__(
        self,
        *,
        router: Router,
        broker: Broker,
        events: EventRegistry,
        sessions: SessionsComponent,
        presence: IPresenceStore,
        session_store: ISessionStore,
        config: Any,
        clock: IReactorTime,
    ) -> None:
        self._router = router
        self._broker = broker
        self._sessions = sessions
        self._presence = presence
        self._store = session_store
        self._gateway_id = config.gateway.id
        self._window_ms = int(config.session.resume_window_s * 1000)
        self._clock = clock
        broker.policy.add_namespace(NAMESPACE, EVENTS_NAMESPACE)
        events.register(
            "session.started", STARTED, summary="A player's new session began."
        )
        events.register(
            "session.resumed",
            RESUMED,
            summary="A session was taken back by a new connection.",
        )
        events.register(
            "session.ended",
            ENDED,
            summary="A session ended for good, with its analytics record.",
        )
        sessions.add_listener(self)

    def startService(self) -> None:
        super().startService()
        self._router.register(
            "session.get",
            self.get,
            params=GET_PARAMS,
            result=GET_RESULT,
            roles=[SERVICE_ROLE],
            summary="A player's sessions across the cluster, presence and analytics.",
        )

    def stopService(self) -> None:
        self._router.unregister("session.get")
        super().stopService()

    # -- session.get ----------------------------------------------------------

    async def get(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        """Every live session of the player; none (not an error) if it has none.

        A player the cluster never saw is not an error either: like
        ``presence.get``, it is offline with no sessions.
        """
        player_id = params["player_id"]
        placed = await self._presence.sessions(player_id)
        presences = await self._presence.get([player_id])
        records = await gatherResults(
            [self._store.load(sid) for sid in sorted(placed)], consumeErrors=True
        )
        now_ms = self._now_ms()
        sessions = [self._describe(r, now_ms) for r in records if r is not None]
        sessions.sort(key=lambda s: (s["created_ms"], s["session_id"]))
        return {
            "player_id": player_id,
            # Services are trusted: they see the status the player chose,
            # invisible included, as the player sees itself.
            "presence": view(presences[player_id], player_id, now_ms),
            "sessions": sessions,
        }

    def _describe(self, record: SessionRecord, now_ms: int) -> dict[str, Any]:
        detached_ms = record.detached_ms
        return {
            "session_id": record.session_id,
            "gateway_id": record.gateway_id,
            "state": "attached" if record.attached else "detached",
            "created_ms": record.created_ms,
            "detached_ms": detached_ms,
            "resume_until_ms": (
                None if detached_ms is None else detached_ms + self._window_ms
            ),
            "zone": record.metadata.get(ZONE_KEY),
            "analytics": summarize(self._with_live_stats(record), None, None, now_ms),
        }

    def _with_live_stats(self, record: SessionRecord) -> SessionRecord:
        """The record with the counters of its connection, when attached here.

        A connection adds its counters to the store when it goes; until
        then only its own gateway knows them.
        """
        if record.gateway_id != self._gateway_id or record.connection_id is None:
            return record
        local = self._sessions.by_connection_id(record.connection_id)
        if local is None or local.session_id != record.session_id:
            return record
        live = local.connection.connection_stats()
        stats = {
            name: int(record.stats.get(name, 0)) + int(live.get(name, 0))
            for name in STAT_NAMES
        }
        return replace(record, stats=stats)

    # -- lifecycle events (session listener) ----------------------------------

    def session_started(self, local: LocalSession) -> None:
        self._emit(
            "session.started",
            {
                "session_id": local.session_id,
                "player_id": local.player_id,
                "gateway_id": self._gateway_id,
                "created_ms": local.created_ms,
            },
        )

    async def session_resumed(self, local: LocalSession, record: SessionRecord) -> None:
        """Published without delaying the resume's answer.

        ``record`` is the session as it was before: a connection resuming
        the session it already holds changes nothing and is not an event.
        """
        if record.connection_id == local.connection.connection_id:
            return
        self._emit(
            "session.resumed",
            {
                "session_id": local.session_id,
                "player_id": local.player_id,
                "gateway_id": self._gateway_id,
                "detached_ms": record.detached_ms,
            },
        )

    def session_recorded(
        self, record: SessionRecord, analytics: dict[str, Any]
    ) -> None:
        self._emit(
            "session.ended",
            {
                "session_id": record.session_id,
                "player_id": record.player_id,
                "gateway_id": self._gateway_id,
                "reason": analytics["reason"],
                "analytics": analytics,
            },
        )

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        d = Deferred.fromCoroutine(self._broker.emit(EVENTS_TOPIC, event_type, data))
        d.addErrback(self._log_failure, event_type, data["session_id"])

    # -- helpers ----------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _log_failure(self, failure: Any, event_type: str, session_id: str) -> None:
        if failure.check(Unavailable):
            self.log.warn(
                "publishing {event_type} of {session_id} failed: backend unavailable",
                event_type=event_type,
                session_id=session_id,
            )
        else:
            self.log.failure(
                "publishing {event_type} of {session_id}",
                failure=failure,
                event_type=event_type,
                session_id=session_id,
            )
