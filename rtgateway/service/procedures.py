"""Procedures of a backend service: declared by decorators, invoked by JSON-RPC.

A service method becomes a routed procedure with :func:`procedure`, which
names it and may describe its params and result with JSON Schemas and a
summary: the same description ``rpc.register`` sends, so players see it in
``rpc.discover``. :class:`ProcedureTable` holds a service's procedures and
answers one JSON-RPC request document with one response document, the same
way whichever transport brought it (a WebSocket connection to a gateway,
or NATS):

- params are checked against the schema before the method runs; a call
  that breaks it gets -32602 with ``data.errors`` (path and message per
  error, as the gateway's own methods answer);
- the method gets the params without ``_caller`` and the caller apart
  (``{player_id, session_id}``, None for a call made on NATS directly);
  it may return a value, a Deferred or a coroutine;
- an :class:`~rtgateway.wire.errors.RTGatewayError` it raises is the
  error response, as it is; any other exception is logged and becomes
  -32603, its text never sent; a result that breaks the result schema is
  a bug of the service: logged, and -32603.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from rtgateway.routing.names import check_procedure
from rtgateway.routing.schemas import CompiledSchema
from rtgateway.wire import jsonrpc
from rtgateway.wire.errors import (
    InternalError,
    InvalidParams,
    MethodNotFound,
    RTGatewayError,
)

log = logging.getLogger("rtgateway.service")

_MARK = "__rtgw_procedure__"


@dataclass(frozen=True)
class Declaration:
    """What :func:`procedure` says of a method."""

    name: str
    params: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    summary: str | None = None


def procedure(
    name: str,
    *,
    params: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    summary: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method as the routed procedure ``name``.

    The method is called as ``method(params, caller)``. The name is checked
    now (spelled like a topic, not in a namespace of the gateway's own
    methods), so a typo fails at import, not at the gateway.
    """
    check_procedure(name)

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        setattr(method, _MARK, Declaration(name, params, result, summary))
        return method

    return mark


@dataclass(frozen=True)
class Procedure:
    """One declared procedure bound to its object, with its compiled schemas."""

    declaration: Declaration
    method: Callable[..., Any]
    params: CompiledSchema | None
    result: CompiledSchema | None

    def registration(self) -> dict[str, Any]:
        """The ``rpc.register`` params that register and describe it."""
        declaration = self.declaration
        described = {
            "procedure": declaration.name,
            "params": declaration.params,
            "result": declaration.result,
            "summary": declaration.summary,
        }
        return {key: value for key, value in described.items() if value is not None}


def declared(owner: object) -> Iterable[Procedure]:
    """The procedures ``owner``'s methods declare, their schemas compiled."""
    for _, method in inspect.getmembers(owner, callable):
        declaration = getattr(method, _MARK, None)
        if isinstance(declaration, Declaration):
            yield Procedure(
                declaration,
                method,
                _compiled(declaration.params),
                _compiled(declaration.result),
            )


def _compiled(schema: dict[str, Any] | None) -> CompiledSchema | None:
    return None if schema is None else CompiledSchema(schema, local_only=True)


class ProcedureTable:
    """A service's procedures by name; answers JSON-RPC requests for them."""

    def __init__(self, procedures: Iterable[Procedure]) -> None:
        self.procedures = {p.declaration.name: p for p in procedures}

    def __iter__(self):
        return iter(self.procedures.values())

    def answer(self, request: Any) -> Deferred[dict[str, Any] | None]:
        """The response document to one request (None for a notification)."""
        return ensureDeferred(self._answer(request))

    async def _answer(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict) or "id" not in request:
            return None  # a notification (or junk) gets no answer
        request_id = request["id"]
        try:
            result = await self._invoke(request)
        except RTGatewayError as error:
            return jsonrpc.error_response(request_id, error)
        except Exception:
            log.exception("procedure %r failed", request.get("method"))
            return jsonrpc.error_response(request_id, InternalError())
        return jsonrpc.result_response(request_id, result)

    async def _invoke(self, request: dict[str, Any]) -> Any:
        found = self.procedures.get(request.get("method"))  # type: ignore[arg-type]
        if found is None:
            raise MethodNotFound()
        params = request.get("params", {})
        if not isinstance(params, dict):
            raise InvalidParams([{"path": "", "message": "params must be an object"}])
        params = dict(params)
        caller = params.pop("_caller", None)
        if found.params is not None:
            found.params.check(params)
        outcome = found.method(params, caller)
        if inspect.isawaitable(outcome):
            outcome = await ensureDeferred(_awaited(outcome))
        if found.result is not None:
            try:
                found.result.check(outcome)
            except InvalidParams as broken:
                log.error("%s returned a result its schema refuses: %s", found, broken)
                raise InternalError() from None
        return outcome


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
