"""The JSON-RPC 2.0 model: decoded documents in, typed messages out.

Validation follows https://www.jsonrpc.org/specification exactly. A document
that cannot be answered entry by entry (not an object or array, an empty or
oversized batch) raises :class:`InvalidRequest`; an entry that is not a valid
request becomes an :class:`InvalidEntry`, answered with its own error and
the id it carried when that id was valid, else null.

Connections the gateway sends requests to (backend services, PROTOCOL.md
section 8) answer them with responses: parsed with ``responses=True``, an
object that has no ``method`` but a ``result`` or an ``error`` member is a
:class:`Response`, well-formed or not; everywhere else it stays an invalid
request, as the specification has it.

Errors keep the specification's message ("Invalid Request"), so that
responses match its examples exactly; the rule that was broken is a note on
the exception, for the server's log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from rtgateway.wire.errors import InvalidRequest, RTGatewayError

if TYPE_CHECKING:
    from rtgateway.wire.codecs import Codec


class _NoId(enum.Enum):
    NO_ID = "NO_ID"

    def __repr__(self) -> str:
        return "NO_ID"


#: The ``id`` of a notification, whose ``id`` member is absent (``None`` is
#: the JSON ``null`` id, which still asks for a response).
NO_ID: Final = _NoId.NO_ID

RequestId: TypeAlias = str | int | float | None
Params: TypeAlias = dict[str, Any] | list[Any] | None

_VERSION = "2.0"
# bool is not a JSON number, and type() keeps it out where isinstance would not.
_ID_TYPES = frozenset({str, int, float, type(None), _NoId})


@dataclass(frozen=True, slots=True)
class Request:
    """A valid request; a notification when ``id`` is :data:`NO_ID`."""

    method: str
    params: Params
    id: RequestId | Literal[_NoId.NO_ID]

    @property
    def is_notification(self) -> bool:
        """The client wants no response, not even an error."""
        return self.id is NO_ID


@dataclass(frozen=True, slots=True)
class InvalidEntry:
    """An object (or batch entry) that is not a valid request."""

    error: RTGatewayError
    id: RequestId


@dataclass(frozen=True, slots=True)
class Response:
    """A peer's answer to a request the gateway sent it.

    ``error`` is the error object exactly as sent (None for a result). A
    response that breaks the specification (both or neither of ``result``
    and ``error``, a malformed error object, a wrong ``jsonrpc``) has
    ``malformed`` set; its ``id`` is still whatever it carried, so that the
    call it answers can be failed rather than left to time out.
    """

    id: Any
    result: Any = None
    error: dict[str, Any] | None = None
    malformed: bool = False


Entry: TypeAlias = Request | InvalidEntry | Response


@dataclass(frozen=True, slots=True)
class Incoming:
    """One parsed document: a single entry, or the entries of a batch in order."""

    entries: tuple[Entry, ...]
    is_batch: bool


def decode_incoming(
    codec: Codec, data: bytes, *, max_batch: int, responses: bool = False
) -> Incoming:
    """Parse one frame; raises ParseError or InvalidRequest only."""
    return parse_document(codec.decode(data), max_batch=max_batch, responses=responses)


def parse_document(value: Any, *, max_batch: int, responses: bool = False) -> Incoming:
    """Validate a decoded document; raises InvalidRequest only."""
    parse = _parse_entry_or_response if responses else _parse_entry
    kind = type(value)
    if kind is dict:
        return Incoming((parse(value),), False)
    if kind is not list:
        raise _invalid_request("not an object or an array")
    if not value:
        raise _invalid_request("empty batch")
    if len(value) > max_batch:
        raise _invalid_request(
            f"batch of more than {max_batch} entries", {"max_batch": max_batch}
        )
    return Incoming(tuple([parse(entry) for entry in value]), True)


def _parse_entry_or_response(entry: Any) -> Entry:
    if (
        type(entry) is dict
        and "method" not in entry
        and ("result" in entry or "error" in entry)
    ):
        return parse_response(entry)
    return _parse_entry(entry)


def parse_response(entry: dict[str, Any]) -> Response:
    """A response object as a :class:`Response` (``malformed`` when it is not one)."""
    request_id = entry.get("id")
    has_result, error = "result" in entry, entry.get("error")
    well_formed = (
        entry.get("jsonrpc") == _VERSION
        and "id" in entry
        and type(request_id) in _ID_TYPES
        and has_result != ("error" in entry)
        and (has_result or _is_error_object(error))
    )
    if not well_formed:
        return Response(request_id, malformed=True)
    if has_result:
        return Response(request_id, result=entry["result"])
    return Response(request_id, error=error)


def _is_error_object(error: Any) -> bool:
    """Section 5.1: an object with an integer ``code`` and a string ``message``."""
    return (
        type(error) is dict
        and type(error.get("code")) is int
        and type(error.get("message")) is str
    )


def _parse_entry(entry: Any) -> Request | InvalidEntry:
    if type(entry) is not dict:
        return InvalidEntry(_invalid_request("not an object"), None)
    get = entry.get
    method = get("method")
    params = get("params")
    request_id = get("id", NO_ID)
    if (
        get("jsonrpc") == _VERSION
        and type(method) is str
        and method
        and (
            type(params) is dict
            or type(params) is list
            or (params is None and "params" not in entry)
        )
        and type(request_id) in _ID_TYPES
    ):
        return Request(method, params, request_id)
    return _invalid(entry, method, request_id)


def _invalid(entry: dict[str, Any], method: Any, request_id: Any) -> InvalidEntry:
    """The first rule the entry breaks, with its id if that id is valid."""
    if type(request_id) not in _ID_TYPES:
        return InvalidEntry(
            _invalid_request("id must be a string, a number or null"), None
        )
    if request_id is NO_ID:
        request_id = None
    if entry.get("jsonrpc") != _VERSION:
        reason = 'jsonrpc must be "2.0"'
    elif type(method) is not str or not method:
        reason = "method must be a non-empty string"
    else:
        reason = "params must be an object or an array"
    return InvalidEntry(_invalid_request(reason), request_id)


def _invalid_request(reason: str, data: Any = None) -> InvalidRequest:
    error = InvalidRequest(data=data)
    error.add_note(reason)
    return error


def result_response(id: RequestId, result: Any) -> dict[str, Any]:
    """The response to a request that succeeded."""
    return {"jsonrpc": _VERSION, "result": result, "id": id}


def error_response(id: RequestId, error: RTGatewayError) -> dict[str, Any]:
    """The response to a request that failed; ``id`` None when it is unknown."""
    return {"jsonrpc": _VERSION, "error": error.to_error_object(), "id": id}


def notification(method: str, params: Params) -> dict[str, Any]:
    """A message that asks for no response (events); None omits ``params``."""
    if params is None:
        return {"jsonrpc": _VERSION, "method": method}
    return {"jsonrpc": _VERSION, "method": method, "params": params}


def request(id: RequestId, method: str, params: Params) -> dict[str, Any]:
    """A call the peer must answer with the same ``id``; None omits ``params``."""
    if params is None:
        return {"jsonrpc": _VERSION, "method": method, "id": id}
    return {"jsonrpc": _VERSION, "method": method, "params": params, "id": id}
