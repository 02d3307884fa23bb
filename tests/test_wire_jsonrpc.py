"""The JSON-RPC 2.0 model: validation rules, the specification's examples, builders."""

from __future__ import annotations

import cbor2
import orjson
import pytest

from rtgateway.wire.codecs import CBOR, JSON
from rtgateway.wire.errors import (
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
)
from rtgateway.wire.jsonrpc import (
    NO_ID,
    Incoming,
    InvalidEntry,
    Request,
    decode_incoming,
    error_response,
    notification,
    parse_document,
    request,
    result_response,
)

MAX_BATCH = 10

BOTH = pytest.mark.parametrize("codec", [JSON, CBOR], ids=["json", "cbor"])


def frame(codec, text: str) -> bytes:
    """The frame a client of that codec sends for a JSON text."""
    if codec is JSON:
        return text.encode()
    return cbor2.dumps(orjson.loads(text))


def parse(value) -> Incoming:
    return parse_document(value, max_batch=MAX_BATCH)


def single(value) -> Request | InvalidEntry:
    incoming = parse(value)
    assert not incoming.is_batch
    (entry,) = incoming.entries
    return entry


def invalid(value) -> InvalidEntry:
    entry = single(value)
    assert isinstance(entry, InvalidEntry)
    assert isinstance(entry.error, InvalidRequest)
    assert entry.error.to_error_object() == {
        "code": -32600,
        "message": "Invalid Request",
    }
    return entry


def reason(error) -> str:
    """Why the error was raised: the note it carries for the server's log."""
    (note,) = error.__notes__
    return note


def call(**members):
    return {"jsonrpc": "2.0", "method": "sys.ping", **members}


# -- the specification's examples, at the parse level -----------------------

SPEC_INVALID_REQUEST = {
    "jsonrpc": "2.0",
    "error": {"code": -32600, "message": "Invalid Request"},
    "id": None,
}


@BOTH
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
            Request("subtract", [42, 23], 1),
        ),
        (
            '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
            Request("subtract", [23, 42], 2),
        ),
        (
            '{"jsonrpc": "2.0", "method": "subtract",'
            ' "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
            Request("subtract", {"subtrahend": 23, "minuend": 42}, 3),
        ),
        (
            '{"jsonrpc": "2.0", "method": "subtract",'
            ' "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
            Request("subtract", {"minuend": 42, "subtrahend": 23}, 4),
        ),
        (
            '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}',
            Request("update", [1, 2, 3, 4, 5], NO_ID),
        ),
        ('{"jsonrpc": "2.0", "method": "foobar"}', Request("foobar", None, NO_ID)),
        (
            '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
            Request("foobar", None, "1"),
        ),
    ],
    ids=[
        "positional-1",
        "positional-2",
        "named-3",
        "named-4",
        "notification-update",
        "notification-foobar",
        "non-existent-method",
    ],
)
def test_spec_single_requests(codec, text, expected):
    """The specification's single calls and notifications parse to these requests."""
    incoming = decode_incoming(codec, frame(codec, text), max_batch=MAX_BATCH)
    assert incoming == Incoming((expected,), False)


def test_spec_notifications_have_no_id():
    """The specification's notifications carry NO_ID, not a null id."""
    entry = single(orjson.loads('{"jsonrpc": "2.0", "method": "foobar"}'))
    assert entry.id is NO_ID
    assert entry.is_notification


@pytest.mark.parametrize(
    "text",
    [
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        '[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n'
        '  {"jsonrpc": "2.0", "method"\n]',
    ],
    ids=["single", "batch"],
)
def test_spec_invalid_json_is_a_parse_error(text):
    """The specification's invalid JSON examples raise ParseError (-32700)."""
    with pytest.raises(ParseError) as caught:
        decode_incoming(JSON, text.encode(), max_batch=MAX_BATCH)
    assert error_response(None, caught.value) == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }


@BOTH
def test_spec_invalid_request_object(codec):
    """A method of 1 with string params is one InvalidEntry answered with id null."""
    text = '{"jsonrpc": "2.0", "method": 1, "params": "bar"}'
    incoming = decode_incoming(codec, frame(codec, text), max_batch=MAX_BATCH)
    assert not incoming.is_batch
    (entry,) = incoming.entries
    assert isinstance(entry, InvalidEntry)
    assert error_response(entry.id, entry.error) == SPEC_INVALID_REQUEST


