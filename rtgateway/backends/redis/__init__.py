"""The cluster backends: sessions, history, presence, state and the bus in Redis.

``[backend] kind = "redis"`` makes every gateway of a cluster share one
Redis (txredisapi): any gateway can load and resume any session, replay any
topic, and reach the others through pub/sub. :class:`RedisBackends` holds
two connections per gateway, each re-established by itself with backoff:
the command connection (:mod:`.client`) and the subscriber connection of the
bus (:mod:`.bus`). Every call is bounded by ``call_timeout_s`` and fails
with :class:`~rtgateway.wire.errors.Unavailable` when Redis is down or does
not answer in time.

Sharding: every key belongs to one session, topic or player and carries it
as a ``{hash tag}``. The session scripts also touch the resume-digest key,
which has its own tag because a resume token only names its digest; so they
need the session and its digest on one server (true of one Redis, or of
client-side sharding that places digest keys with their sessions). The
presence scripts cross player, gateway and zone keys: they need one Redis
(see :mod:`.presence` for what sharding them would take). The state scripts
touch the keys of one zone, all tagged by it (see :mod:`.state`). The
procedure scripts touch one procedure's key and the cluster-wide index of
names (see :mod:`.procedures`).

With ``bus = "nats"`` the bus is :class:`~rtgateway.backends.nats.NatsBus`
instead of Redis pub/sub: the subscriber connection gives way to a NATS
connection, and the history and state stores publish there what their
scripts would have published inside Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from zope.interface import implementer

from rtgateway.backends.interfaces import IBackends
from rtgateway.backends.nats import NatsBus
from rtgateway.backends.redis.bus import RedisBus
from rtgateway.backends.redis.client import RedisClient
from rtgateway.backends.redis.history import RedisHistory
from rtgateway.backends.redis.presence import RedisPresenceStore
from rtgateway.backends.redis.procedures import RedisProcedureRegistry
from rtgateway.backends.redis.sessions import RedisSessionStore
from rtgateway.backends.redis.state import RedisStateStore
from rtgateway.backends.redis.target import RedisTarget, parse_redis_url
from rtgateway.nats.client import NatsClient

if TYPE_CHECKING:
    from rtgateway.config import BackendConfig

__all__ = ["RedisBackends", "RedisTarget", "parse_redis_url"]


@implementer(IBackends)
class RedisBackends(Service):
    """The Redis sessions, history, presence, state and bus of one gateway.

    ``clock`` bounds every call; the connections are made with ``reactor``,
    by default the clock itself when it can make TCP connections (in
    production both are the reactor).
    """

    name = "backends"

    def __init__(
        self,
        config: BackendConfig,
        gateway_id: str,
        clock: IReactorTime,
        reactor: Any = None,
    ) -> None:
        self._target = parse_redis_url(config.redis_url)
        self._reactor = reactor
        if reactor is None and IReactorTCP.providedBy(clock):
            self._reactor = clock
        timeout = config.call_timeout_s
        self.client = RedisClient(self._target, timeout, clock, f"rtgw:{gateway_id}")
        self.bus: RedisBus | NatsBus
        if config.bus == "nats":
            self.bus = NatsBus(
                _nats_client(config, gateway_id, self._reactor or clock),
                self.client,
                gateway_id,
                timeout,
                clock,
            )
            outside = self.bus  # the stores publish on NATS themselves
        else:
            self.bus = RedisBus(
                self._target, self.client, timeout, clock, f"rtgw:{gateway_id}:bus"
            )
            outside = None  # the scripts publish inside Redis
        self.sessions = RedisSessionStore(self.client)
        self.history = RedisHistory(self.client, outside)
        self.presence = RedisPresenceStore(self.client)
        self.state = RedisStateStore(self.client, outside)
        self.procedures = RedisProcedureRegistry(self.client)

    def startService(self) -> None:
        super().startService()
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor  # txredisapi's reactor too
        self.client.start(reactor)
        if isinstance(self.bus, NatsBus):
            self.bus.start()
        else:
            self.bus.start(reactor)

    def stopService(self) -> Deferred:
        super().stopService()
        closed = DeferredList([self.bus.stop(), self.client.stop()], consumeErrors=True)
        return closed.addCallback(lambda _: None)

    def ready(self) -> bool:
        return self.client.connected and self.bus.connected


def _nats_client(config: BackendConfig, gateway_id: str, reactor: Any) -> NatsClient:
    """The gateway's NATS connection, as ``[backend]`` describes it."""
    if reactor is None:
        from twisted.internet import reactor
    return NatsClient(
        reactor,
        list(config.nats_url),
        name=f"rtgw:{gateway_id}",
        token=config.nats_token,
        user=config.nats_user,
        password=config.nats_password,
        tls_ca=config.nats_tls_ca,
        connect_timeout_s=config.call_timeout_s,
    )
