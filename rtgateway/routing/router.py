"""The dealer: a registry of methods and the call path into them.

Components register their methods here with a params schema, a result
schema and the roles allowed to call them. The router knows nothing of
WebSockets or of the components themselves: it receives the calling
connection as an :class:`rtgateway.interfaces.IConnection` and hands it to
the handler.

Methods nobody registered may still be routed procedures, which backend
services register at run time (PROTOCOL.md section 8): a component that
routes them installs itself with :meth:`Router.route_unknown`, and the
responses that services send back reach it through :meth:`Router.respond`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from rtgateway.routing.schemas import CompiledSchema
from rtgateway.wire.errors import Forbidden, MethodNotFound, RTGatewayError
from rtgateway.wire.jsonrpc import Request, Response

#: ``handler(caller, params)`` returns a value, a Deferred or a coroutine.
Handler = Callable[[Any, Any], Any]

EMPTY_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": False,
}


class IRoutedCalls(Protocol):
    """Who answers calls of unregistered methods and takes responses."""

    def route(self, caller: Any, request: Request) -> Any:
        """A Deferred of the result, or raise (-32601 when nothing is routed there)."""

    def response(
        self, caller: Any, response: Response, refusal: RTGatewayError | None
    ) -> None:
        """A response from ``caller``; ``refusal`` set when it was over its rate."""


class RegistrationError(ValueError):
    """A method was registered twice or with an unusable definition."""


@dataclass(frozen=True, slots=True)
class Method:
    """A registered method: what it accepts, returns and who may call it."""

    name: str
    handler: Handler
    params: CompiledSchema
    result: CompiledSchema
    roles: frozenset[str] | None
    summary: str
    is_async: bool = field(compare=False)

    def allows(self, roles: frozenset[str]) -> bool:
        """True when a principal with ``roles`` may call this method."""
        return self.roles is None or not self.roles.isdisjoint(roles)


class Router:
    """Method registry and dispatcher shared by every connection."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}
        self._routed: IRoutedCalls | None = None

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        params: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        roles: Iterable[str] | None = None,
        summary: str = "",
    ) -> Method:
        """Make ``name`` callable; ``roles`` None means every principal.

        ``params`` and ``result`` are JSON Schemas (the params default is an
        empty object, the result's anything); they are compiled now, so a
        broken schema fails at start-up rather than at the first call.
        """
        if name in self._methods:
            raise RegistrationError(f"method {name!r} is already registered")
        method = Method(
            name=name,
            handler=handler,
            params=CompiledSchema(
                params if params is not None else EMPTY_OBJECT_SCHEMA
            ),
            result=CompiledSchema(result if result is not None else {}),
            roles=frozenset(roles) if roles is not None else None,
            summary=summary,
            is_async=inspect.iscoroutinefunction(handler),
        )
        self._methods[name] = method
        return method

    def unregister(self, name: str) -> None:
        """Forget a method (a component stopping)."""
        self._methods.pop(name, None)

    def route_unknown(self, routed: IRoutedCalls | None) -> None:
        """Hand calls of unregistered methods, and responses, to ``routed``."""
        self._routed = routed

    def respond(
        self, caller: Any, response: Response, refusal: RTGatewayError | None
    ) -> None:
        """Deliver a response a connection sent; dropped when nothing routes."""
        if self._routed is not None:
            self._routed.response(caller, response, refusal)

    def lookup(self, name: str) -> Method | None:
        """The method registered under ``name``, if any."""
        return self._methods.get(name)

    def __iter__(self) -> Iterator[Method]:
        return iter(sorted(self._methods.values(), key=lambda m: m.name))

    def call(self, caller: Any, request: Request) -> Any:
        """Check and invoke the method a request names.

        Returns the handler's plain value, or a Deferred when the handler is
        asynchronous. Raises (synchronously) the protocol error for an
        unknown method, a forbidden caller or invalid params; whatever else
        a handler raises propagates for the caller to log and hide.
        """
        method = self._methods.get(request.method)
        if method is None:
            if self._routed is not None:
                return self._routed.route(caller, request)
            raise MethodNotFound()
        if method.roles is not None and method.roles.isdisjoint(caller.principal.roles):
            raise Forbidden(
                f"{request.method} needs one of the roles {sorted(method.roles)}"
            )
        params = request.params if request.params is not None else {}
        method.params.check(params)
        if method.is_async:
            return Deferred.fromCoroutine(method.handler(caller, params))
        return method.handler(caller, params)
