"""One client's WebSocket connection: frames in, calls out, frames back.

The connection was authenticated and its codec chosen before the upgrade
(:mod:`rtgateway.gateway.upgrade`); here it turns frames into router calls
through the :class:`rtgateway.routing.dispatch.Dispatcher`, enforces the
per-connection limits (rate, frame type, send buffer, heartbeat, idle) and
closes with the protocol's close codes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IConsumer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rtgateway.gateway.backpressure import SendBufferGuard
from rtgateway.gateway.frames import frame_header, ping_frame, unmask
from rtgateway.gateway.heartbeat import Heartbeat
from rtgateway.gateway.host import ConnectionHost
from rtgateway.gateway.outbox import write_now
from rtgateway.gateway.trace import FrameTap, Sink, Watcher
from rtgateway.interfaces import IConnection
from rtgateway.ratelimit import AbuseDetector, TokenBucket
from rtgateway.routing.fanout import SharedMessage
from rtgateway.wire import closecodes
from rtgateway.wire.errors import InternalError, RateLimited, RTGatewayError
from rtgateway.wire.jsonrpc import decode_incoming, error_response, notification

if TYPE_CHECKING:
    from rtgateway.auth import Principal

from rtgateway.wire.codecs import Codec

_OPEN = WebSocketProtocol.STATE_OPEN
#: The options Autobahn copies from the factory onto each protocol.
_FACTORY_OPTIONS = tuple(WebSocketServerProtocol.CONFIG_ATTRS)


@implementer(IConnection)
class GatewayProtocol(WebSocketServerProtocol):
    """Server side of one client connection."""

    # Autobahn's own ``log`` (txaio, level-gated) must stay: it logs raw
    # handshakes and frames at debug level, which must never reach output.
    _log = Logger()
    factory: ConnectionHost
    # Set by the upgrade resource before the handshake is replayed.
    principal: Principal
    codec: Codec
    # One of Autobahn's options, copied from the factory (see with_options).
    maxMessagePayloadSize: int
    # Autobahn's _connectionMade copies each of CONFIG_ATTRS from the factory,
    # then pformats them all for a debug log that is never shown: a fifth of
    # the CPU of opening a connection. _connectionMade below copies them
    # itself and leaves Autobahn nothing to copy, or to format.
    CONFIG_ATTRS: list[str] = []
    # Frames are unmasked here (onFrameData), not by Autobahn, whose native
    # masker is built anew for every frame: see frames.unmask.
    applyMask = False
    #: Set while admins trace this connection (see :mod:`.trace`): the one
    #: attribute its hot paths check when nobody does.
    tap: FrameTap | None = None

    @classmethod
    def with_options(cls, factory: Any) -> type[GatewayProtocol]:
        """A subclass holding ``factory``'s Autobahn options as class attributes.

        Autobahn copies its 40-odd options onto every connection, where they
        took a connection's ``__dict__`` past 85 keys, the size at which it
        doubles: 1.6 KiB per connection. A class of the factory's own holds
        them once; Autobahn finds them there and copies nothing.
        """
        options = {
            name: getattr(factory, name)
            for name in _FACTORY_OPTIONS
            if name not in GatewayProtocol.__dict__
        }
        return type(cls.__name__, (cls,), options)

    def __init__(self) -> None:
        super().__init__()
        self._mask_offset = 0
        self.peer_host = ""
        self.connection_id = ""
        self.session_id: str | None = None
        self._reserved = False
        self._attached = False
        self._waiting: list[tuple[bytes, bool]] | None = []
        self._heartbeat: Heartbeat | None = None
        self._guard: SendBufferGuard | None = None
        self._bucket: TokenBucket | None = None
        self._abuse: AbuseDetector | None = None
        self._after_reply: list[Callable[[], Any]] = []
        # Frames waiting for the reactor's next turn (see outbox).
        self._outbox: list[bytes] | None = None
        self._after_outbox: list[Callable[[], None]] = []
        self.messages_in = self.messages_out = 0
        self.bytes_in = self.bytes_out = 0
        self.opened_at = 0.0

    # -- Autobahn's per-connection and per-frame work, made cheaper -------

    def _connectionMade(self) -> None:
        factory = self.factory
        for name in _FACTORY_OPTIONS:
            if not hasattr(self, name):
                setattr(self, name, getattr(factory, name))
        super()._connectionMade()

    def dataReceived(self, data: bytes) -> None:
        """Autobahn's, within the reactor turn's input budget.

        See :mod:`rtgateway.gateway.readbudget`: past it, the bytes wait
        (the transport paused) for the next turn, after the timers due.
        """
        self.factory.read_budget.receive(self, data, super().dataReceived)

    def onFrameBegin(self) -> None:
        self._mask_offset = 0
        super().onFrameBegin()

    def onFrameData(self, payload: bytes) -> bool | None:
        """Unmask what Autobahn hands over (``applyMask`` is off), then go on.

        Every frame, control frames included, passes here, possibly in
        several pieces: the offset keeps the mask aligned across them.
        """
        # Autobahn annotates FrameHeader.mask as str; it holds the frame's 4
        # mask bytes, or None for an unmasked frame.
        mask: bytes | None = self.current_frame.mask  # type: ignore[assignment]
        if mask is not None and payload:
            offset = self._mask_offset
            self._mask_offset = offset + len(payload)
            payload = unmask(payload, mask, offset)
        return super().onFrameData(payload)

    def onMessageEnd(self) -> None:
        """Autobahn's, without firing the ``message`` event when none listens.

        Autobahn fires it for every message, and that makes a Deferred each
        time even without a listener; the gateway registers none.
        """
        if self._listeners or self.trackedTimings:
            super().onMessageEnd()
            return
        if not self.failedByMe:
            payload = b"".join(self.message_data)
            self.onMessage(payload, self.message_is_binary)
        # As Autobahn's own onMessageEnd does; it declares a list.
        self.message_data = None  # type: ignore[assignment]

    # -- opening ---------------------------------------------------------

    def onConnect(self, request: Any) -> str | None:
        """Confirm the subprotocol the upgrade resource already chose."""
        return self.codec.SUBPROTOCOL if request.protocols else None

    def onOpen(self) -> None:
        factory = self.factory
        limits = factory.config.limits
        clock = factory.clock
        self.opened_at = clock.seconds()
        self._bucket = TokenBucket(clock, limits.rate_per_second, limits.rate_burst)
        self._abuse = AbuseDetector(
            clock, limits.abuse_rejections, limits.abuse_window_s
        )
        self._guard = SendBufferGuard(limits.send_buffer_bytes)
        # A stream transport (TCP, TLS) consumes; Twisted's Protocol declares
        # only ITransport.
        cast(IConsumer, self.transport).registerProducer(self._guard, True)
        heartbeat = factory.config.heartbeat
        self._heartbeat = Heartbeat(
            clock,
            interval=heartbeat.interval_s,
            timeout=heartbeat.timeout_s,
            idle_timeout=heartbeat.idle_timeout_s,
            send_ping=self._send_ping,
            on_dead=self._heartbeat_lost,
            on_idle=self._idle,
        )
        self._heartbeat.start()
        factory.connection_opened(self)
        maybeDeferred(factory.sessions.attach, self).addCallbacks(
            self._welcome, self._attach_failed
        )

    def _welcome(self, params: dict[str, Any]) -> None:
        if self.state != _OPEN:
            return
        self.session_id = params["session_id"]
        self._attached = True
        self.send_notification("session.welcome", params)
        waiting, self._waiting = self._waiting, None
        assert waiting is not None  # until the welcome, or the connection is lost
        for payload, is_binary in waiting:
            self.onMessage(payload, is_binary)

    def _attach_failed(self, failure: Any) -> None:
        self._log.failure(
            "could not attach a session to connection {connection_id}",
            failure=failure,
            connection_id=self.connection_id,
        )
        self.close(closecodes.GOING_AWAY, "session unavailable")

    # -- inbound -----------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.state != _OPEN:
            return
        if isBinary != self.codec.BINARY:
            kind = "binary" if isBinary else "text"
            self.close(
                closecodes.UNSUPPORTED_DATA, f"{kind} frames are not {self.codec.NAME}"
            )
            return
        if not self._attached:
            self._hold(payload, isBinary)
            return
        factory = self.factory
        factory.metrics.bytes_in.inc(len(payload))
        self.bytes_in += len(payload)
        if self.tap is not None:
            self.tap("in", payload)
        assert self._heartbeat is not None  # made by onOpen
        self._heartbeat.activity()
        try:
            incoming = decode_incoming(
                self.codec,
                payload,
                max_batch=factory.config.limits.max_batch,
                responses=self.is_service,
            )
        except RTGatewayError as error:
            self.messages_in += 1
            # Garbage costs a token like anything else, or it would be free.
            if self._admit() is None:
                self._reply(factory.dispatcher.error_document(error))
            return
        self.messages_in += len(incoming.entries)
        answer = factory.dispatcher.answer(self, incoming, self._admit)
        if isinstance(answer, Deferred):
            answer.addCallback(self._reply).addErrback(self._send_failed)
        else:
            self._reply(answer)

    def _reply(self, document: Any) -> None:
        """Send the answer to a message, then what was to follow it."""
        if document is not None:
            self.send_document(document)
        after, self._after_reply = self._after_reply, []
        for action in after:
            action()

    def after_reply(self, action: Callable[[], Any]) -> None:
        """Run ``action`` once the reply to the message in hand is sent.

        A handler that unlocks further messages (a subscribe's events, a
        close) uses this so that its reply goes out first.
        """
        self._after_reply.append(action)

    def _hold(self, payload: bytes, is_binary: bool) -> None:
        """Keep what arrives before the welcome, within the burst allowance."""
        waiting = self._waiting
        assert waiting is not None  # until the welcome, or the connection is lost
        if len(waiting) >= self.factory.config.limits.rate_burst:
            self.close(closecodes.SLOW_CONSUMER, "too many messages before welcome")
            return
        waiting.append((payload, is_binary))

    def _admit(self) -> RTGatewayError | None:
        bucket, abuse = self._bucket, self._abuse
        assert bucket is not None and abuse is not None  # made by onOpen
        if bucket.take():
            return None
        self.factory.metrics.rate_limited.inc()
        if abuse.rejected():
            self.close(closecodes.SLOW_CONSUMER, "sustained rate limit abuse")
        return RateLimited(bucket.retry_after_ms())

    def onPong(self, payload: bytes) -> None:
        assert self._heartbeat is not None  # made by onOpen
        self._heartbeat.pong(payload)

    def _send_ping(self, payload: bytes) -> None:
        """Autobahn's ``sendPing``, written directly like the data frames."""
        if self.state == _OPEN:
            self._write(ping_frame(payload))

    # -- outbound ----------------------------------------------------------

    def send_notification(self, method: str, params: Any) -> None:
        """Send a JSON-RPC notification (see :class:`IConnection`)."""
        if self.state == _OPEN:
            self.send_document(notification(method, params))

    def send_document(self, document: Any) -> None:
        """Encode and send one JSON-RPC document (object or batch array)."""
        if self.state != _OPEN:
            return
        try:
            payload = self.codec.encode(document)
        except (TypeError, ValueError):
            self._log.failure(
                "cannot encode a message for {connection_id}",
                connection_id=self.connection_id,
            )
            payload = self.codec.encode(_encodable(self.codec, document))
        self.send_payload(payload)

    def send_payload(self, payload: bytes) -> None:
        """Send an already encoded message, within the send-buffer bound."""
        if self.state != _OPEN:
            return
        assert self._guard is not None  # made by onOpen
        if not self._guard.admits(len(payload)):
            self.factory.metrics.slow_consumers.inc()
            self.close(closecodes.SLOW_CONSUMER, "send buffer full")
            return
        self.factory.metrics.bytes_out.inc(len(payload))
        self.messages_out += 1
        self.bytes_out += len(payload)
        if self.tap is not None:
            self.tap("out", payload)
        if self._perMessageCompress is None:
            self._write(frame_header(len(payload), self.codec.BINARY) + payload)
        else:
            self._unbounded(self.sendMessage, payload, self.codec.BINARY)

    @property
    def is_service(self) -> bool:
        """A backend service: the gateway sends it requests, it sends responses."""
        return self.principal.has_role("service")

    @property
    def writable(self) -> bool:
        """See :class:`IConnection` and :attr:`SendBufferGuard.writable`."""
        return self._guard is not None and self._guard.writable

    def when_writable(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the outbox is sent and the transport drained."""
        guard = self._guard
        assert guard is not None  # writes wait for the welcome, after onOpen
        if guard.paused:
            guard.when_drained(action)
        elif self._outbox is not None:
            self._after_outbox.append(action)
        else:
            action()

    def send_shared(self, message: SharedMessage) -> None:
        """Send a message shared by many connections (see :mod:`fanout`).

        Volatile messages of no priority are dropped, not queued, while the
        transport's buffer is full.
        """
        if self.state != _OPEN:
            return
        guard = self._guard
        assert guard is not None  # made by onOpen
        if message.droppable and guard.paused:
            self.factory.metrics.events_dropped.inc()
            return
        prepared = message.prepared(self.codec, self.factory.prepareMessage)
        frame = prepared.payloadHybi
        size = len(frame)
        if not guard.admits(size):
            self.factory.metrics.slow_consumers.inc()
            self.close(closecodes.SLOW_CONSUMER, "send buffer full")
            return
        self.factory.metrics.bytes_out.inc(size)
        self.messages_out += 1
        self.bytes_out += size
        if self.tap is not None:
            self.tap("out", message.payload(self.codec))
        if self._perMessageCompress is None:
            self._write(frame)
        else:
            self._unbounded(self.sendPreparedMessage, prepared)

    def send_outbox(self) -> None:
        """Send the frames gathered so far, then resume who waited for that."""
        self._flush_outbox()
        waiting, self._after_outbox = self._after_outbox, []
        for action in waiting:
            self.when_writable(action)

    def _flush_outbox(self) -> None:
        """Write the outbox; discard it if the connection was dropped."""
        outbox = self._outbox
        if outbox is None:
            return
        self._outbox = None
        assert self._guard is not None  # only open connections write
        self._guard.queued = 0
        if self.state == WebSocketProtocol.STATE_CLOSED:  # aborted
            return
        write_now(self.transport, outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def _write(self, data: bytes) -> None:
        """Queue a frame in the outbox (see :mod:`rtgateway.gateway.outbox`)."""
        if self._outbox is None:
            self._outbox = [data]
            self.factory.outboxes.schedule(self.send_outbox)
        else:
            self._outbox.append(data)
        assert self._guard is not None  # only open connections write
        self._guard.queued += len(data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: Any = None) -> None:
        """Autobahn's frame writer, keeping its frames behind the outbox.

        Who waits for the outbox to be sent (a paced replay) resumes on the
        next turn, not here: this may be a close frame, which no data frame
        may follow, and Autobahn marks the connection closing only after it
        is written.
        """
        if self._outbox is not None:
            self._flush_outbox()
            if self._after_outbox:
                self.factory.outboxes.schedule(self.send_outbox)
        super().sendData(data, sync, chopsize)

    def _unbounded(self, send: Callable[..., None], *args: Any) -> None:
        """Call an Autobahn send without the limit meant for incoming messages."""
        limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            send(*args)
        finally:
            self.maxMessagePayloadSize = limit

    def connection_stats(self) -> dict[str, int]:
        """Counters this connection adds to its session's analytics."""
        heartbeat = self._heartbeat
        return {
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "rtt_total_us": int(heartbeat.rtt_total * 1e6) if heartbeat else 0,
            "rtt_count": heartbeat.rtt_count if heartbeat else 0,
        }

    def watch(self, key: Any, sink: Sink) -> Watcher:
        """Show this connection's frames to ``sink`` (see :class:`IConnection`)."""
        admin = self.factory.config.admin
        if self.tap is None:
            self.tap = FrameTap(
                self.factory.clock, self.codec, admin.trace_max_frame_bytes
            )
        return self.tap.watch(key, admin.trace_rate, sink)

    def unwatch(self, key: Any) -> Watcher | None:
        """Stop showing frames under ``key``; the watcher it had, if any."""
        tap = self.tap
        if tap is None:
            return None
        watcher = tap.watchers.pop(key, None)
        if not tap.watchers:
            self.tap = None
        return watcher

    def inspect(self) -> dict[str, Any]:
        """What the admin inspector shows of this connection (no credentials)."""
        heartbeat, guard = self._heartbeat, self._guard
        rtt = heartbeat.average_rtt if heartbeat is not None else None
        buffered = guard.queued + guard.pending if guard is not None else 0
        limit = self.factory.config.limits.send_buffer_bytes
        return {
            "connection_id": self.connection_id,
            "peer": self.peer_host,
            "codec": self.codec.NAME,
            "roles": sorted(self.principal.roles),
            "since_ms": int(self.opened_at * 1000),
            "rtt_ms": round(rtt * 1000, 3) if rtt is not None else None,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "send_buffer": {
                "bytes": buffered,
                "limit": limit,
                "fill": round(min(1.0, buffered / limit), 4),
            },
            "traced": self.tap is not None,
        }

    def _send_failed(self, failure: Any) -> None:
        self._after_reply = []
        self._log.failure(
            "answering a message on {connection_id} failed",
            failure=failure,
            connection_id=self.connection_id,
        )

    # -- closing -----------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with any protocol close code.

        Autobahn's ``sendClose`` only allows 1000 and 3000-4999; the
        protocol also needs 1001, 1003 and 1009, so this writes the close
        frame directly.
        """
        if self.state == _OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123))
        elif self.state == WebSocketProtocol.STATE_CONNECTING:
            self.dropConnection(abort=True)

    def _heartbeat_lost(self) -> None:
        if self._not_reading():
            return
        self._log.info(
            "connection {connection_id} missed its heartbeat",
            connection_id=self.connection_id,
        )
        self.dropConnection(abort=True)

    def _idle(self) -> None:
        if self._not_reading():
            return
        self.close(closecodes.IDLE_TIMEOUT, "idle timeout")

    def _not_reading(self) -> bool:
        """Close 4008 if the transport's buffer is full; True if it was.

        A client that stopped reading is not idle, nor dead: its requests
        (and pongs) stopped because it does not take its answers (and our
        pings) off the socket. That is a slow consumer, whichever timer
        notices first.
        """
        if self.state != _OPEN or self._guard is None or not self._guard.paused:
            return False
        self.factory.metrics.slow_consumers.inc()
        self.close(closecodes.SLOW_CONSUMER, "not reading: send buffer full")
        return True

    def close_code(self) -> int:
        """The close code this connection ended with (1006 when dropped)."""
        if self.closedByMe and self.localCloseCode is not None:
            return self.localCloseCode
        if self.remoteCloseCode is not None and self.wasClean:
            return self.remoteCloseCode
        return closecodes.ABNORMAL

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.read_budget.forget(self)
        super().connectionLost(reason)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self._waiting = None
        self._outbox = None
        self._after_outbox = []
        self.tap = None
        self.factory.connection_lost(self)


def _encodable(codec: Codec, document: Any) -> Any:
    """``document`` with each response that cannot be encoded made -32603.

    A batch keeps its other responses; each failed one keeps its id.
    """
    if isinstance(document, list):
        return [_encodable(codec, entry) for entry in document]
    try:
        codec.encode(document)
    except (TypeError, ValueError):
        return error_response(document.get("id"), InternalError())
    return document
