"""Routed procedures: players call methods that backend services provide.

A connection with the ``service`` role registers a procedure with
``rpc.register``; a player's call of it is sent to one callee as a JSON-RPC
request from the gateway, its params gaining ``_caller``, and the callee's
response goes back to the player (PROTOCOL.md section 8). Callees on this
gateway are used first, in turn (round robin); without one, the call goes
over the bus to another gateway that has one, found in the backend's
procedure registry, again in turn.

Each gateway renews its registry entries every third of the liveness TTL
(``presence.gateway_ttl_s``, the one its presence heartbeat uses), so a
gateway that dies loses its entries within that TTL; in the same loop it
checks the gateways its calls in flight wait on, and fails with -32005 the
calls of a gateway that no longer has an entry (it died). Calls to other
gateways travel on the callee gateway's call channel and their answers on
the caller's (:func:`call_channel`).

On the NATS bus (:class:`~rtgateway.backends.interfaces.IServiceBus`)
calls between gateways use the service subjects instead, so that backend
services listening on NATS themselves share the calls: a gateway with
callees of a procedure takes calls of it in the procedure's queue group,
and a call with no local callee is sent to that group. The member that
takes it says which gateway it is (none: a service on NATS), so that the
liveness loop can fail it with -32005 should that gateway die; nobody in
the group is -32601 at once (NATS's no-responders). A response that is not
a JSON-RPC response, or is larger than ``limits.max_message_bytes``, is
-32603. Services' publications on ``rtgw.publish.<topic>`` are published
here as the gateway's own (:meth:`ProceduresComponent.take_publication`).
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from rtgateway.backends.interfaces import IBus, IProcedureRegistry, IServiceBus
from rtgateway.backends.keys import ACCEPTED_HEADER, call_channel
from rtgateway.components.routed_calls import CalleeError, CallTable
from rtgateway.components.sessions import SessionsComponent
from rtgateway.routing.broker import Broker
from rtgateway.routing.names import (
    check_procedure,
    is_routable,
    split_topic,
    topic_error,
)
from rtgateway.routing.router import Router
from rtgateway.routing.schemas import CompiledSchema, SchemaDefinitionError
from rtgateway.wire.errors import (
    InternalError,
    InvalidParams,
    MethodNotFound,
    RTGatewayError,
    Unavailable,
)
from rtgateway.wire.jsonrpc import (
    Request,
    Response,
    error_response,
    parse_response,
    request,
    result_response,
)

PROCEDURE_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
PROCEDURE_PARAMS = {
    "type": "object",
    "properties": {"procedure": PROCEDURE_NAME},
    "required": ["procedure"],
    "additionalProperties": False,
}
#: ``rpc.register`` may describe the procedure for ``rpc.discover``.
REGISTER_PARAMS = {
    "type": "object",
    "properties": {
        "procedure": PROCEDURE_NAME,
        "params": {"type": "object"},
        "result": {"type": "object"},
        "summary": {"type": "string", "maxLength": 200},
    },
    "required": ["procedure"],
    "additionalProperties": False,
}
EMPTY_RESULT = {"type": "object", "additionalProperties": False}
METHODS = ("rpc.register", "rpc.unregister")
#: The owner of a call sent on NATS until a gateway says it took it.
NATS_SERVICE = ""


class ProceduresComponent(Service):
    """Registrations of this gateway's callees and the calls routed to them."""

    name = "procedures"
    log = Logger()

    def __init__(
        self,
        *,
        router: Router,
        broker: Broker,
        sessions: SessionsComponent,
        registry: IProcedureRegistry,
        bus: IBus,
        config: Any,
        clock: IReactorTime,
    ) -> None:
        self._router = router
        self._broker = broker
        self._registry = registry
        self._bus = bus
        self._settings = config.procedures
        self._ttl_s = config.presence.gateway_ttl_s
        self._gateway_id = config.gateway.id
        self._clock = clock
        #: procedure -> local callees in registration order, and the next turn.
        self._callees: dict[str, list[Any]] = {}
        self._turns: dict[str, int] = {}
        self._remote_turns: dict[str, int] = {}
        #: procedure -> the description (JSON) its last describing callee gave.
        self._descriptions: dict[str, bytes] = {}
        limit = self._settings.max_in_flight
        self._local = CallTable(clock, limit)
        self._remote = CallTable(clock, limit)
        self._ids = itertools.count(1)
        self._renewal = LoopingCall(self._renew)
        self._renewal.clock = clock
        self._max_response = config.limits.max_message_bytes
        self._least_busy = self._settings.balance == "least_busy"
        self._nats = bus if IServiceBus.providedBy(bus) else None
        if self._nats is not None:
            self._nats.on_reply(self._nats_reply)
        sessions.add_listener(self)

    # -- service ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        register = self._router.register
        register(
            "rpc.register",
            self.register,
            params=REGISTER_PARAMS,
            result=EMPTY_RESULT,
            roles=["service"],
            summary="Receive players' calls of a procedure (backend services).",
        )
        register(
            "rpc.unregister",
            self.unregister,
            params=PROCEDURE_PARAMS,
            result=EMPTY_RESULT,
            roles=["service"],
            summary="Stop receiving calls of a procedure.",
        )
        self._router.route_unknown(self)
        if self._nats is None:
            # On NATS calls between gateways travel on the service subjects;
            # nothing is ever sent on a call channel there.
            own = call_channel(self._gateway_id)
            self._broker.add_channel_handler(own, self._bus_message)
            self._bus.subscribe(own).addErrback(self._log_failure, "joining " + own)
        self._renewal.start(self._ttl_s / 3, now=False).addErrback(
            self._log_failure, "the procedure renewal loop"
        )
        if self._nats is not None:
            self._nats.serve_publications(self.take_publication)

    def stopService(self) -> None:
        for name in METHODS:
            self._router.unregister(name)
        self._router.route_unknown(None)
        if self._renewal.running:
            self._renewal.stop()
        gone = Unavailable("the gateway is stopping")
        self._local.fail_all(gone)
        self._remote.fail_all(gone)
        for procedure in list(self._callees):
            self._withdraw(procedure)
            if self._nats is not None:
                self._nats.stop_procedure(procedure)
        self._callees.clear()
        self._descriptions.clear()
        if self._nats is None:
            self._broker.remove_channel_handler(call_channel(self._gateway_id))
        super().stopService()

    # -- registration ----------------------------------------------------------

    async def register(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        procedure = params["procedure"]
        check_procedure(procedure, self._taken())
        description = describe(params, self._settings.max_schema_bytes)
        callees = self._callees.setdefault(procedure, [])
        if caller not in callees:
            callees.append(caller)
        if self._nats is not None:
            self._nats.serve_procedure(procedure, self._serve_nats_call)
        if description is not None:
            self._descriptions[procedure] = description
        if len(callees) == 1 or description is not None:
            ttl_ms = int(self._ttl_s * 1000)
            try:
                await self._registry.advertise(
                    [procedure], self._gateway_id, ttl_ms, self._described([procedure])
                )
            except Exception:
                self._drop_callee(caller, procedure)
                raise
        self.log.info(
            "{connection_id} registered {procedure}",
            connection_id=caller.connection_id,
            procedure=procedure,
        )
        return {}

    async def unregister(self, caller: Any, params: dict[str, Any]) -> dict[str, Any]:
        procedure = params["procedure"]
        if caller not in self._callees.get(procedure, ()):
            raise topic_error("this connection has not registered it", "/procedure")
        self._drop_callee(caller, procedure)
        return {}

    def procedures(self) -> list[str]:
        """The procedures with a callee on this gateway."""
        return sorted(self._callees)

    def names(self) -> Deferred:
        """Every procedure registered in the cluster (for ``rpc.discover``)."""
        return self._registry.procedures()

    async def catalog(self) -> dict[str, dict[str, Any] | None]:
        """Every procedure of the cluster with its description, if it has one."""
        names = await self._registry.procedures()
        found = await self._registry.descriptions(names)
        return {name: _loaded(found.get(name)) for name in names}

    def local_catalog(self) -> dict[str, dict[str, Any] | None]:
        """This gateway's procedures and descriptions (the registry is down)."""
        return {
            name: _loaded(self._descriptions.get(name)) for name in self.procedures()
        }

    def _described(self, procedures: list[str]) -> dict[str, bytes]:
        return {p: self._descriptions[p] for p in procedures if p in self._descriptions}

    def _drop_callee(self, connection: Any, procedure: str) -> None:
        callees = self._callees.get(procedure)
        if callees is None or connection not in callees:
            return
        callees.remove(connection)
        if not callees:
            del self._callees[procedure]
            self._turns.pop(procedure, None)
            self._descriptions.pop(procedure, None)
            self._withdraw(procedure)
            if self._nats is not None:
                self._nats.stop_procedure(procedure)

    def _withdraw(self, procedure: str) -> None:
        self._registry.withdraw(procedure, self._gateway_id).addErrback(
            self._log_failure, "withdrawing " + procedure
        )

    def _taken(self) -> set[str]:
        """Namespaces of the methods other components registered."""
        return {method.name.split(".", 1)[0].lower() for method in self._router}

    def connection_detached(self, local: Any) -> None:
        """A callee that is gone fails its calls in flight (-32005)."""
        connection = local.connection
        for procedure in [p for p, c in self._callees.items() if connection in c]:
            self._drop_callee(connection, procedure)
        self._local.fail_owner(
            connection.connection_id, Unavailable("the callee disconnected")
        )

    # -- calls from players ----------------------------------------------------

    def route(self, caller: Any, call: Request) -> Any:
        """Send a player's call to a callee; a Deferred of the callee's result."""
        procedure = call.method
        if not is_routable(procedure, self._taken()):
            raise MethodNotFound()
        params = call.params if call.params is not None else {}
        if not isinstance(params, dict):
            raise InvalidParams(
                [{"path": "", "message": "a routed call takes params by name"}]
            )
        params = {**params, "_caller": _caller(caller)}
        timeout_s = self._timeout(procedure)
        if procedure in self._callees:
            return self._call_local(procedure, params, timeout_s)
        if self._nats is not None:
            return self._call_nats(procedure, params, timeout_s)
        return Deferred.fromCoroutine(self._call_remote(procedure, params, timeout_s))

    def _timeout(self, procedure: str) -> float:
        return self._settings.timeouts.get(procedure, self._settings.call_timeout_s)

    def _call_local(self, procedure: str, params: dict, timeout_s: float) -> Deferred:
        """Invoke the next local callee; raises -32601 when there is none."""
        callees = self._callees.get(procedure)
        if not callees:
            raise MethodNotFound()
        callee = self._choose(procedure, callees)
        call_id = next(self._ids)
        try:
            payload = callee.codec.encode(request(call_id, procedure, params))
        except (TypeError, ValueError):
            raise _not_relayable() from None
        answer = self._local.add(call_id, callee.connection_id, procedure, timeout_s)
        callee.send_payload(payload)
        return answer

    def _choose(self, procedure: str, callees: list[Any]) -> Any:
        """The callee of the next call: in turn, or the least busy.

        ``least_busy`` takes the callee with the fewest calls in flight,
        the turn order breaking ties, so equal callees still alternate and
        a slow one gets fewer calls instead of a queue (``python -m bench
        balance`` measures both).
        """
        turn = self._turns.get(procedure, 0) % len(callees)
        self._turns[procedure] = turn + 1
        if not self._least_busy or len(callees) == 1:
            return callees[turn]
        load = self._local.load
        best, fewest = callees[turn], load(callees[turn].connection_id)
        for callee in callees[turn + 1 :] + callees[:turn]:
            if fewest == 0:
                break
            calls = load(callee.connection_id)
            if calls < fewest:
                best, fewest = callee, calls
        return best

    async def _call_remote(self, procedure: str, params: dict, timeout_s: float):
        gateways = await self._registry.gateways(procedure)
        gateways = [g for g in gateways if g != self._gateway_id]
        if not gateways:
            raise MethodNotFound()
        turn = self._remote_turns.get(procedure, 0) % len(gateways)
        self._remote_turns[procedure] = turn + 1
        target = gateways[turn]
        call_id = next(self._ids)
        message = {
            "op": "call",
            "id": call_id,
            "g": self._gateway_id,
            "procedure": procedure,
            "params": params,
            "timeout_ms": int(timeout_s * 1000),
        }
        try:
            body = orjson.dumps(message)
        except TypeError:
            raise _not_relayable() from None
        answer = self._remote.add(call_id, target, procedure, timeout_s)
        sent = self._bus.publish(call_channel(target), body)
        sent.addErrback(lambda f: self._remote.fail(call_id, Unavailable()))
        return await answer

    # -- calls on NATS ----------------------------------------------------------

    def _call_nats(self, procedure: str, params: dict, timeout_s: float) -> Deferred:
        """Send the call to the procedure's queue group on NATS."""
        assert self._nats is not None
        call_id = next(self._ids)
        try:
            body = orjson.dumps(request(call_id, procedure, params))
        except TypeError:
            raise _not_relayable() from None
        key = self._nats.call_procedure(procedure, body)
        return self._remote.add(key, NATS_SERVICE, procedure, timeout_s)

    def _nats_reply(self, key: str, msg: Any) -> None:
        """A reply to a call sent on NATS: who took it, or its answer."""
        call = self._remote.get(key)
        if call is None:
            return  # late, after its timeout
        if msg.status == 503:
            self._remote.fail(key, MethodNotFound())
        elif msg.headers and ACCEPTED_HEADER in msg.headers and not msg.payload:
            self._remote.reassign(key, msg.headers[ACCEPTED_HEADER])
        elif len(msg.payload) > self._max_response:
            self.log.warn(
                "a response to {procedure} over the size limit",
                procedure=call.procedure,
            )
            self._remote.fail(key, InternalError())
        else:
            self._answer_from(key, msg.payload, call.procedure)

    def _answer_from(self, key: str, payload: bytes, procedure: str) -> None:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            document = None
        response = (
            parse_response(document)
            if isinstance(document, dict)
            else Response(None, malformed=True)
        )
        if response.malformed:
            self.log.warn(
                "a malformed response to {procedure} on NATS", procedure=procedure
            )
            self._remote.fail(key, InternalError())
        elif response.error is not None:
            self._remote.fail(key, CalleeError(response.error))
        else:
            self._remote.resolve(key, response.result)

    def _serve_nats_call(self, body: bytes, answer: Any) -> None:
        """A call from the queue group (a gateway or a service) for a callee here."""
        try:
            message = orjson.loads(body)
            call_id = message.get("id")
            procedure, params = message["method"], message.get("params", {})
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            self.log.warn("unreadable call on NATS")
            return
        if not isinstance(params, dict) or not isinstance(procedure, str):
            error: RTGatewayError = InvalidParams(
                [{"path": "", "message": "a routed call takes params by name"}]
            )
            answer(orjson.dumps(error_response(call_id, error)))
            return
        try:
            done = self._call_local(procedure, params, self._timeout(procedure))
        except RTGatewayError as refused:
            answer(orjson.dumps(error_response(call_id, refused)))
            return
        done.addCallbacks(
            lambda result: answer(_json(result_response(call_id, result), call_id)),
            lambda failure: answer(
                orjson.dumps(error_response(call_id, self._error(failure)))
            ),
        )

    def take_publication(self, topic: str, body: bytes, answer: Any) -> None:
        """A service's ``{type, data}`` on ``rtgw.publish.<topic>``, published here.

        With a reply subject the service hears the publish result (JSON-RPC
        shaped: ``{"result": {"offset": n}}`` or ``{"error": {...}}``).
        """
        Deferred.fromCoroutine(self._publication(topic, body)).addCallback(
            lambda outcome: answer(orjson.dumps(outcome)) if answer else None
        )

    async def _publication(self, topic: str, body: bytes) -> dict[str, Any]:
        try:
            event = orjson.loads(body)
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise InvalidParams(
                    [{"path": "", "message": "a publication is {type, data}"}]
                )
            if set(event) - {"type", "data"}:
                raise InvalidParams([{"path": "", "message": "only type and data"}])
            split_topic(topic)
            result = await self._broker.emit(topic, event["type"], event.get("data"))
        except orjson.JSONDecodeError:
            return {
                "error": InvalidParams(
                    [{"path": "", "message": "not JSON"}]
                ).to_error_object()
            }
        except RTGatewayError as error:
            return {"error": error.to_error_object()}
        except Exception:
            self.log.failure("a publication from NATS failed")
            return {"error": InternalError().to_error_object()}
        return {"result": result}

    # -- responses from callees ------------------------------------------------

    def response(
        self, caller: Any, response: Response, refusal: RTGatewayError | None
    ) -> None:
        """A callee answered; only the callee a call was sent to may answer it."""
        call = self._local.get(response.id)
        if call is None or call.owner != caller.connection_id:
            self.log.debug(
                "response {id!r} from {connection_id} answers no call",
                id=response.id,
                connection_id=caller.connection_id,
            )
            return
        if refusal is not None:
            self._local.fail(response.id, Unavailable("the callee is over its rate"))
        elif response.malformed:
            self.log.warn(
                "{connection_id} sent a malformed response to {procedure}",
                connection_id=caller.connection_id,
                procedure=call.procedure,
            )
            self._local.fail(response.id, InternalError())
        elif response.error is not None:
            self._local.fail(response.id, CalleeError(response.error))
        else:
            self._local.resolve(response.id, response.result)

    # -- the bus ---------------------------------------------------------------

    def _bus_message(self, body: bytes) -> None:
        try:
            message = orjson.loads(body)
            op = message["op"]
            if op == "call":
                self._answer_bus_call(message)
            elif op == "result":
                self._remote.resolve(message["id"], message["result"])
            elif op == "error":
                self._remote.fail(message["id"], CalleeError(message["error"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.log.warn("unreadable message on the call channel")

    def _answer_bus_call(self, message: dict[str, Any]) -> None:
        """Call a local callee for another gateway; answer on its channel."""
        origin, origin_id = message["g"], message["id"]
        try:
            answer = self._call_local(
                message["procedure"], message["params"], message["timeout_ms"] / 1000
            )
        except RTGatewayError as error:
            self._send_error(origin, origin_id, error)
            return
        answer.addCallbacks(
            lambda result: self._publish(
                origin, {"op": "result", "id": origin_id, "result": result}
            ),
            lambda failure: self._send_error(origin, origin_id, self._error(failure)),
        )

    def _send_error(self, origin: str, origin_id: Any, error: RTGatewayError) -> None:
        message = {"op": "error", "id": origin_id, "error": error.to_error_object()}
        self._publish(origin, message)

    def _publish(self, origin: str, message: dict[str, Any]) -> None:
        try:
            body = orjson.dumps(message)
        except TypeError:  # a result JSON cannot carry (CBOR bytes)
            error = InternalError().to_error_object()
            body = orjson.dumps({"op": "error", "id": message["id"], "error": error})
        self._bus.publish(call_channel(origin), body).addErrback(
            self._log_failure, "answering a call of " + origin
        )

    def _error(self, failure: Any) -> RTGatewayError:
        if isinstance(failure.value, RTGatewayError):
            return failure.value
        self.log.failure("a relayed call failed", failure=failure)
        return InternalError()

    # -- liveness ----------------------------------------------------------------

    def _renew(self) -> Deferred:
        """Renew this gateway's entries; fail the calls of gateways that died."""
        return Deferred.fromCoroutine(self._renew_and_check())

    async def _renew_and_check(self) -> None:
        ttl_ms = int(self._ttl_s * 1000)
        try:
            if self._callees:
                held = sorted(self._callees)
                await self._registry.advertise(
                    held, self._gateway_id, ttl_ms, self._described(held)
                )
            for gateway_id, procedures in self._remote.owners().items():
                if gateway_id == NATS_SERVICE:
                    continue  # no gateway took it (yet): only its timer ends it
                for procedure in procedures:
                    if gateway_id not in await self._registry.gateways(procedure):
                        self._remote.fail_owner(
                            gateway_id,
                            Unavailable("the callee's gateway is gone"),
                            {procedure},
                        )
        except Exception:
            self._log_failure(Failure(), "renewing the procedure registry")

    def _log_failure(self, failure: Any, what: str) -> None:
        if failure.check(Unavailable):
            self.log.warn(what + " failed: the backend is unavailable")
        else:
            self.log.failure(what + " failed", failure=failure)


def describe(params: dict[str, Any], max_schema_bytes: int) -> bytes | None:
    """The description ``rpc.register`` gave (JSON), None without one.

    Each schema must fit ``max_schema_bytes`` and compile as a JSON Schema
    whose references stay inside it; otherwise -32602 at its member.
    """
    described = {k: params[k] for k in ("params", "result", "summary") if k in params}
    if not described:
        return None
    for member in ("params", "result"):
        if member not in described:
            continue
        schema = described[member]
        try:
            size = len(orjson.dumps(schema))
        except TypeError:  # CBOR bytes or other values JSON cannot carry
            raise _bad_schema(member, "a JSON Schema holds JSON values only") from None
        if size > max_schema_bytes:
            raise _bad_schema(member, f"larger than {max_schema_bytes} bytes as JSON")
        try:
            CompiledSchema(schema, local_only=True)
        except SchemaDefinitionError as error:
            raise _bad_schema(member, str(error).splitlines()[0][:200]) from None
    return orjson.dumps(described)


def _bad_schema(member: str, message: str) -> InvalidParams:
    return InvalidParams([{"path": "/" + member, "message": message}])


def _loaded(description: bytes | None) -> dict[str, Any] | None:
    """A stored description, or None (none, or not readable)."""
    if description is None:
        return None
    try:
        loaded = orjson.loads(description)
    except orjson.JSONDecodeError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _caller(connection: Any) -> dict[str, Any]:
    """Who is calling, as the callee sees it in ``params._caller``."""
    return {
        "player_id": connection.principal.player_id,
        "session_id": connection.session_id,
    }


def _not_relayable() -> InvalidParams:
    return InvalidParams(
        [
            {
                "path": "",
                "message": "params hold values the callee's encoding cannot carry",
            }
        ]
    )


def _json(response: dict[str, Any], call_id: Any) -> bytes:
    """A response as JSON; -32603 for a result JSON cannot carry (CBOR bytes)."""
    try:
        return orjson.dumps(response)
    except TypeError:
        return orjson.dumps(error_response(call_id, InternalError()))
