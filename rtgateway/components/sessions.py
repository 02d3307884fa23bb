"""Sessions: created when a connection opens, ended by ``session.close``.

Each connection gets a session and a resume token in its
``session.welcome``. The token is random and only its SHA-256 digest is
kept, so a leaked store does not leak tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from rtgateway.interfaces import ISessionManager
from rtgateway.router import Router
from rtgateway.wire import closecodes

PROTOCOL_VERSION = 1


def token_digest(token: str) -> str:
    """What is stored of a resume token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class Session:
    """One player's session as this gateway holds it."""

    session_id: str
    player_id: str
    created_ms: int
    resume_digest: str
    connection: Any = field(default=None, repr=False)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@implementer(ISessionManager)
class SessionsComponent(Service):
    """Owns the sessions of this gateway's connections."""

    name = "sessions"
    log = Logger()

    def __init__(self, *, router: Router, config: Any, clock: IReactorTime) -> None:
        self._router = router
        self._config = config
        self._clock = clock
        self.sessions: dict[str, Session] = {}

    def startService(self) -> None:
        super().startService()
        self._router.register(
            "session.close",
            self.close_session,
            result={"type": "object", "additionalProperties": False},
            summary="End the session for good (no resume); the connection closes 1000.",
        )

    def stopService(self) -> None:
        self._router.unregister("session.close")
        super().stopService()

    def attach(self, connection: Any) -> dict[str, Any]:
        resume_token = secrets.token_urlsafe(32)
        now_ms = int(self._clock.seconds() * 1000)
        session = Session(
            session_id=secrets.token_urlsafe(16),
            player_id=connection.principal.player_id,
            created_ms=now_ms,
            resume_digest=token_digest(resume_token),
            connection=connection,
        )
        self.sessions[session.session_id] = session
        return self._welcome(session, resume_token, now_ms)

    def detach(self, connection: Any, close_code: int | None) -> None:
        session = self.sessions.get(connection.session_id)
        if session is not None and session.connection is connection:
            session.connection = None

    def close_session(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        self.sessions.pop(caller.session_id, None)
        self.log.info(
            "session {session_id} closed by its player", session_id=caller.session_id
        )
        # The response is written when this handler returns; close after it.
        self._clock.callLater(0, caller.close, closecodes.NORMAL, "session closed")
        return {}

    def _welcome(
        self, session: Session, resume_token: str, now_ms: int
    ) -> dict[str, Any]:
        config = self._config
        limits = config.limits
        return {
            "session_id": session.session_id,
            "player_id": session.player_id,
            "gateway_id": config.gateway.id,
            "resume_token": resume_token,
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
