"""The command connection: every call bounded, every outage an ``Unavailable``.

All commands of a gateway go over one pipelined connection: Redis runs them
one at a time anyway, and one connection keeps them in the order they were
called (a pool would let ``set_subscription`` calls overtake each other).

A call never hangs. While the connection is down (after it has been up
once) a call fails at once, where txredisapi would queue it until the
reconnection; before the first connection (while the gateway starts) it
waits in txredisapi's queue. Either way it is bounded by ``call_timeout_s``
on the injected clock, and txredisapi's own reply timeout (the same value)
drops a connection that stopped answering so that it is re-established.
Connection failures and timeouts become
:class:`~rtgateway.wire.errors.Unavailable`, as do the replies of a server
that cannot serve for now (``LOADING``, ``BUSY``, ``READONLY`` after a
failover, ...); any other Redis error is a bug and propagates as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet import error
from twisted.internet.defer import Deferred, TimeoutError, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rtgateway.backends.redis.connection import ConnectionFactory, make_endpoint
from rtgateway.backends.redis.target import RedisTarget
from rtgateway.wire.errors import Unavailable

#: Error replies of a server that is up but cannot serve yet: retry later.
TRANSIENT_REPLIES = (
    "LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN",
    "OOM",  # full: writes come back once memory is freed
)  # fmt: skip

_CONNECTION_FAILURES = (
    txredisapi.ConnectionError,  # txredisapi's TimeoutError included
    TimeoutError,  # Deferred.addTimeout
    error.ConnectError,
    error.ConnectionLost,
    error.ConnectionDone,
)


def as_unavailable(failure: Failure) -> Failure:
    """Errback: a lost, refused or timed-out call becomes ``Unavailable``."""
    transient = failure.check(txredisapi.ResponseError) and str(
        failure.value
    ).startswith(TRANSIENT_REPLIES)
    if transient or failure.check(*_CONNECTION_FAILURES):
        raise Unavailable() from failure.value
    return failure


class Script:
    """A Lua script, called by its SHA1 and sent again when Redis lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisClient:
    """The guarded command connection of one gateway."""

    log = Logger()

    def __init__(
        self, target: RedisTarget, timeout: float, clock: IReactorTime, name: str
    ) -> None:
        self._target = target
        self._timeout = timeout
        self._clock = clock
        self._name = name
        self._factory: ConnectionFactory | None = None
        self._protocol: Any = None  # the live connection, once there is one
        self._was_up = False
        self._up_listeners: list[Callable[[], None]] = []
        #: Scripts Redis has answered by SHA1 (or loaded through EVAL).
        self._known: set[str] = set()

    def start(self, reactor: Any) -> None:
        """Start connecting (and reconnecting, until :meth:`stop`)."""
        self._factory = ConnectionFactory(
            self._target,
            1,
            database=self._target.db or None,
            reply_timeout=self._timeout,
            on_up=self._up,
            on_down=self._down,
        )
        self._factory.startConnecting(
            make_endpoint(reactor, self._target, self._timeout)
        )

    def stop(self) -> Deferred:
        """Close the connection; fires once it is closed."""
        factory, self._factory = self._factory, None
        if factory is None:
            return succeed(None)
        return factory.disconnect()

    @property
    def connected(self) -> bool:
        return self._protocol is not None

    def add_up_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` each time the connection is (re-)established."""
        self._up_listeners.append(listener)

    def _up(self, protocol: Any) -> None:
        self._protocol = protocol
        self._was_up = True
        self.log.info("Redis command connection up")
        # Lets operators tell gateways apart in CLIENT LIST.
        protocol.execute_command("CLIENT", "SETNAME", self._name).addErrback(
            self._setname_failed
        )
        for listener in self._up_listeners:
            listener()

    def _setname_failed(self, failure: Failure) -> None:
        # A connection lost or unanswered at once is an outage, which the
        # next call reports: a warning, not a traceback at every reconnection.
        if failure.check(*_CONNECTION_FAILURES):
            self.log.warn("CLIENT SETNAME failed: {why}", why=failure.value)
        else:
            self.log.failure("CLIENT SETNAME failed", failure)

    def _down(self, protocol: Any) -> None:
        if protocol is self._protocol:
            self._protocol = None
        if self._factory is not None:  # not stopping
            self.log.warn("Redis command connection lost; reconnecting")

    def _send(self, *args: Any) -> Deferred:
        if self._factory is None:  # not started, or stopped
            return fail(Unavailable())
        if self._protocol is not None:
            # Straight to the connection: txredisapi's handler would look it
            # up again in a generator for every command.
            try:
                return self._protocol.execute_command(*args)
            except txredisapi.ConnectionError:
                return fail(Unavailable())
        if self._was_up:  # down: fail fast rather than queue
            return fail(Unavailable())
        # Never connected yet (starting): wait in txredisapi's queue.
        return self._factory.handler.execute_command(*args)

    def _guard(self, call: Deferred) -> Deferred:
        call.addTimeout(self._timeout, self._clock)
        return call.addErrback(as_unavailable)

    def execute(self, *args: Any) -> Deferred:
        """Run one Redis command; fires with its reply (bulk strings as bytes)."""
        return self._guard(self._send(*args))

    def evaluate(self, script: Script, keys: list[str], args: list[Any]) -> Deferred:
        """Run ``script``: by its source until Redis has it, then by SHA1.

        A NOSCRIPT answer is sent again as EVAL only after its reply, so
        calls pipelined behind it would overtake it; sending the source
        until the first answer keeps the calls of different scripts in the
        order they were made. A script lost later (Redis restarted) still
        falls back to EVAL.
        """
        sha = script.sha
        if sha not in self._known:
            call = self._send("EVAL", script.source, len(keys), *keys, *args)
            call.addCallback(self._loaded, sha)
            return self._guard(call)
        call = self._send("EVALSHA", sha, len(keys), *keys, *args)
        call.addErrback(self._unknown_script, script, keys, args)
        return self._guard(call)

    def _loaded(self, reply: Any, sha: str) -> Any:
        self._known.add(sha)
        return reply

    def _unknown_script(
        self, failure: Failure, script: Script, keys: list[str], args: list[Any]
    ) -> Deferred | Failure:
        failure.trap(txredisapi.ResponseError)
        if not str(failure.value).startswith("NOSCRIPT"):
            return failure
        self._known.discard(script.sha)
        return self._send("EVAL", script.source, len(keys), *keys, *args).addCallback(
            self._loaded, script.sha
        )