@BOTH
def test_spec_empty_array_raises_invalid_request(codec):
    """An empty batch is answered with one Invalid Request error, not an array."""
    with pytest.raises(InvalidRequest) as caught:
        decode_incoming(codec, frame(codec, "[]"), max_batch=MAX_BATCH)
    assert error_response(None, caught.value) == SPEC_INVALID_REQUEST


@BOTH
@pytest.mark.parametrize("text", ["[1]", "[1,2,3]"])
def test_spec_invalid_batches(codec, text):
    """Each non-object entry of a batch becomes an InvalidEntry with id null."""
    incoming = decode_incoming(codec, frame(codec, text), max_batch=MAX_BATCH)
    assert incoming.is_batch
    assert len(incoming.entries) == len(orjson.loads(text))
    for entry in incoming.entries:
        assert isinstance(entry, InvalidEntry)
        assert error_response(entry.id, entry.error) == SPEC_INVALID_REQUEST


SPEC_MIXED_BATCH = """[
    {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
    {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
    {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
    {"foo": "boo"},
    {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
    {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
]"""


@BOTH
def test_spec_mixed_batch(codec):
    """The specification's mixed batch parses entry by entry, in order."""
    incoming = decode_incoming(codec, frame(codec, SPEC_MIXED_BATCH), max_batch=10)
    assert incoming.is_batch
    sum_, hello, subtract, foo, foo_get, get_data = incoming.entries
    assert sum_ == Request("sum", [1, 2, 4], "1")
    assert hello == Request("notify_hello", [7], NO_ID)
    assert subtract == Request("subtract", [42, 23], "2")
    assert isinstance(foo, InvalidEntry)
    assert error_response(foo.id, foo.error) == SPEC_INVALID_REQUEST
    assert foo_get == Request("foo.get", {"name": "myself"}, "5")
    assert get_data == Request("get_data", None, "9")


@BOTH
def test_spec_batch_of_notifications(codec):
    """A batch of only notifications parses to requests that all want no answer."""
    text = """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]"""
    incoming = decode_incoming(codec, frame(codec, text), max_batch=MAX_BATCH)
    assert incoming == Incoming(
        (
            Request("notify_sum", [1, 2, 4], NO_ID),
            Request("notify_hello", [7], NO_ID),
        ),
        True,
    )
    assert all(entry.is_notification for entry in incoming.entries)


# -- validation rules ---------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    [None, "1.0", "2", "2.0 ", 2.0, 2, ["2.0"], {"v": "2.0"}, True],
)
def test_jsonrpc_must_be_exactly_the_string_2_0(version):
    """Any jsonrpc member other than the string "2.0" makes the entry invalid."""
    entry = invalid({"jsonrpc": version, "method": "sys.ping", "id": 1})
    assert entry.id == 1
    assert reason(entry.error) == 'jsonrpc must be "2.0"'


def test_jsonrpc_member_is_required():
    """A request without the jsonrpc member is invalid (a JSON-RPC 1.0 call)."""
    assert invalid({"method": "sys.ping", "params": [], "id": 1}).id == 1


@pytest.mark.parametrize("method", [1, 1.5, None, True, [], {}, ["sys.ping"], ""])
def test_method_must_be_a_non_empty_string(method):
    """A missing, empty or non-string method makes the entry invalid."""
    entry = invalid({"jsonrpc": "2.0", "method": method, "id": 3})
    assert entry.id == 3
    assert reason(entry.error) == "method must be a non-empty string"


def test_method_is_required():
    """An object without a method is invalid."""
    assert invalid({"jsonrpc": "2.0", "id": 3}).id == 3


@pytest.mark.parametrize("method", ["rpc.discover", "rpc.register", "a", " ", "é.x"])
def test_any_non_empty_method_name_parses(method):
    """Names are checked against the registry later; rpc.* names are ours to use."""
    assert single(call(method=method, id=1)) == Request(method, None, 1)


@pytest.mark.parametrize("params", [{}, [], {"a": [1]}, [None, {"b": 2}]])
def test_params_object_or_array(params):
    """params, when present, is an object (by name) or an array (by position)."""
    assert single(call(params=params, id=1)) == Request("sys.ping", params, 1)


def test_absent_params_is_none():
    """A request without params has params None."""
    assert single(call(id=1)).params is None


@pytest.mark.parametrize("params", [None, "bar", 1, 0.5, True, False])
def test_params_must_be_structured(params):
    """params present as null or a scalar makes the entry invalid."""
    entry = invalid(call(params=params, id="x"))
    assert entry.id == "x"
    assert reason(entry.error) == "params must be an object or an array"


