"""The broker: topic subscriptions, publication, ordered fan-out.

Reliable topics (a namespace with history and a reliable event type) get
their events from the bus only, this gateway's own publications included:
the history appends and publishes in one step, in offset order, so each
gateway sees one ordered stream per topic and delivers it by offset,
dropping duplicates and repairing gaps from history. Volatile events go
straight to local subscribers and out on the bus; their echo, tagged with
this gateway's id, is ignored.

Bus traffic follows local interest: the gateway subscribes to a topic's
channel when its first local subscriber arrives and leaves it with the last
one, so a gateway hears nothing of topics nobody here listens to.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from rtgateway.backends.interfaces import IBus, IBusHandler, ITopicHistory, Position
from rtgateway.backends.keys import topic_channel
from rtgateway.backends.memory import envelope, open_envelope
from rtgateway.metrics import GatewayMetrics
from rtgateway.routing.events import EventRegistry, EventType
from rtgateway.routing.fanout import SharedMessage
from rtgateway.routing.names import topic_error
from rtgateway.routing.topics import TopicPolicy
from rtgateway.wire.errors import InvalidParams, Unavailable

#: Seconds between attempts to fill a gap while the history is unreachable.
REPAIR_RETRY_S = 1.0


@dataclass(slots=True)
class Subscriber:
    """One connection's subscription to one topic.

    ``cursor`` is the last offset delivered (reliable topics); while
    ``waiting`` is not None, events queue there: a replay is being read, the
    reply to the subscribe has not been sent yet, or the queue is being sent
    at the pace the connection drains (a replay of thousands of events must
    not overflow the send buffer and close the connection 4008).
    """

    connection: Any
    cursor: int = 0
    epoch: str | None = None
    waiting: deque[tuple[int | None, str | None, SharedMessage]] | None = None

    def deliver(self, offset: int | None, epoch: str | None, message: SharedMessage):
        if self.waiting is not None:
            self.waiting.append((offset, epoch, message))
        else:
            self._send(offset, epoch, message)

    def flush(self) -> None:
        """Send what waits while the connection takes it, then go live."""
        waiting = self.waiting
        while waiting:
            if not self.connection.writable:
                self.connection.when_writable(self.flush)
                return
            self._send(*waiting.popleft())
        self.waiting = None

    def _send(self, offset: int | None, epoch: str | None, message: SharedMessage):
        if offset is not None:
            if epoch == self.epoch and offset <= self.cursor:
                return
            self.cursor, self.epoch = offset, epoch
        self.connection.send_shared(message)


@dataclass(slots=True)
class _Stream:
    """What this gateway follows of one topic."""

    topic: str
    reliable: bool
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    top: int = 0
    epoch: str | None = None
    #: Events held while the stream is being set up or repaired.
    held: list[tuple[int, str, bytes]] | None = None
    #: Set once the bus listens and the top is known.
    started: bool = False
    #: Subscribes waiting for the stream to be set up.
    waiters: list[Deferred] = field(default_factory=list)

    def position(self) -> Position:
        """The top of a reliable stream, whose epoch is known once it started."""
        assert self.epoch is not None
        return Position(self.top, self.epoch)


@implementer(IBusHandler)
class Broker:
    """Subscriptions and publications of the topics on this gateway."""

    log = Logger()

    def __init__(
        self,
        *,
        policy: TopicPolicy,
        events: EventRegistry,
        history: ITopicHistory,
        bus: IBus,
        clock: IReactorTime,
        gateway_id: str,
        metrics: GatewayMetrics,
        max_replay: int,
    ) -> None:
        self.policy = policy
        self.events = events
        self._history = history
        self._bus = bus
        self._clock = clock
        self._gateway_id = gateway_id
        self._metrics = metrics
        self._max_replay = max_replay
        self._streams: dict[str, _Stream] = {}
        self._channel_handlers: dict[str, Callable[[bytes], None]] = {}
        self._reconnect_listeners: list[Callable[[], None]] = []
        bus.handler = self

    # -- subscriptions ---------------------------------------------------------

    def topics(self) -> list[str]:
        """Topics this gateway follows on the bus (for tests and inspection)."""
        return sorted(self._streams)

    async def subscribe(
        self, connection: Any, topic: str, since: Position | None = None
    ) -> tuple[Position | None, bool | None, Callable[[], None]]:
        """Subscribe a connection; returns (top, recovered, activate).

        Nothing is delivered until ``activate()`` is called, so the caller
        can send its reply first: the replayed events (those after
        ``since``) then the live ones follow it, in offset order, without
        gap or duplicate. ``recovered`` is None without ``since`` and for
        volatile topics; ``top`` is None for volatile topics.
        """
        config = self.policy.namespace(topic)
        stream = await self._follow(topic, config.reliable)
        subscriber = Subscriber(connection, waiting=deque())
        replaced = stream.subscribers.get(connection.connection_id)
        if replaced is not None and replaced.waiting:
            replaced.waiting.clear()  # a subscribe again starts over
        stream.subscribers[connection.connection_id] = subscriber
        if not stream.reliable:
            return None, None, lambda: self._activate(subscriber, ())
        recovered = None
        replayed: tuple = ()
        subscriber.cursor, subscriber.epoch = stream.top, stream.epoch
        if since is not None:
            try:
                replay = await self._history.read(topic, since, self._max_replay)
            except Exception:
                self._unfollow(stream, connection)
                raise
            recovered = replay.recovered
            if recovered:
                subscriber.cursor, subscriber.epoch = since.offset, since.epoch
                replayed = tuple(
                    (
                        e.offset,
                        e.epoch,
                        self._message(orjson.loads(e.body), e.offset, e.epoch),
                    )
                    for e in replay.events
                )
        return (
            stream.position(),
            recovered,
            lambda: self._activate(subscriber, replayed),
        )

    def _activate(self, subscriber: Subscriber, replayed: tuple) -> None:
        subscriber.waiting = deque((*replayed, *(subscriber.waiting or ())))
        subscriber.flush()

    def unsubscribe(self, connection: Any, topic: str) -> bool:
        """Drop one subscription; False if there was none."""
        stream = self._streams.get(topic)
        if stream is None or connection.connection_id not in stream.subscribers:
            return False
        self._unfollow(stream, connection)
        return True

    def cursor(self, connection: Any, topic: str) -> Position | None:
        """The last position delivered to the connection on a reliable topic."""
        stream = self._streams.get(topic)
        subscriber = (
            stream.subscribers.get(connection.connection_id) if stream else None
        )
        if subscriber is None or subscriber.epoch is None:
            return None
        return Position(subscriber.cursor, subscriber.epoch)

    def drop_connection(self, connection: Any) -> None:
        """Forget every subscription of a connection that is gone."""
        for stream in list(self._streams.values()):
            if connection.connection_id in stream.subscribers:
                self._unfollow(stream, connection)

    async def _follow(self, topic: str, reliable: bool) -> _Stream:
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = _Stream(topic, reliable, held=[])
            self._metrics.bus_subscriptions.inc()
            Deferred.fromCoroutine(self._start(stream))
        if not stream.started:
            waiter: Deferred = Deferred()
            stream.waiters.append(waiter)
            await waiter
        return stream

    async def _start(self, stream: _Stream) -> None:
        """Listen on the bus, then learn the top: no event falls in between."""
        try:
            await self._bus.subscribe(topic_channel(stream.topic))
            if stream.reliable:
                replay = await self._history.read(stream.topic, None, 0)
                stream.top, stream.epoch = replay.top.offset, replay.top.epoch
        except Exception as error:
            if self._streams.get(stream.topic) is stream:
                del self._streams[stream.topic]
                self._metrics.bus_subscriptions.dec()
            waiters, stream.waiters = stream.waiters, []
            for waiter in waiters:
                waiter.errback(error)
            return
        stream.started = True
        self._release(stream)
        waiters, stream.waiters = stream.waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _unfollow(self, stream: _Stream, connection: Any) -> None:
        subscriber = stream.subscribers.pop(connection.connection_id, None)
        if subscriber is not None and subscriber.waiting:
            subscriber.waiting.clear()  # a paced replay stops here
        if stream.subscribers or self._streams.get(stream.topic) is not stream:
            return
        del self._streams[stream.topic]
        self._metrics.bus_subscriptions.dec()
        self._bus.unsubscribe(topic_channel(stream.topic)).addErrback(
            lambda failure: self.log.failure(
                "leaving the bus channel of {topic} failed",
                failure=failure,
                topic=stream.topic,
            )
        )

    # -- publication -----------------------------------------------------------

    async def publish(
        self, principal: Any, topic: str, type_name: str, data: Any
    ) -> dict[str, int]:
        """Validate and publish an event for a caller; the publish result."""
        self.policy.authorize(principal, "publish", topic)
        return await self.emit(topic, type_name, data, sender=principal.player_id)

    async def emit(
        self, topic: str, type_name: str, data: Any, *, sender: str | None = None
    ) -> dict[str, int]:
        """Publish an event on behalf of the gateway or a component.

        Checks the event type and its schema; reliable events on topics
        with history get an offset, returned as ``{"offset": n}``.
        """
        config = self.policy.namespace(topic)
        event_type = self._event_type(type_name)
        event_type.schema.check(data, ("data",))
        limit = config.max_payload_bytes
        if len(orjson.dumps(data)) > limit:
            raise InvalidParams(
                [{"path": "/data", "message": f"larger than {limit} bytes"}]
            )
        event: dict[str, Any] = {
            "topic": topic,
            "type": type_name,
            "data": data,
            "ts_ms": int(self._clock.seconds() * 1000),
            "g": self._gateway_id,
        }
        if sender is not None:
            event["from"] = sender
        body = orjson.dumps(event)
        self._metrics.events_published.inc()
        if config.reliable and event_type.reliable:
            ttl_ms = int(config.history_ttl_s * 1000)
            position = await self._history.append(
                topic, body, config.history_size, ttl_ms
            )
            return {"offset": position.offset}
        stream = self._streams.get(topic)
        if stream is not None:
            self._fan_out(stream, None, None, event, event_type)
        await self._bus.publish(topic_channel(topic), envelope(None, None, body))
        return {}

    def _event_type(self, type_name: str) -> EventType:
        event_type = self.events.get(type_name)
        if event_type is None:
            raise topic_error(f"unknown event type {type_name!r}", "/type")
        return event_type

    # -- inbound -------------------------------------------------------------------

    def add_channel_handler(
        self, channel: str, handler: Callable[[bytes], None]
    ) -> None:
        """Route a non-topic bus channel (control messages) to ``handler``."""
        self._channel_handlers[channel] = handler

    def remove_channel_handler(self, channel: str) -> None:
        """Stop routing ``channel`` (its component no longer follows it)."""
        self._channel_handlers.pop(channel, None)

    def add_reconnect_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the bus is back after a loss (see below)."""
        self._reconnect_listeners.append(listener)

    def bus_message(self, channel: str, message: bytes) -> None:
        self._metrics.bus_messages_received.inc()
        handler = self._channel_handlers.get(channel)
        if handler is not None:
            handler(message)
            return
        topic = channel.removeprefix(topic_channel(""))
        stream = self._streams.get(topic)
        if stream is None:
            return
        offset, epoch, body = open_envelope(message)
        if offset is None or epoch is None:  # volatile: neither is set
            event = orjson.loads(body)
            if event.get("g") != self._gateway_id:
                self._fan_out(stream, None, None, event, self.events.get(event["type"]))
            return
        if stream.held is not None:
            stream.held.append((offset, epoch, body))
            return
        self._sequence(stream, offset, epoch, body)

    def bus_reconnected(self) -> None:
        """Events may have been lost while the bus was down: repair every stream."""
        for stream in list(self._streams.values()):
            if stream.reliable and stream.held is None:
                self._repair(stream)
        for listener in self._reconnect_listeners:
            listener()

    def _sequence(self, stream: _Stream, offset: int, epoch: str, body: bytes) -> None:
        if epoch == stream.epoch:
            if offset <= stream.top:
                return
            if offset > stream.top + 1:
                stream.held = [(offset, epoch, body)]
                self._repair(stream)
                return
        elif offset > 1:
            # A new epoch (the history was lost) whose start this gateway
            # missed: its earlier events are in the history, read them.
            stream.held = [(offset, epoch, body)]
            self._repair(stream)
            return
        stream.top, stream.epoch = offset, epoch
        event = orjson.loads(body)
        self._fan_out(stream, offset, epoch, event, self.events.get(event["type"]))

    def _repair(self, stream: _Stream) -> None:
        """Fill a gap from history, holding live events meanwhile."""
        if stream.held is None:
            stream.held = []
        self._metrics.stream_repairs.inc()
        self._read_gap(stream)

    def _repaired(self, replay: Any, stream: _Stream) -> None:
        # Held events of an epoch the history no longer has cannot be placed.
        current = replay.top.epoch
        stream.held = [event for event in stream.held or () if event[1] == current]
        if replay.recovered:
            for event in replay.events:
                self._sequence(stream, event.offset, event.epoch, event.body)
        elif current != stream.epoch:
            # The history was lost and started a new epoch: every event of
            # it is new to the subscribers, from its first offset on.
            stream.top, stream.epoch = 0, current
            self._read_gap(stream)
            return
        else:
            # History no longer holds the gap: continue from its top; the
            # clients learn from the epoch or offsets that they must resync.
            stream.top, stream.epoch = replay.top.offset, replay.top.epoch
        self._release(stream)

    def _repair_failed(self, failure: Any, stream: _Stream) -> None:
        """Keep holding and retry while the history is out of reach.

        Delivering what is held now would skip the gap for good; while the
        backend is down little arrives to be held anyway.
        """
        if failure.check(Unavailable):
            self.log.warn(
                "history unavailable to repair {topic}; retrying", topic=stream.topic
            )
            self._clock.callLater(REPAIR_RETRY_S, self._read_gap, stream)
            return
        self.log.failure(
            "repairing {topic} from history failed", failure=failure, topic=stream.topic
        )
        self._release(stream)

    def _read_gap(self, stream: _Stream) -> None:
        if self._streams.get(stream.topic) is not stream:
            return
        d = self._history.read(stream.topic, stream.position(), self._max_replay)
        d.addCallback(self._repaired, stream)
        d.addErrback(self._repair_failed, stream)

    def _release(self, stream: _Stream) -> None:
        held, stream.held = stream.held or [], None
        for offset, epoch, body in held:
            if stream.held is not None:  # a new gap: keep holding
                stream.held.append((offset, epoch, body))
            else:
                self._sequence(stream, offset, epoch, body)

    def _fan_out(
        self,
        stream: _Stream,
        offset: int | None,
        epoch: str | None,
        event: dict[str, Any],
        event_type: EventType | None,
    ) -> None:
        if not stream.subscribers:
            return
        droppable = event_type.droppable if event_type is not None else False
        message = self._message(event, offset, epoch, droppable)
        for subscriber in list(stream.subscribers.values()):
            subscriber.deliver(offset, epoch, message)
        self._metrics.event_deliveries.inc(len(stream.subscribers))

    def _stored_message(self, stored: Any) -> SharedMessage:
        return self._message(orjson.loads(stored.body), stored.offset, stored.epoch)

    @staticmethod
    def _message(
        event: dict[str, Any], offset: int | None, epoch: str | None, droppable=False
    ) -> SharedMessage:
        params: dict[str, Any] = {
            "topic": event["topic"],
            "data": event["data"],
            "ts_ms": event["ts_ms"],
        }
        if offset is not None:
            params["offset"] = offset
            params["epoch"] = epoch
        if "from" in event:
            params["from"] = event["from"]
        document = {"jsonrpc": "2.0", "method": event["type"], "params": params}
        return SharedMessage(document, droppable=droppable)
