"""The NATS bus: the gateways' channels as NATS subjects, and the service subjects.

Every bus channel (:mod:`rtgateway.backends.keys`: ``rtgw.t.<topic>``,
``rtgw.z.<zone>``, ``rtgw.call.<gateway>``...) is the NATS subject of the
same name; a gateway subscribes to the subjects its sessions need and to
nothing else, as on Redis. ``subscribe`` fires once the server has
processed the SUB (a PING answered after it), within ``call_timeout_s`` or
with ``Unavailable``. After the connection comes back (the client makes
every subscription again before it says so) and the Redis command
connection is up too, the handler's ``bus_reconnected()`` says that
messages may have been missed, exactly as the Redis bus does.

Redis still stores what is stored: the history and state scripts then
return what they used to publish inside Redis, and the stores publish it
here once Redis answered (:mod:`..redis.history`, :mod:`..redis.state`).

Backend services may speak NATS directly (PROTOCOL.md section 8), so this
bus also carries the service subjects (:class:`IServiceBus`): the
procedures a gateway has callees of, each in its queue group
``rtgw.rpc.<procedure>``; calls this gateway sends there, answered on
``rtgw.reply.<gateway>.<n>`` (a call from a gateway names it in the
``Rtgw-Gateway`` header, and a gateway that takes such a call first
replies, empty, with its own id in that header; other callers get the
JSON-RPC response alone); and the publications services send to
``rtgw.publish.<topic>``, taken by one gateway of the queue group
``rtgw.publish``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rtgateway.backends.interfaces import IBus, IBusHandler, IServiceBus
from rtgateway.backends.keys import ACCEPTED_HEADER
from rtgateway.nats.client import NatsClient, Subscription
from rtgateway.nats.protocol import Msg
from rtgateway.wire.errors import RTGatewayError, Unavailable

RPC_PREFIX = "rtgw.rpc."
PUBLISH_PREFIX = "rtgw.publish."
PUBLISH_QUEUE = "rtgw.publish"


class Store(Protocol):
    """The store's connection, which the bus waits for after a loss."""

    @property
    def connected(self) -> bool: ...

    def add_up_listener(self, listener: Callable[[], None]) -> None: ...


def as_unavailable(failure: Failure) -> Failure:
    """Errback: a NATS call that failed or timed out becomes ``Unavailable``."""
    if failure.check(Unavailable):
        return failure
    if failure.check(TimeoutError, CancelledError, RTGatewayError):
        raise Unavailable() from failure.value
    return failure


