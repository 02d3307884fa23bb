"""Traces of a session connected to another gateway of the cluster.

The admin's gateway finds the gateway that holds the session (in the
session store) and asks it, over the bus (:mod:`.cluster`), to trace it.
The owning gateway runs the trace as one of its own (:mod:`.traces`),
within its own bounds (rate, frame size, traces at once), for a
:class:`RemoteAdmin` that stands for the admin's connection: what the
trace sends it, ``admin.frame`` and ``admin.trace_ended``, is told to the
admin's gateway, which sends it on to the admin. Frames are redacted and
cut where they are shown, on the owning gateway.

``admin.untrace`` and the admin's connection going are told to the owner,
which ends the trace. Each gateway tells the others it traces with or for
a ``beat`` every ``cluster_timeout_s``; one not heard from for
:data:`LOST_AFTER` times that long is taken for dead and its traces end
(``reason: "gateway_lost"``), as they do at once when it says goodbye.
Without remote traces nothing of this runs: no beats, no timer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from rtgateway.components.admin.traces import Traces
from rtgateway.wire.errors import NotFound, RTGatewayError, Unavailable

#: Beat intervals of silence after which a gateway is taken for dead.
LOST_AFTER = 3


class RemoteAdmin:
    """An admin connection of another gateway, as this gateway's traces see it."""

    __slots__ = ("_tell", "admin_id", "connection_id", "gateway_id")

    def __init__(
        self, gateway_id: str, admin_id: str, tell: Callable[[str, Any], None]
    ) -> None:
        self.gateway_id = gateway_id
        self.admin_id = admin_id
        # Unique in the cluster: the key of its watcher on the traced connection.
        self.connection_id = f"{gateway_id}/{admin_id}"
        self._tell = tell

    def send_notification(self, method: str, params: dict[str, Any]) -> None:
        self._tell(
            self.gateway_id,
            {"op": "push", "admin": self.admin_id, "method": method, "params": params},
        )


@dataclass(slots=True, eq=False)
class Following:
    """An admin of this gateway tracing a session of another one."""

    admin: Any
    owner: str
    session_id: str
    shown: int = 0
    dropped: int = 0

    def counts(self) -> dict[str, Any]:
        """What the admin was shown, and what the owner dropped."""
        return {
            "session_id": self.session_id,
            "shown": self.shown,
            "dropped": self.dropped,
        }


