"""The base of a backend service process: procedures, events, world state.

A service subclasses :class:`Service`, declares its procedures with
:func:`~rtgateway.service.procedures.procedure` and connects one way or
both:

- :meth:`Service.connect`: a WebSocket connection to the gateways with a
  ``service`` token, through the Python client (:mod:`rtgateway.client`),
  so it reconnects with backoff over the gateways given and resumes its
  session by itself. Registrations belong to a connection, so every time
  the session opens (first connection, resume, new session) every
  procedure is registered again, with its schemas and summary. World
  state (``world.set``, ``world.remove``) is only reachable this way.
- :meth:`Service.connect_nats`: on a cluster whose bus is NATS, the
  service listens on ``rtgw.rpc.<procedure>`` in the procedure's queue
  group itself and publishes on ``rtgw.publish.<topic>``; a procedure
  served only on NATS is not listed by ``rpc.discover``, which knows the
  procedures registered over WebSocket.

Calls arriving either way are answered by one
:class:`~rtgateway.service.procedures.ProcedureTable`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.python.failure import Failure

from rtgateway.client.actions import ConnectionState
from rtgateway.client.errors import Conflict
from rtgateway.client.options import ClientOptions
from rtgateway.client.twisted_transport import TwistedClient
from rtgateway.nats.client import NatsClient
from rtgateway.nats.protocol import Msg
from rtgateway.service.procedures import ProcedureTable, declared

log = logging.getLogger("rtgateway.service")

RPC_PREFIX = "rtgw.rpc."
PUBLISH_PREFIX = "rtgw.publish."

#: ``change(fields)``: the fields to write, from those last known.
Change = Callable[[dict[str, Any]], dict[str, Any]]


class Service:
    """A backend service: its procedures, answered over WebSocket and NATS."""

    def __init__(self, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.procedures = ProcedureTable(declared(self))
        self.client: TwistedClient | None = None
        self.nats: NatsClient | None = None
        #: (zone, entity) -> (version, fields), as this service last wrote it.
        self.world: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        #: What :meth:`connect` returned, until the first registration fires it.
        self._first_registration: Deferred | None = None

    # -- WebSocket -------------------------------------------------------------------

    def connect(
        self,
        urls: str | list[str],
        token: Any,
        options: ClientOptions | None = None,
    ) -> Deferred:
        """Connect to the gateways; fires once every procedure is registered.

        ``token`` is a service token or a provider of one (see
        :class:`~rtgateway.client.twisted_transport.TwistedClient`).
        """
        client = TwistedClient(urls, token, options, reactor=self.reactor)
        self.client = client
        registered: Deferred = Deferred()
        self._first_registration = registered
        client.serve(self._serve_request)
        client.on("client.state", self._state_changed)
        client.start().addErrback(self._not_started)
        return registered

    def _state_changed(self, change: ConnectionState) -> None:
        """Register on every connection that opens, the first one included.

        The first registration's outcome is what :meth:`connect` fires with;
        a later one can only be logged, the service being up already.
        """
        if change.state != "open":
            return
        registration = self.register()
        first = self._first_registration
        if first is not None and not first.called:
            registration.chainDeferred(first)
        else:
            registration.addErrback(
                lambda failure: log.error("registering failed: %s", failure.value)
            )

    def _not_started(self, failure: Failure) -> None:
        """The client closed before its first connection opened."""
        first = self._first_registration
        if first is not None and not first.called:
            first.errback(failure)

    def register(self) -> Deferred:
        """Register every procedure on the current connection (it is per connection)."""
        client = self._client()
        calls = [client.call("rpc.register", p.registration()) for p in self.procedures]
        done = DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)
        return done.addCallbacks(
            lambda _: None, lambda failure: failure.value.subFailure
        )

    def _serve_request(
        self, request: dict[str, Any], reply: Callable[..., bool]
    ) -> None:
        self.procedures.answer(request).addCallback(_answer_with, reply)

    def close(self) -> Deferred:
        """Close the WebSocket connection and the NATS one, whichever are open."""
        closing = []
        if self.client is not None:
            closing.append(self.client.close())
        if self.nats is not None:
            closing.append(self.nats.stop())
        return DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)

    # -- NATS ------------------------------------------------------------------------

    def connect_nats(self, servers: Sequence[str], **options: Any) -> Deferred:
        """Serve the procedures on NATS; fires once the server has the subscriptions.

        ``options`` are those of :class:`~rtgateway.nats.client.NatsClient`
        (token, user and password, TLS CA, reconnection delays).
        """
        nats = NatsClient(self.reactor, servers, **options)
        self.nats = nats
        for proc in self.procedures:
            subject = RPC_PREFIX + proc.declaration.name
            nats.subscribe(subject, self._nats_call, queue=subject)
        nats.start()
        return nats.when_connected().addCallback(lambda _: nats.flush())

    def _nats_call(self, msg: Msg) -> None:
        reply = msg.reply
        if reply is None:
            return
        try:
            request = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            log.warning("unreadable call on %s", msg.subject)
            return
        self.procedures.answer(request).addCallback(
            _answer_with, lambda response: self._nats_reply(reply, response)
        )

    def _nats_reply(self, subject: str, response: dict[str, Any]) -> bool:
        assert self.nats is not None
        try:
            self.nats.publish(subject, orjson.dumps(response))
        except Exception as error:  # a result JSON cannot carry, NATS gone
            log.error("answering on %s failed: %s", subject, error)
            return False
        return True

    # -- what a service does -----------------------------------------------------------

    def publish(self, topic: str, type_name: str, data: Any) -> Deferred:
        """Publish an event to players; fires with the publish result.

        Over WebSocket when connected that way (``{"offset": n}`` for a
        reliable event), else on ``rtgw.publish.<topic>`` (NATS answers with
        ``{"result": ...}`` or ``{"error": ...}``; this fires with the
        result or fails with the error's message).
        """
        if self.client is not None:
            return self.client.call(
                "pubsub.publish", {"topic": topic, "type": type_name, "data": data}
            )
        if self.nats is None:
            raise RuntimeError("connect() or connect_nats() first")
        body = orjson.dumps({"type": type_name, "data": data})
        asked = self.nats.request(PUBLISH_PREFIX + topic, body, timeout=5.0)
        return asked.addCallback(_publish_outcome)

    def world_set(
        self,
        zone: str,
        entity: str,
        fields: dict[str, Any],
        expected_version: int | None = None,
    ) -> Deferred:
        """``world.set``: fires with the entity's new version.

        With ``expected_version`` (0: the entity must not exist yet) a
        concurrent write fails it with :class:`~rtgateway.client.errors.Conflict`,
        whose ``data["current_version"]`` is the version to retry from.
        """
        params: dict[str, Any] = {"zone": zone, "entity": entity, "fields": fields}
        if expected_version is not None:
            params["expected_version"] = expected_version
        written = self._client().call("world.set", params)
        return written.addCallback(self._written, zone, entity, fields)

    def _written(self, result: dict[str, Any], zone: str, entity: str, fields: dict):
        version = result["version"]
        known = self.world.get((zone, entity), (0, {}))[1]
        self.world[(zone, entity)] = (version, {**known, **fields})
        return version

    def world_remove(
        self, zone: str, entity: str, expected_version: int | None = None
    ) -> Deferred:
        """``world.remove``; :class:`~rtgateway.client.errors.Conflict` as for set."""
        params: dict[str, Any] = {"zone": zone, "entity": entity}
        if expected_version is not None:
            params["expected_version"] = expected_version
        removed = self._client().call("world.remove", params)
        return removed.addCallback(lambda _: self.world.pop((zone, entity), None))

    def world_update(
        self, zone: str, entity: str, change: Change, attempts: int = 3
    ) -> Deferred:
        """Compare-and-set: write ``change(fields)`` if nobody wrote in between.

        ``change`` gets the fields as this service last wrote them (services
        cannot read world entities) and returns the fields to write, which
        are set only if the entity is still at the version this service
        knows. On a conflict the known version moves to the current one and
        ``change`` runs again, ``attempts`` times at most; then the
        :class:`~rtgateway.client.errors.Conflict` is raised. Fires with the
        new version.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        return ensureDeferred(self._update(zone, entity, change, attempts))

    async def _update(self, zone: str, entity: str, change: Change, attempts: int):
        for attempt in range(1, attempts + 1):
            version, fields = self.world.get((zone, entity), (0, {}))
            try:
                return await self.world_set(zone, entity, change(dict(fields)), version)
            except Conflict as conflict:
                if attempt == attempts:
                    raise
                current = (conflict.data or {}).get("current_version", 0)
                self.world[(zone, entity)] = (current, fields)
        raise AssertionError("attempts >= 1: the loop returns or raises")

    def _client(self) -> TwistedClient:
        if self.client is None:
            raise RuntimeError("world state and registrations need connect()")
        return self.client


def _answer_with(response: dict[str, Any] | None, reply: Callable[..., bool]) -> None:
    """Send a response; a notification has none."""
    if response is not None:
        reply(response)


def _publish_outcome(msg: Msg) -> Any:
    outcome = orjson.loads(msg.payload)
    if "error" in outcome:
        raise RuntimeError(outcome["error"].get("message", "publication refused"))
    return outcome.get("result")
