"""The Redis bus: pub/sub on one subscriber connection per gateway.

A gateway SUBSCRIBEs only to the channels its sessions need (the scale-out
rule), and the subscriptions it holds are the source of truth: after the
subscriber connection is re-established they are all subscribed again in
one command, and once Redis has confirmed them (and the command connection
is up too, since the handler will want to read the history it missed) the
handler's ``bus_reconnected()`` says that messages may have been missed.

Subscribing and unsubscribing are batched: the calls of one reactor turn
become at most one UNSUBSCRIBE and one SUBSCRIBE. ``subscribe`` fires when
Redis confirms the SUBSCRIBE that carried the channel (so messages published
after that are delivered), within ``call_timeout_s`` or with
``Unavailable``; a channel whose subscription failed is given up again.
``unsubscribe`` takes effect at once: messages of channels not subscribed
are never handed to the handler, even those Redis sent before it confirmed
the UNSUBSCRIBE.

A subscriber connection that silently died (a network partition, a frozen
server) would never be noticed, since it only receives: a PING every
:data:`PING_INTERVAL_S` that is not answered within the call timeout drops
the connection, which is then re-established like any other lost one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rtgateway.backends.interfaces import IBus, IBusHandler
from rtgateway.backends.redis.client import RedisClient, as_unavailable
from rtgateway.backends.redis.connection import ConnectionFactory, make_endpoint
from rtgateway.backends.redis.resp import ReplyReaderProtocol
from rtgateway.backends.redis.target import RedisTarget
from rtgateway.wire.errors import Unavailable

#: Seconds between the subscriber connection's liveness checks (the default
#: of :attr:`RedisBus.ping_interval`, which tests shorten before starting).
PING_INTERVAL_S = 5.0


class SubscriberProtocol(ReplyReaderProtocol):
    """txredisapi's protocol (AUTH, RESP parsing); the bus takes the replies.

    Until the bus takes the connection over, replies go to txredisapi's
    queue, which is how its AUTH at connection time gets its answer.
    """

    bus: RedisBus | None = None

    def replyReceived(self, reply: Any) -> None:
        if self.bus is None:
            super().replyReceived(reply)
        else:
            self.bus.reply_received(reply)

    def send(self, *args: Any) -> None:
        """Write a command whose reply :meth:`RedisBus.reply_received` handles."""
        self.transport.write(self._build_command(*args))


@implementer(IBus)
class RedisBus:
    """Redis pub/sub for one gateway; ``publish`` uses the command connection."""

    log = Logger()

    def __init__(
        self,
        target: RedisTarget,
        client: RedisClient,
        timeout: float,
        clock: IReactorTime,
        name: str,
    ) -> None:
        self.handler: IBusHandler | None = None
        self._target = target
        self._client = client
        client.add_up_listener(self._check_resynced)
        self._timeout = timeout
        self._clock = clock
        self._name = name
        self._factory: ConnectionFactory | None = None
        self._protocol: SubscriberProtocol | None = None
        self._was_up = False
        self._resyncing: set[str] | None = None  # channels to confirm after a loss
        self._wanted: set[str] = set()  # what the gateway subscribed to
        self._confirmed: set[str] = set()  # wanted, and confirmed at least once
        self._sent: set[str] = set()  # subscribed, counting commands in flight
        self._queued: dict[str, list[Deferred]] = {}  # waiters of unsent SUBSCRIBEs
        self._confirming: dict[str, deque[list[Deferred]]] = {}  # per SUBSCRIBE sent
        self._flush_call: IDelayedCall | None = None
        self.ping_interval = PING_INTERVAL_S
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = clock
        self._pong_deadline: IDelayedCall | None = None

    # -- the connection

    def start(self, reactor: Any) -> None:
        """Connect the subscriber connection (and reconnect it until :meth:`stop`)."""
        self._factory = ConnectionFactory(
            self._target,
            1,
            database=None,  # pub/sub ignores databases
            reply_timeout=None,
            on_up=self._up,
            on_down=self._down,
        )
        self._factory.protocol = SubscriberProtocol
        self._factory.startConnecting(
            make_endpoint(reactor, self._target, self._timeout)
        )
        self._pinger.start(self.ping_interval, now=False)

    def stop(self) -> Deferred:
        """Close the subscriber connection; fires once it is closed."""
        if self._pinger.running:
            self._pinger.stop()
        for call in (self._flush_call, self._pong_deadline):
            if call is not None and call.active():
                call.cancel()
        # Subscriptions waiting for Redis will not get it.
        waiting = [w for batch in self._queued.values() for w in batch]
        for batches in self._confirming.values():
            waiting += [w for batch in batches for w in batch]
        self._queued, self._confirming = {}, {}
        for waiter in waiting:
            if not waiter.called:
                waiter.errback(Unavailable())
        factory, self._factory = self._factory, None
        return succeed(None) if factory is None else factory.disconnect()

    @property
    def connected(self) -> bool:
        """Up, and every subscription held is confirmed again after a loss."""
        return self._protocol is not None and self._resyncing is None

    def _up(self, protocol: SubscriberProtocol) -> None:
        self.log.info("Redis bus connection up")
        protocol.bus = self
        self._protocol = protocol
        protocol.send("CLIENT", "SETNAME", self._name)
        # Waiters of SUBSCRIBEs the old connection never confirmed wait for
        # the new ones instead (or are done, if unsubscribed meanwhile).
        confirming, self._confirming = self._confirming, {}
        for channel, batches in confirming.items():
            waiters = [waiter for batch in batches for waiter in batch]
            if channel in self._wanted:
                self._queued.setdefault(channel, []).extend(waiters)
            else:
                _fire(waiters)
        self._sent = set()
        if self._was_up:
            self._resyncing = set(self._wanted)
        self._was_up = True
        self._flush()
        self._check_resynced()

    def _down(self, protocol: SubscriberProtocol) -> None:
        if protocol is not self._protocol:
            return
        if self._factory is not None:  # not stopping
            self.log.warn("Redis bus connection lost; reconnecting")
        self._protocol = None
        if self._pong_deadline is not None and self._pong_deadline.active():
            self._pong_deadline.cancel()
        self._pong_deadline = None

    def _check_resynced(self) -> None:
        if self._resyncing is None or self._resyncing or self._protocol is None:
            return
        if not self._client.connected:
            return  # the handler will want to read history: wait for commands too
        self._resyncing = None
        self.log.info("Redis bus subscriptions restored")
        if self.handler is not None:
            self.handler.bus_reconnected()

    def _ping(self) -> None:
        if self._protocol is None or self._pong_deadline is not None:
            return
        self._protocol.send("PING")
        self._pong_deadline = self._clock.callLater(
            self._timeout, self._no_pong, self._protocol
        )

    def _no_pong(self, protocol: SubscriberProtocol) -> None:
        self._pong_deadline = None
        self.log.warn("Redis bus connection does not answer PING; dropping it")
        protocol.transport.abortConnection()

    # -- what Redis sends

    def reply_received(self, reply: Any) -> None:
        """One reply of the subscriber connection."""
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind == b"message":
                self._deliver(reply[1].decode(), reply[2])
            elif kind == b"subscribe":
                self._subscribed(reply[1].decode())
            elif kind == b"pong":
                self._pong()
            # unsubscribe confirmations need nothing: delivery already stopped
        elif isinstance(reply, Exception):
            self.log.error("Redis bus error reply: {error}", error=reply)
        elif isinstance(reply, str | bytes) and reply.lower() in ("pong", b"pong"):
            self._pong()  # PING outside subscribed mode (no channel held)

    def _deliver(self, channel: str, message: bytes) -> None:
        if channel not in self._wanted or self.handler is None:
            return
        try:
            self.handler.bus_message(channel, message)
        except Exception:
            self.log.failure("bus handler failed on {channel}", channel=channel)

    def _subscribed(self, channel: str) -> None:
        batches = self._confirming.get(channel)
        waiters = batches.popleft() if batches else []
        if batches is not None and not batches:
            del self._confirming[channel]
        if channel in self._wanted:
            self._confirmed.add(channel)
        _fire(waiters)
        if self._resyncing is not None:
            self._resyncing.discard(channel)
            self._check_resynced()

    def _pong(self) -> None:
        if self._pong_deadline is not None and self._pong_deadline.active():
            self._pong_deadline.cancel()
        self._pong_deadline = None

    # -- IBus

    def subscribe(self, channel: str) -> Deferred:
        if self._factory is None or (self._was_up and self._protocol is None):
            return fail(Unavailable())
        self._wanted.add(channel)
        waiter: Deferred[None] = Deferred()
        if channel in self._sent:
            batches = self._confirming.get(channel)
            if not batches:
                return succeed(None)  # already confirmed
            batches[-1].append(waiter)
        else:
            self._queued.setdefault(channel, []).append(waiter)
            self._schedule_flush()
        waiter.addTimeout(self._timeout, self._clock)
        return waiter.addErrback(self._subscribe_failed, channel)

    def _subscribe_failed(self, failure: Failure, channel: str) -> Failure:
        if channel not in self._confirmed:  # give up a half-made subscription
            self._forget(channel)
        return as_unavailable(failure)

    def unsubscribe(self, channel: str) -> Deferred:
        self._forget(channel)
        return succeed(None)

    def _forget(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._confirmed.discard(channel)
        # Subscriptions not sent yet are over before they began.
        _fire(self._queued.pop(channel, []))
        self._schedule_flush()
        if self._resyncing is not None:
            self._resyncing.discard(channel)
            self._check_resynced()

    def publish(self, channel: str, message: bytes) -> Deferred:
        call = self._client.execute("PUBLISH", channel, message)
        return call.addCallback(lambda _: None)

    def _schedule_flush(self) -> None:
        if self._flush_call is None and self._factory is not None:
            self._flush_call = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """Send what changed since the last flush: one UNSUBSCRIBE, one SUBSCRIBE."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if self._protocol is None:
            return  # sent by _up once the connection is back
        leaving = sorted(self._sent - self._wanted)
        joining = sorted(self._wanted - self._sent)
        if leaving:
            self._protocol.send("UNSUBSCRIBE", *leaving)
            self._sent.difference_update(leaving)
        if joining:
            self._protocol.send("SUBSCRIBE", *joining)
            self._sent.update(joining)
            for channel in joining:
                waiters = self._queued.pop(channel, [])
                self._confirming.setdefault(channel, deque()).append(waiters)


def _fire(waiters: list[Deferred]) -> None:
    """Fire subscribe() waiters; those that already timed out ignore it."""
    for waiter in waiters:
        waiter.callback(None)