@pytest.mark.parametrize("request_id", ["1", "", 0, -7, 2**64 - 1, 1.5, -0.0, None])
def test_valid_ids(request_id):
    """A string, a number (fractional too) or null is a valid id, echoed as is."""
    entry = single(call(id=request_id))
    assert isinstance(entry, Request)
    assert entry.id == request_id
    assert type(entry.id) is type(request_id)
    assert not entry.is_notification


def test_null_id_is_a_request_not_a_notification():
    """id null still asks for a response; only an absent id makes a notification."""
    entry = single(call(id=None))
    assert entry.id is None
    assert not entry.is_notification


@pytest.mark.parametrize("request_id", [True, False, [], [1], {}, {"id": 1}])
def test_invalid_ids(request_id):
    """A boolean, array or object id makes the entry invalid, answered with id null."""
    entry = invalid(call(id=request_id))
    assert entry.id is None
    assert reason(entry.error) == "id must be a string, a number or null"


@pytest.mark.parametrize("request_id", ["abc", 5, 2.5, None])
def test_invalid_entry_echoes_a_valid_id(request_id):
    """An invalid entry whose id is valid is answered with that id."""
    assert invalid({"jsonrpc": "2.0", "method": 1, "id": request_id}).id == request_id


def test_invalid_entry_without_id_is_answered_with_null():
    """An invalid entry without an id is still answered, with id null."""
    entry = invalid({"jsonrpc": "2.0", "method": 1})
    assert entry.id is None


def test_unknown_members_are_ignored():
    """Extra members neither invalidate a request nor appear in it."""
    entry = single(call(params=[1], id=1, extra={"x": 1}, result=2, error=None))
    assert entry == Request("sys.ping", [1], 1)


@pytest.mark.parametrize(
    "response",
    [
        {"jsonrpc": "2.0", "result": 19, "id": 1},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "x"}, "id": 1},
    ],
    ids=["result", "error"],
)
def test_response_object_is_not_a_request(response):
    """A response sent where a request is expected is invalid, keeping its id."""
    assert invalid(response).id == 1


@pytest.mark.parametrize("value", [1, 2.5, "text", None, True, False])
def test_scalar_document_raises_invalid_request(value):
    """A document that is neither an object nor an array is one Invalid Request."""
    with pytest.raises(InvalidRequest) as caught:
        parse(value)
    assert caught.value.code == -32600
    assert caught.value.data is None


def test_empty_batch_raises_invalid_request():
    """An empty array raises InvalidRequest, to be answered once with id null."""
    with pytest.raises(InvalidRequest) as caught:
        parse([])
    assert caught.value.to_error_object() == {
        "code": -32600,
        "message": "Invalid Request",
    }
    assert reason(caught.value) == "empty batch"


def test_batch_over_max_batch_raises_with_the_limit():
    """A batch of more than max_batch entries is refused whole, naming the limit."""
    with pytest.raises(InvalidRequest) as caught:
        parse_document([call(id=i) for i in range(4)], max_batch=3)
    assert caught.value.data == {"max_batch": 3}
    assert caught.value.to_error_object() == {
        "code": -32600,
        "message": "Invalid Request",
        "data": {"max_batch": 3},
    }


def test_batch_of_exactly_max_batch_parses():
    """max_batch entries are still accepted."""
    incoming = parse_document([call(id=i) for i in range(3)], max_batch=3)
    assert [entry.id for entry in incoming.entries] == [0, 1, 2]


def test_oversized_batch_of_garbage_is_refused_before_its_entries():
    """The batch size is checked before any entry, whatever the entries are."""
    with pytest.raises(InvalidRequest) as caught:
        parse_document([1] * 4, max_batch=3)
    assert caught.value.data == {"max_batch": 3}


def test_batch_of_one_is_still_a_batch():
    """[request] is a batch (answered with an array); a bare request is not."""
    assert parse([call(id=1)]) == Incoming((Request("sys.ping", None, 1),), True)
    assert parse(call(id=1)) == Incoming((Request("sys.ping", None, 1),), False)


@pytest.mark.parametrize("entry", [[], [call(id=1)], "x", None, 0])
def test_batch_entries_must_be_objects(entry):
    """Nested arrays and scalars inside a batch are invalid entries, id null."""
    incoming = parse([call(id=1), entry])
    assert incoming.entries[0] == Request("sys.ping", None, 1)
    assert isinstance(incoming.entries[1], InvalidEntry)
    assert incoming.entries[1].id is None