@implementer(IBus, IServiceBus)
class NatsBus:
    """NATS subjects for one gateway; Redis stays the store (``redis``)."""

    log = Logger()

    def __init__(
        self,
        nats: NatsClient,
        redis: Store,
        gateway_id: str,
        timeout: float,
        clock: IReactorTime,
    ) -> None:
        self.handler: IBusHandler | None = None
        self.nats = nats
        self._redis = redis
        self._gateway_id = gateway_id
        self._timeout = timeout
        self._clock = clock
        self._running = False
        self._was_up = False
        self._resyncing = False
        self._subscriptions: dict[str, Subscription] = {}
        self._procedures: dict[str, Subscription] = {}
        self._publications: Subscription | None = None
        self._replies: Subscription | None = None
        self._reply_prefix = f"rtgw.reply.{gateway_id}."
        self._call_numbers = itertools.count(1)
        self._on_reply: Callable[[str, Msg], None] | None = None
        self._published: list[Deferred] = []  # waiting for the turn's PONG
        self._confirm_call: IDelayedCall | None = None
        nats.on_connect(self._connected)
        nats.on_disconnect(self._disconnected)
        redis.add_up_listener(self._check_resynced)

    # -- the connection

    def start(self) -> None:
        """Connect (and reconnect, until :meth:`stop`)."""
        self._running = True
        self.nats.start()

    def stop(self) -> Deferred:
        """Close the connection; fires once it is closed."""
        self._running = False
        if self._confirm_call is not None and self._confirm_call.active():
            self._confirm_call.cancel()
        self._confirm_call = None
        waiters, self._published = self._published, []
        for waiter in waiters:
            waiter.errback(Unavailable("the bus is stopping"))
        return self.nats.stop()

    @property
    def connected(self) -> bool:
        """Up, and the handler told of any loss (for ``/readyz``)."""
        return self.nats.connected and not self._resyncing

    def _connected(self, reconnected: bool) -> None:
        self.log.info("NATS bus connection up")
        if reconnected or self._was_up:
            self._resyncing = True
        self._was_up = True
        self._check_resynced()

    def _disconnected(self) -> None:
        if self._running:
            self.log.warn("NATS bus connection lost; reconnecting")

    def _check_resynced(self) -> None:
        if not self._resyncing or not self.nats.connected:
            return
        if not self._redis.connected:
            return  # the handler will want to read history: wait for Redis too
        self._resyncing = False
        self.log.info("NATS bus subscriptions restored")
        if self.handler is not None:
            self.handler.bus_reconnected()

    # -- IBus

    def subscribe(self, channel: str) -> Deferred:
        if not self._running or (self._was_up and not self.nats.connected):
            return fail(Unavailable())
        made = channel not in self._subscriptions
        if made:
            self._subscriptions[channel] = self.nats.subscribe(channel, self._deliver)
        flushed = self.nats.flush()
        flushed.addTimeout(self._timeout, self._clock)
        return flushed.addErrback(self._subscribe_failed, channel, made)

    def _subscribe_failed(self, failure: Failure, channel: str, made: bool) -> Failure:
        if made:  # give up a half-made subscription
            self.unsubscribe(channel)
        return as_unavailable(failure)

    def unsubscribe(self, channel: str) -> Deferred:
        subscription = self._subscriptions.pop(channel, None)
        if subscription is not None:
            self.nats.unsubscribe(subscription)
        return succeed(None)

    def publish(self, channel: str, message: bytes) -> Deferred:
        try:
            self.nats.publish(channel, message)
        except RTGatewayError as error:
            return fail(Unavailable(error.message))
        waiter: Deferred[None] = Deferred()
        self._published.append(waiter)
        if self._confirm_call is None:
            self._confirm_call = self._clock.callLater(0, self._confirm)
        return waiter

    def _confirm(self) -> None:
        """One PING after the publications of a turn; its PONG confirms them all.

        As on Redis, ``publish`` fires once the server has the message, so
        publications awaited one after the other keep their order whichever
        gateway sends them. The turn's PING has one timeout for all of them
        (most publications are not awaited: a timer each would cost more
        than the message).
        """
        self._confirm_call = None
        waiters, self._published = self._published, []
        confirmed = self.nats.flush().addTimeout(self._timeout, self._clock)
        confirmed.addCallbacks(
            lambda _: _fire(waiters), lambda failure: _fail(waiters, failure)
        )

    def _deliver(self, msg: Msg) -> None:
        if msg.subject not in self._subscriptions or self.handler is None:
            return
        try:
            self.handler.bus_message(msg.subject, msg.payload)
        except Exception:
            self.log.failure("bus handler failed on {channel}", channel=msg.subject)

    # -- IServiceBus

    def serve_procedure(
        self, procedure: str, handler: Callable[[bytes, Callable[[bytes], None]], None]
    ) -> None:
        if procedure in self._procedures:
            return
        subject = RPC_PREFIX + procedure
        self._procedures[procedure] = self.nats.subscribe(
            subject, lambda msg: self._take_call(msg, handler), queue=subject
        )

    def _take_call(
        self, msg: Msg, handler: Callable[[bytes, Callable[[bytes], None]], None]
    ) -> None:
        reply = msg.reply
        if reply is None:
            return  # a call nobody waits for is not made
        if msg.headers and ACCEPTED_HEADER in msg.headers:  # from a gateway
            self._send(reply, b"", {ACCEPTED_HEADER: self._gateway_id})
        try:
            handler(msg.payload, lambda body: self._send(reply, body))
        except Exception:
            self.log.failure("serving a call on {subject}", subject=msg.subject)

    def stop_procedure(self, procedure: str) -> None:
        subscription = self._procedures.pop(procedure, None)
        if subscription is not None:
            self.nats.unsubscribe(subscription)

    def on_reply(self, listener: Callable[[str, Msg], None]) -> None:
        self._on_reply = listener

    def call_procedure(self, procedure: str, body: bytes) -> str:
        if self._replies is None:
            self._replies = self.nats.subscribe(
                self._reply_prefix + "*", self._reply_received
            )
        key = str(next(self._call_numbers))
        self.nats.publish(
            RPC_PREFIX + procedure,
            body,
            reply=self._reply_prefix + key,
            headers={ACCEPTED_HEADER: self._gateway_id},
        )
        return key

    def _reply_received(self, msg: Msg) -> None:
        if self._on_reply is not None:
            self._on_reply(msg.subject.removeprefix(self._reply_prefix), msg)

    def serve_publications(
        self, handler: Callable[[str, bytes, Callable[[bytes], None] | None], None]
    ) -> None:
        if self._publications is not None:
            return
        self._publications = self.nats.subscribe(
            PUBLISH_PREFIX + ">",
            lambda msg: self._take_publication(msg, handler),
            queue=PUBLISH_QUEUE,
        )

    def _take_publication(
        self, msg: Msg, handler: Callable[[str, bytes, Any], None]
    ) -> None:
        reply = msg.reply
        answer = None if reply is None else (lambda body: self._send(reply, body))
        try:
            handler(msg.subject.removeprefix(PUBLISH_PREFIX), msg.payload, answer)
        except Exception:
            self.log.failure("taking a publication on {subject}", subject=msg.subject)

    def _send(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.nats.publish(subject, body, headers=headers)
        except RTGatewayError as error:
            self.log.warn(
                "answering on {subject} failed: {error}", subject=subject, error=error
            )


def _fire(waiters: list[Deferred]) -> None:
    for waiter in waiters:
        waiter.callback(None)


def _fail(waiters: list[Deferred], failure: Failure) -> None:
    for waiter in waiters:
        waiter.errback(Unavailable("NATS did not confirm the publication"))