class RemoteTraces:
    """Both ends of the remote traces of one gateway."""

    def __init__(
        self,
        *,
        cluster: Any,
        traces: Traces,
        clock: IReactorTime,
        interval_s: float,
        bounds: dict[str, Any],
        local_connection: Callable[[str], Any],
    ) -> None:
        self._cluster = cluster
        self._traces = traces
        self._clock = clock
        self._interval_s = interval_s
        self._bounds = bounds
        self._local_connection = local_connection
        #: admin connection id -> session id -> what it follows elsewhere
        self._following: dict[str, dict[str, Following]] = {}
        self._beat = LoopingCall(self._beats)
        self._beat.clock = clock

    def stop(self) -> None:
        if self._beat.running:
            self._beat.stop()

    # -- the admin's gateway ---------------------------------------------------

    async def start(self, admin: Any, owner: str, session_id: str) -> dict[str, Any]:
        """Ask ``owner`` to trace ``session_id`` for ``admin``: its bounds."""
        running = self._following.get(admin.connection_id, {}).get(session_id)
        params = {"session_id": session_id, "admin": admin.connection_id}
        answers, _ = await self._cluster.ask("trace", params, owner)
        if owner not in answers:
            raise Unavailable("the gateway of that session did not answer")
        answer = answers[owner]
        error = answer.get("error")
        if error is not None:
            kind = NotFound if error.get("code") == NotFound.code else Unavailable
            raise kind(error.get("message"))
        if running is None:
            following = Following(admin, owner, session_id)
            self._following.setdefault(admin.connection_id, {})[session_id] = following
            self._keep_beating()
        result: dict[str, Any] = answer
        return result

    def stop_following(self, admin: Any, session_id: str) -> Following | None:
        """End ``admin``'s trace of ``session_id`` elsewhere, if it runs."""
        following = self._forget(admin.connection_id, session_id)
        if following is not None:
            self._untrace(following)
        return following

    def admin_gone(self, admin: Any, reason: str | None = None) -> None:
        """``admin`` went (or lost its role): its traces elsewhere end.

        With a ``reason`` the admin, still connected, is told of each.
        """
        for following in list(self._following.pop(admin.connection_id, {}).values()):
            self._untrace(following)
            if reason is not None:
                admin.send_notification(
                    "admin.trace_ended", {**following.counts(), "reason": reason}
                )

    def traces(self, admin: Any) -> bool:
        """Whether ``admin`` follows a session of another gateway now."""
        return admin.connection_id in self._following

    # -- the owning gateway --------------------------------------------------------

    def serve(self, asker: str, params: dict[str, Any]) -> dict[str, Any]:
        """Trace one of this gateway's sessions for an admin of ``asker``."""
        session_id = str(params.get("session_id"))
        try:
            connection = self._local_connection(session_id)
            if connection is None:
                raise NotFound("no session of that id is connected to its gateway")
            admin = RemoteAdmin(asker, str(params.get("admin")), self._cluster.tell)
            self._traces.start(admin, connection, session_id)
        except RTGatewayError as error:
            return {"error": {"code": error.code, "message": error.message}}
        self._keep_beating()
        return {"session_id": session_id, **self._bounds}

    def told(self, sender: str, order: dict[str, Any]) -> None:
        """What another gateway told this one about remote traces."""
        op = order.get("op")
        if op == "push":
            self._pushed(sender, order)
        elif op == "untrace":
            admin = RemoteAdmin(sender, str(order.get("admin")), self._cluster.tell)
            self._traces.stop(admin, str(order.get("session_id")))
        elif op == "bye":
            self._lost(sender)

    # -- inside ---------------------------------------------------------------------

    def _pushed(self, sender: str, order: dict[str, Any]) -> None:
        params = order.get("params") or {}
        session_id = str(params.get("session_id"))
        admin_id = str(order.get("admin"))
        following = self._following.get(admin_id, {}).get(session_id)
        if following is None or following.owner != sender:
            if order.get("method") == "admin.frame":  # untraced meanwhile
                self._cluster.tell(
                    sender,
                    {"op": "untrace", "admin": admin_id, "session_id": session_id},
                )
            return
        if order.get("method") == "admin.frame":
            following.shown += 1
            following.dropped = int(params.get("dropped", 0))
            following.admin.send_notification("admin.frame", params)
        elif order.get("method") == "admin.trace_ended":
            self._forget(admin_id, session_id)
            following.admin.send_notification(
                "admin.trace_ended", {**params, **following.counts()}
            )

    def _untrace(self, following: Following) -> None:
        self._cluster.tell(
            following.owner,
            {
                "op": "untrace",
                "admin": following.admin.connection_id,
                "session_id": following.session_id,
            },
        )

    def _forget(self, admin_id: str, session_id: str) -> Following | None:
        followed = self._following.get(admin_id)
        if followed is None:
            return None
        following = followed.pop(session_id, None)
        if not followed:
            del self._following[admin_id]
        return following

    def _peers(self) -> set[str]:
        """The gateways this one traces on, and those it traces for."""
        peers = {
            f.owner for followed in self._following.values() for f in followed.values()
        }
        peers.update(
            admin.gateway_id
            for admin in self._traces.admins()
            if isinstance(admin, RemoteAdmin)
        )
        return peers

    def _keep_beating(self) -> None:
        if not self._beat.running:
            self._beat.start(self._interval_s, now=False)

    def _beats(self) -> None:
        """Tell each peer this gateway lives; end the traces of those silent."""
        peers = self._peers()
        if not peers:
            self._beat.stop()
            return
        now = self._clock.seconds()
        for peer in sorted(peers):
            heard = self._cluster.heard(peer)
            if heard is None or now - heard > LOST_AFTER * self._interval_s:
                self._lost(peer)
            else:
                self._cluster.tell(peer, {"op": "beat"})

    def _lost(self, gateway: str) -> None:
        """``gateway`` is gone: the traces with it or for it end."""
        for admin_id, followed in list(self._following.items()):
            for following in list(followed.values()):
                if following.owner != gateway:
                    continue
                self._forget(admin_id, following.session_id)
                following.admin.send_notification(
                    "admin.trace_ended",
                    {**following.counts(), "reason": "gateway_lost"},
                )
        for admin in self._traces.admins():
            if isinstance(admin, RemoteAdmin) and admin.gateway_id == gateway:
                self._traces.connection_gone(admin)