def test_batch_keeps_entry_order():
    """Entries come out in the order they were sent."""
    incoming = parse([call(id=i) for i in range(MAX_BATCH)])
    assert [entry.id for entry in incoming.entries] == list(range(MAX_BATCH))


@BOTH
def test_decode_incoming_raises_parse_error_for_bad_frames(codec):
    """decode_incoming lets the codec's ParseError through."""
    with pytest.raises(ParseError):
        decode_incoming(codec, b"\xff\xfe", max_batch=MAX_BATCH)


@BOTH
@pytest.mark.parametrize("text", ["1", '"x"', "null", "true"])
def test_decode_incoming_raises_invalid_request_for_scalars(codec, text):
    """A well-formed scalar document is an Invalid Request, not a parse error."""
    with pytest.raises(InvalidRequest):
        decode_incoming(codec, frame(codec, text), max_batch=MAX_BATCH)


def test_parsed_messages_are_immutable():
    """Request, InvalidEntry and Incoming are frozen, slotted values."""
    incoming = parse(call(id=1))
    entry = incoming.entries[0]
    with pytest.raises(AttributeError):
        entry.method = "other"
    with pytest.raises(AttributeError):
        incoming.is_batch = True
    assert not hasattr(entry, "__dict__")


def test_no_id_is_distinct_from_null():
    """NO_ID is a sentinel of its own, neither None nor equal to any id."""
    assert NO_ID is not None
    assert NO_ID != None  # noqa: E711
    assert repr(NO_ID) == "NO_ID"
    assert Request("a", None, NO_ID) != Request("a", None, None)


# -- builders -----------------------------------------------------------------


def test_result_response():
    """A success response carries result and the request's id."""
    assert result_response("9", ["hello", 5]) == {
        "jsonrpc": "2.0",
        "result": ["hello", 5],
        "id": "9",
    }


def test_result_response_of_null_result():
    """A null result is still a result member."""
    assert result_response(1, None) == {"jsonrpc": "2.0", "result": None, "id": 1}


def test_error_response():
    """An error response carries the error object and the id, null when unknown."""
    assert error_response(None, ParseError()) == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }
    assert error_response("5", MethodNotFound()) == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found"},
        "id": "5",
    }


def test_error_response_includes_data():
    """error.data is passed through when the error has some."""
    error = InvalidParams([{"path": "/topic", "message": "required"}])
    assert error_response(1, error)["error"] == {
        "code": -32602,
        "message": "Invalid params",
        "data": {"errors": [{"path": "/topic", "message": "required"}]},
    }


def test_error_response_for_invalid_entry():
    """An InvalidEntry is answered with its own error and id."""
    entry = invalid({"jsonrpc": "2.0", "method": 1, "id": 7})
    response = error_response(entry.id, entry.error)
    assert response["id"] == 7
    assert response["error"]["code"] == -32600


def test_notification():
    """A notification has method and params and no id member."""
    assert notification("session.welcome", {"protocol": 1}) == {
        "jsonrpc": "2.0",
        "method": "session.welcome",
        "params": {"protocol": 1},
    }


def test_notification_without_params():
    """params None leaves the member out rather than sending null."""
    assert notification("tick", None) == {"jsonrpc": "2.0", "method": "tick"}


def test_request():
    """A server-to-client request carries method, params and id."""
    assert request(12, "game.score", {"a": 1}) == {
        "jsonrpc": "2.0",
        "method": "game.score",
        "params": {"a": 1},
        "id": 12,
    }
    assert request("x", "game.reset", None) == {
        "jsonrpc": "2.0",
        "method": "game.reset",
        "id": "x",
    }


@BOTH
def test_built_messages_parse_back(codec):
    """What the builders make, a peer's parser reads as the same request."""
    for document, expected in [
        (notification("e.v", {"a": 1}), Request("e.v", {"a": 1}, NO_ID)),
        (notification("e.v", None), Request("e.v", None, NO_ID)),
        (request(3, "m", [1]), Request("m", [1], 3)),
        (request(None, "m", None), Request("m", None, None)),
    ]:
        incoming = decode_incoming(codec, codec.encode(document), max_batch=1)
        assert incoming.entries == (expected,)


def test_spec_responses_encode_as_the_specification_writes_them():
    """Member order follows the specification's examples: jsonrpc, result, id."""
    expected = b'{"jsonrpc":"2.0","result":19,"id":1}'
    assert JSON.encode(result_response(1, 19)) == expected
    assert JSON.encode(error_response(None, InvalidRequest())) == (
        b'{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request"},'
        b'"id":null}'
    )
