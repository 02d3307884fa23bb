"""A NATS client on Twisted: one connection, kept up, to one of a cluster's servers.

Why not nats-py: it runs on asyncio, so the gateway would have to run on
Twisted's asyncio reactor, which costs the gateway 17 % of its
throughput against epoll (``python -m bench reactors``, docs/cluster.rst);
the protocol is small enough that the client below, on any reactor, is
less code than the bridging would be.

Use::

    client = NatsClient(reactor, ["nats://127.0.0.1:4222"], token="s3cret")
    client.start()
    await client.when_connected()
    sub = client.subscribe("rtgw.t.>", on_message)         # on_message(Msg)
    await client.flush()                                   # SUB is in effect
    client.publish("rtgw.t.chat.lobby", b"hello")
    reply = await client.request("rtgw.rpc.world.interact", body, timeout=5)
    client.unsubscribe(sub)
    await client.stop()

Connection: the URLs (``nats://`` or ``tls://``, ``user:password@`` or
``token@`` allowed) are tried in turn, with a delay doubling from
``reconnect_delay_s`` to ``max_reconnect_delay_s`` between rounds, for as
long as the client runs; the servers a server announces (``connect_urls``
of its INFO) join the list. After every (re)connection the subscriptions
are made again, then what was published while disconnected is sent (at
most ``max_pending_bytes`` of it: past that :meth:`publish` raises
:class:`~.errors.BufferFull`), then a PING; its PONG makes the client
connected, and :meth:`on_connect` listeners hear of it. A connection that
leaves ``max_outstanding_pings`` of the client's PINGs (one per
``ping_interval_s``) unanswered is dropped and made again.

TLS: a ``tls://`` URL, or a server whose INFO says ``tls_required``,
upgrades the connection with Twisted's TLS after INFO, verifying the
server's certificate against ``tls_ca`` (a PEM file) or the system's trust
store. Credentials: ``token``, or ``user`` and ``password`` (NKEY/JWT
credential files are not supported).

Requests use one wildcard subscription on a per-client inbox and ask the
server for no-responders answers (``headers`` and ``no_responders`` in
CONNECT): a request nobody listens to fails at once with
:class:`~.errors.NoResponders`, one unanswered in time with
:class:`~.errors.RequestTimeout`. Every message, headers included, is
checked against the server's ``max_payload`` before it is sent
(:class:`~.errors.PayloadTooLarge`).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from rtgateway.nats import protocol as wire
from rtgateway.nats.errors import (
    AuthorizationError,
    BufferFull,
    NatsError,
    NoResponders,
    PayloadTooLarge,
    RequestTimeout,
)

DEFAULT_PORT = 4222
#: Assumed until the first INFO says otherwise (the server's default).
DEFAULT_MAX_PAYLOAD = 1024 * 1024
VERSION = "1"


@dataclass(frozen=True, slots=True)
class ServerURL:
    """One server to try: where, whether TLS is required, URL credentials."""

    host: str
    port: int
    tls: bool = False
    user: str | None = None
    password: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> ServerURL:
    """``nats://[user:password@|token@]host[:port]`` or ``tls://...``.

    Raises ValueError for anything else.
    """
    if "://" not in url:
        url = "nats://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise ValueError(f"not a NATS URL (nats:// or tls://host:port): {url!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in NATS URL {url!r}") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return ServerURL(parts.hostname, port, parts.scheme == "tls", user, password)


class Subscription:
    """What :meth:`NatsClient.subscribe` returns; hand it to ``unsubscribe``."""

    __slots__ = ("callback", "queue", "sid", "subject")

    def __init__(
        self,
        sid: int,
        subject: str,
        queue: str | None,
        callback: Callable[[wire.Msg], object],
    ) -> None:
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self.callback = callback


class _NatsProtocol(Protocol):
    """Bytes to the parser, messages to the client; nothing else."""

    client: NatsClient

    def __init__(self) -> None:
        self.parser = wire.Parser()
        self.got_info = False  # the first INFO starts the handshake
        self.on_lost: Deferred[None] | None = None  # fired by connectionLost

    def connectionMade(self) -> None:
        # Small writes must leave at once: with Nagle's algorithm a reply
        # written right after another waits for the server's delayed ACK
        # (40 ms on Linux), which made each routed call take that long.
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        self.client._connection_made(self)

    @property
    def open(self) -> bool:
        return self.transport is not None

    def write(self, data: bytes) -> None:
        cast(Any, self.transport).write(data)

    def abort(self) -> None:
        cast(Any, self.transport).abortConnection()

    def close(self) -> None:
        cast(Any, self.transport).loseConnection()

    def start_tls(self, options: Any) -> None:
        cast(Any, self.transport).startTLS(options)

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self.parser.feed(data)
        except (wire.ProtocolError, ValueError) as error:
            self.client.log.error("NATS protocol error: {error}", error=error)
            self.abort()
            return
        for message in messages:
            if self.transport is None:
                return
            self.client._received(self, message)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.client._connection_lost(self, reason)


class NatsClient:
    """A NATS connection kept up across server restarts and cluster changes."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        servers: Sequence[str],
        *,
        name: str = "rtgateway",
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        tls_ca: str | None = None,
        connect_timeout_s: float = 2.0,
        reconnect_delay_s: float = 0.1,
        max_reconnect_delay_s: float = 2.0,
        ping_interval_s: float = 10.0,
        max_outstanding_pings: int = 2,
        max_pending_bytes: int = 8 * 1024 * 1024,
        inbox_prefix: str = "_INBOX",
    ) -> None:
        if not servers:
            raise ValueError("at least one NATS server URL is needed")
        self._reactor = reactor
        self._servers = [parse_url(url) for url in servers]
        self._name = name
        self._token = token
        self._user = user
        self._password = password
        self._tls_ca = tls_ca
        self._connect_timeout = connect_timeout_s
        self._reconnect_delay = reconnect_delay_s
        self._max_reconnect_delay = max_reconnect_delay_s
        self._max_outstanding = max_outstanding_pings
        self._max_pending = max_pending_bytes
        self._inbox = f"{inbox_prefix}.{secrets.token_hex(11)}"
        self._running = False
        self._protocol: _NatsProtocol | None = None  # the connection being used
        self._connected = False  # handshake done on self._protocol
        self._current: ServerURL | None = None
        self._next_server = 0
        self._failures = 0  # rounds of the URL list without a connection
        self._retry: IDelayedCall | None = None
        self._attempt: Deferred | None = None
        self._handshake_deadline: IDelayedCall | None = None
        self._info: dict[str, Any] = {}
        self._last_error: NatsError | None = None
        self._subs: dict[int, Subscription] = {}
        self._next_sid = 1
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pongs: deque[Deferred | None] = deque()  # per PING on the wire
        self._connect_waiters: list[Deferred] = []  # when_connected()
        self._flush_waiters: list[Deferred] = []  # flush() while disconnected
        self._requests: dict[str, tuple[Deferred, IDelayedCall]] = {}
        self._next_request = 0
        self._inbox_sub: Subscription | None = None
        self._on_connect: list[Callable[[bool], object]] = []
        self._on_disconnect: list[Callable[[], object]] = []
        self._ever_connected = False
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = reactor
        self._ping_interval = ping_interval_s

    # -- life cycle

    def start(self) -> None:
        """Connect, and stay connected until :meth:`stop`."""
        if self._running:
            return
        self._running = True
        self._pinger.start(self._ping_interval, now=False)
        self._connect_next()

    def stop(self) -> Deferred[None]:
        """Close the connection for good; fires once it is closed.

        Requests in flight and waiters of :meth:`when_connected` and
        :meth:`flush` fail with :class:`~.errors.NatsError`; what is still
        pending is dropped.
        """
        self._running = False
        if self._pinger.running:
            self._pinger.stop()
        for call in (self._retry, self._handshake_deadline):
            if call is not None and call.active():
                call.cancel()
        self._retry = self._handshake_deadline = None
        if self._attempt is not None:
            self._attempt.cancel()
        closed = NatsError("NATS client stopped")
        for waiter, timer in list(self._requests.values()):
            timer.cancel()
            waiter.errback(closed)
        self._requests.clear()
        waiters = self._connect_waiters + self._flush_waiters
        waiters += [w for w in self._pongs if w is not None]
        self._connect_waiters, self._flush_waiters, self._pongs = [], [], deque()
        for waiter in waiters:
            waiter.errback(NatsError("NATS client stopped"))
        self._pending, self._pending_bytes = [], 0
        protocol, self._protocol = self._protocol, None
        self._connected = False
        if protocol is None or not protocol.open:
            return succeed(None)
        lost: Deferred[None] = Deferred()
        protocol.on_lost = lost
        protocol.close()
        return lost

    @property
    def connected(self) -> bool:
        """Whether the handshake with a server is done and the link is up."""
        return self._connected

    @property
    def server_info(self) -> dict[str, Any]:
        """The last INFO of the current (or last) server."""
        return dict(self._info)

    @property
    def max_payload(self) -> int:
        """The largest message the server takes, headers included."""
        return int(self._info.get("max_payload", DEFAULT_MAX_PAYLOAD))

    @property
    def servers(self) -> list[str]:
        """The servers tried, given ones first, then those a server announced."""
        return [s.address for s in self._servers]

    def when_connected(self) -> Deferred[None]:
        """Fires when connected (at once if so).

        Fails with :class:`~.errors.AuthorizationError` when a server refused
        the credentials (the client keeps trying), with
        :class:`~.errors.NatsError` when stopped.
        """
        if self._connected:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._connect_waiters.append(waiter)
        return waiter

    def on_connect(self, listener: Callable[[bool], object]) -> None:
        """Call ``listener(reconnected)`` after each handshake (subscriptions made)."""
        self._on_connect.append(listener)

    def on_disconnect(self, listener: Callable[[], object]) -> None:
        """Call ``listener()`` when an established connection is lost."""
        self._on_disconnect.append(listener)

    # -- messages

    def publish(
        self,
        subject: str,
        payload: bytes,
        reply: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send ``payload`` on ``subject`` (buffered while disconnected).

        Raises :class:`~.errors.PayloadTooLarge` over the server's
        ``max_payload``, :class:`~.errors.BufferFull` when disconnected with
        the pending buffer full, :class:`~.errors.NatsError` once stopped.
        Publications leave in the order of the calls.
        """
        if headers:
            data = wire.hpub(subject, headers, payload, reply)
            size = len(wire.encode_headers(headers)) + len(payload)
        else:
            data = wire.pub(subject, payload, reply)
            size = len(payload)
        if size > self.max_payload:
            raise PayloadTooLarge(size, self.max_payload)
        self._write(data)

    def subscribe(
        self,
        subject: str,
        callback: Callable[[wire.Msg], object],
        queue: str | None = None,
    ) -> Subscription:
        """Deliver the messages of ``subject`` (wildcards allowed) to ``callback``.

        In queue group ``queue``, each message goes to one member of the
        group only. The SUB is sent now (or on connection); :meth:`flush`
        fires once the server has it. Made again after every reconnection.
        """
        wire.check_subject(subject, wildcards=True)
        if queue is not None:
            wire.check_subject(queue)
        subscription = Subscription(self._next_sid, subject, queue, callback)
        self._next_sid += 1
        self._subs[subscription.sid] = subscription
        if self._protocol is not None and self._protocol.open:
            self._protocol.write(wire.sub(subject, subscription.sid, queue))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering ``subscription``; messages still in flight are dropped."""
        if self._subs.pop(subscription.sid, None) is None:
            return
        if self._connected and self._protocol is not None:
            self._protocol.write(wire.unsub(subscription.sid))

    def flush(self) -> Deferred[None]:
        """Fires once the server has processed everything sent before.

        While disconnected it fires after the next handshake (which makes
        the subscriptions and sends the pending messages first); bound it
        with ``addTimeout`` as needed.
        """
        if not self._running:
            return _failed(NatsError("NATS client stopped"))
        waiter: Deferred[None] = Deferred()
        if self._connected and self._protocol is not None:
            self._pongs.append(waiter)
            self._protocol.write(wire.PING)
        else:
            self._flush_waiters.append(waiter)
        return waiter

    def request(
        self,
        subject: str,
        payload: bytes,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> Deferred[wire.Msg]:
        """Publish with a reply subject; fires with the first reply's :class:`Msg`.

        Fails with :class:`~.errors.NoResponders` when the server knows of
        no subscriber, :class:`~.errors.RequestTimeout` after ``timeout``
        seconds, or as :meth:`publish` raises.
        """
        if self._inbox_sub is None:
            self._inbox_sub = self.subscribe(f"{self._inbox}.*", self._reply_received)
        self._next_request += 1
        reply = f"{self._inbox}.{self._next_request}"
        try:
            self.publish(subject, payload, reply, headers)
        except NatsError as error:
            return _failed(error)
        except PayloadTooLarge as error:
            return _failed(error)
        waiter: Deferred[wire.Msg] = Deferred()
        timer = self._reactor.callLater(timeout, self._request_timed_out, reply)
        self._requests[reply] = (waiter, timer)
        return waiter

    def _reply_received(self, msg: wire.Msg) -> None:
        entry = self._requests.pop(msg.subject, None)
        if entry is None:
            return  # late, after its timeout
        waiter, timer = entry
        timer.cancel()
        if msg.status == 503:
            waiter.errback(NoResponders())
        else:
            waiter.callback(msg)

    def _request_timed_out(self, reply: str) -> None:
        entry = self._requests.pop(reply, None)
        if entry is not None:
            entry[0].errback(RequestTimeout())

    def _write(self, data: bytes) -> None:
        if not self._running:
            raise NatsError("NATS client stopped")
        if self._connected and self._protocol is not None:
            self._protocol.write(data)
            return
        if self._pending_bytes + len(data) > self._max_pending:
            raise BufferFull(
                f"NATS disconnected and {self._pending_bytes} bytes already "
                f"pending (max_pending_bytes {self._max_pending})"
            )
        self._pending.append(data)
        self._pending_bytes += len(data)

    # -- connecting

    def _connect_next(self) -> None:
        self._retry = None
        if not self._running:
            return
        server = self._servers[self._next_server % len(self._servers)]
        self._next_server += 1
        if self._next_server % len(self._servers) == 0:
            self._failures += 1
        self._current = server
        factory = Factory.forProtocol(_NatsProtocol)
        factory.protocol = _NatsProtocol
        factory.buildProtocol = self._build_protocol  # type: ignore[method-assign]
        endpoint = HostnameEndpoint(
            self._reactor, server.host, server.port, timeout=self._connect_timeout
        )
        self._attempt = endpoint.connect(factory)
        self._attempt.addCallbacks(self._connected_tcp, self._connect_failed)

    def _build_protocol(self, addr: Any) -> _NatsProtocol:
        protocol = _NatsProtocol()
        protocol.client = self
        return protocol

    def _connected_tcp(self, protocol: _NatsProtocol) -> None:
        self._attempt = None

    def _connect_failed(self, failure: Failure) -> None:
        self._attempt = None
        if not self._running:
            return
        self.log.debug(
            "NATS server {server} unreachable: {error}",
            server=self._current.address if self._current else "?",
            error=failure.getErrorMessage(),
        )
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if not self._running or self._retry is not None:
            return
        delay = 0.0
        if self._next_server % len(self._servers) == 0:  # a whole round failed
            delay = min(
                self._max_reconnect_delay,
                self._reconnect_delay * 2 ** max(0, self._failures - 1),
            )
        self._retry = self._reactor.callLater(delay, self._connect_next)

    def _connection_made(self, protocol: _NatsProtocol) -> None:
        if not self._running:
            protocol.abort()
            return
        self._protocol = protocol
        self._pongs = deque()
        self._handshake_deadline = self._reactor.callLater(
            self._connect_timeout, self._handshake_timed_out, protocol
        )

    def _handshake_timed_out(self, protocol: _NatsProtocol) -> None:
        self._handshake_deadline = None
        self.log.warn("NATS server did not complete the handshake in time")
        protocol.abort()

    def _connection_lost(self, protocol: _NatsProtocol, reason: Failure | None) -> None:
        if protocol.on_lost is not None:
            protocol.on_lost.callback(None)
        if protocol is not self._protocol:
            return
        was_connected = self._connected
        self._protocol = None
        self._connected = False
        if self._handshake_deadline is not None and self._handshake_deadline.active():
            self._handshake_deadline.cancel()
        self._handshake_deadline = None
        # flush() waiters wait for the next connection instead.
        self._flush_waiters.extend(w for w in self._pongs if w is not None)
        self._pongs = deque()
        if was_connected:
            self.log.warn(
                "NATS connection to {server} lost; reconnecting",
                server=self._current.address if self._current else "?",
            )
            for listener in list(self._on_disconnect):
                _call(listener)
        self._schedule_retry()

    def _received(self, protocol: _NatsProtocol, message: wire.ServerMessage) -> None:
        if isinstance(message, wire.Msg):
            subscription = self._subs.get(message.sid)
            if subscription is not None:
                try:
                    subscription.callback(message)
                except Exception:
                    self.log.failure(
                        "NATS subscriber of {subject} failed",
                        subject=subscription.subject,
                    )
        elif isinstance(message, wire.Ping):
            protocol.write(wire.PONG)
        elif isinstance(message, wire.Pong):
            waiter = self._pongs.popleft() if self._pongs else None
            if waiter is not None:
                waiter.callback(None)
        elif isinstance(message, wire.Info):
            self._info_received(protocol, message.options)
        elif isinstance(message, wire.Err):
            self._error_received(protocol, message.message)

    def _info_received(self, protocol: _NatsProtocol, info: dict[str, Any]) -> None:
        self._info = info
        self._learn_servers(info.get("connect_urls") or [])
        if protocol.got_info:
            return  # an update (cluster change) on an established connection
        protocol.got_info = True
        server = self._current
        assert server is not None
        if server.tls or info.get("tls_required"):
            from twisted.internet.ssl import (
                Certificate,
                optionsForClientTLS,
                platformTrust,
            )

            trust: Any = platformTrust()
            if self._tls_ca is not None:
                trust = Certificate.loadPEM(Path(self._tls_ca).read_bytes())
            protocol.start_tls(optionsForClientTLS(server.host, trustRoot=trust))
        self._handshake(protocol, server)

    def _handshake(self, protocol: _NatsProtocol, server: ServerURL) -> None:
        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "tls_required": bool(server.tls or self._info.get("tls_required")),
            "name": self._name,
            "lang": "python-twisted",
            "version": VERSION,
            "protocol": 1,
            "headers": True,
            "no_responders": True,
        }
        user = server.user if server.user is not None else self._user
        password = server.password if server.password is not None else self._password
        token = self._token
        if server.user is not None and server.password is None:
            token, user = server.user, None  # nats://token@host
        if token is not None:
            options["auth_token"] = token
        elif user is not None:
            options["user"] = user
            options["pass"] = password or ""
        out = [wire.connect(options)]
        out += [wire.sub(s.subject, s.sid, s.queue) for s in self._subs.values()]
        out += self._pending
        self._pending, self._pending_bytes = [], 0
        out.append(wire.PING)
        self._pongs.append(_handshake_marker(self, protocol))
        protocol.write(b"".join(out))

    def _handshake_done(self, protocol: _NatsProtocol) -> None:
        if protocol is not self._protocol:
            return
        if self._handshake_deadline is not None and self._handshake_deadline.active():
            self._handshake_deadline.cancel()
        self._handshake_deadline = None
        self._connected = True
        self._failures = 0
        self._last_error = None
        reconnected = self._ever_connected
        self._ever_connected = True
        self.log.info(
            "NATS connected to {server}",
            server=self._current.address if self._current else "?",
        )
        # What was published while the handshake's PONG was on its way
        # leaves now, after what the handshake carried; flushes asked for
        # meanwhile wait for a PING sent after it.
        late, self._pending, self._pending_bytes = self._pending, [], 0
        flushes, self._flush_waiters = self._flush_waiters, []
        if late or flushes:
            protocol.write(b"".join(late) + (wire.PING if flushes else b""))
        if flushes:
            self._pongs.append(_all_of(flushes))
        waiters, self._connect_waiters = self._connect_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        for listener in list(self._on_connect):
            _call(listener, reconnected)

    def _error_received(self, protocol: _NatsProtocol, message: str) -> None:
        lowered = message.lower()
        if "authorization" in lowered or "authentication" in lowered:
            error: NatsError = AuthorizationError(
                f"NATS server {self._current.address if self._current else '?'} "
                f"refused the credentials: {message}"
            )
            self.log.error("{error}", error=error.message)
            self._last_error = error
            waiters, self._connect_waiters = self._connect_waiters, []
            for waiter in waiters:
                waiter.errback(error)
        elif lowered.startswith("permissions violation"):
            self.log.warn("NATS server refused: {message}", message=message)
        else:
            self.log.warn("NATS server error: {message}", message=message)

    def _learn_servers(self, urls: list[str]) -> None:
        known = {s.address for s in self._servers}
        tls = any(s.tls for s in self._servers)
        for url in urls:
            try:
                server = parse_url(url)
            except ValueError:
                continue
            if server.address not in known:
                known.add(server.address)
                self._servers.append(ServerURL(server.host, server.port, tls))

    def _ping(self) -> None:
        protocol = self._protocol
        if protocol is None or not self._connected:
            return
        if len(self._pongs) >= self._max_outstanding:
            self.log.warn("NATS server does not answer PING; dropping the connection")
            protocol.abort()
            return
        self._pongs.append(None)
        protocol.write(wire.PING)


def _handshake_marker(client: NatsClient, protocol: _NatsProtocol) -> Deferred:
    """The PONG waiter of a handshake's PING: it completes the handshake."""
    marker: Deferred[None] = Deferred()
    marker.addCallback(lambda _: client._handshake_done(protocol))
    return marker


def _all_of(waiters: list[Deferred]) -> Deferred:
    """One PONG waiter that fires ``waiters`` (or fails them) in turn."""
    done: Deferred[None] = Deferred()

    def fire(result: Any) -> Any:
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)
        return None

    return done.addBoth(fire)


def _call(listener: Callable[..., object], *args: Any) -> None:
    try:
        listener(*args)
    except Exception:
        NatsClient.log.failure("NATS connection listener failed")


def _failed(error: Exception) -> Deferred:
    waiter: Deferred = Deferred()
    waiter.errback(error)
    return waiter
