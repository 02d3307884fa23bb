"""``pubsub.subscribe``, ``pubsub.unsubscribe`` and ``pubsub.publish``.

The broker does the work; this component checks the caller's session and
its subscription bound, records subscriptions in the session store (so a
resume on any gateway finds them), and makes the reply to a subscribe go
out before the events it unlocks.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service

from rtgateway.backends.interfaces import ISessionStore, Position
from rtgateway.components.sessions import POSITION_SCHEMA, SessionsComponent
from rtgateway.routing.broker import Broker
from rtgateway.routing.names import topic_error
from rtgateway.routing.router import Router
from rtgateway.wire.errors import NotFound

TOPIC = {"type": "string", "minLength": 1, "maxLength": 255}
#: Topics of watched players, bounded by [presence] max_watch.
WATCH_PREFIX = "presence."
SUBSCRIBE_PARAMS = {
    "type": "object",
    "properties": {"topic": TOPIC, "since": POSITION_SCHEMA},
    "required": ["topic"],
    "additionalProperties": False,
}
SUBSCRIBE_RESULT = {
    "type": "object",
    "properties": {
        "topic": {"type": "string"},
        "offset": {"type": "integer"},
        "epoch": {"type": "string"},
        "recovered": {"type": "boolean"},
    },
    "required": ["topic"],
}
UNSUBSCRIBE_PARAMS = {
    "type": "object",
    "properties": {"topic": TOPIC},
    "required": ["topic"],
    "additionalProperties": False,
}
PUBLISH_PARAMS = {
    "type": "object",
    "properties": {
        "topic": TOPIC,
        "type": {"type": "string", "minLength": 1, "maxLength": 128},
        "data": {},
    },
    "required": ["topic", "type", "data"],
    "additionalProperties": False,
}
PUBLISH_RESULT = {
    "type": "object",
    "properties": {"offset": {"type": "integer"}},
    "additionalProperties": False,
}


class PubSubComponent(Service):
    """Topic methods for clients."""

    name = "pubsub"

    def __init__(
        self,
        *,
        router: Router,
        broker: Broker,
        sessions: SessionsComponent,
        store: ISessionStore,
        max_subscriptions: int,
        max_watch: int,
    ) -> None:
        self._router = router
        self._broker = broker
        self._sessions = sessions
        self._store = store
        self._max_subscriptions = max_subscriptions
        self._max_watch = max_watch

    def startService(self) -> None:
        super().startService()
        self._router.register(
            "pubsub.subscribe",
            self.subscribe,
            params=SUBSCRIBE_PARAMS,
            result=SUBSCRIBE_RESULT,
            summary="Receive a topic's events; with since, missed ones first.",
        )
        self._router.register(
            "pubsub.unsubscribe",
            self.unsubscribe,
            params=UNSUBSCRIBE_PARAMS,
            result={"type": "object", "additionalProperties": False},
            summary="Stop receiving a topic's events.",
        )
        self._router.register(
            "pubsub.publish",
            self.publish,
            params=PUBLISH_PARAMS,
            result=PUBLISH_RESULT,
            summary="Publish a typed event on a topic.",
        )

    def stopService(self) -> None:
        for name in ("pubsub.subscribe", "pubsub.unsubscribe", "pubsub.publish"):
            self._router.unregister(name)
        super().stopService()

    async def subscribe(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        local = self._local(caller)
        topic = params["topic"]
        config = self._broker.policy.authorize(caller.principal, "subscribe", topic)
        if topic not in local.topics:
            self._check_bound(local, topic.startswith(WATCH_PREFIX))
        since = params.get("since")
        position = Position(since["offset"], since["epoch"]) if since else None
        top, recovered, activate = await self._broker.subscribe(caller, topic, position)
        local.topics.add(topic)
        stored = (position if recovered else top) if config.reliable else None
        await self._store.set_subscription(local.session_id, topic, stored)
        caller.after_reply(activate)
        result: dict[str, Any] = {"topic": topic}
        if top is not None:
            result["offset"], result["epoch"] = top.offset, top.epoch
        if recovered is not None:
            result["recovered"] = recovered
        return result

    async def unsubscribe(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        local = self._local(caller)
        topic = params["topic"]
        self._broker.unsubscribe(caller, topic)
        local.topics.discard(topic)
        await self._store.drop_subscription(local.session_id, topic)
        return {}

    async def publish(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        self._local(caller)
        return await self._broker.publish(
            caller.principal, params["topic"], params["type"], params["data"]
        )

    def _check_bound(self, local: Any, watch: bool) -> None:
        """Watched players (presence topics) and other topics: separate bounds."""
        count = sum(1 for t in local.topics if t.startswith(WATCH_PREFIX) == watch)
        bound = self._max_watch if watch else self._max_subscriptions
        if count >= bound:
            kind = "watched players" if watch else "subscriptions"
            raise topic_error(f"at most {bound} {kind}")

    def _local(self, caller: Any) -> Any:
        local = self._sessions.local(caller)
        if local is None:
            raise NotFound("this connection has no session")
        return local
