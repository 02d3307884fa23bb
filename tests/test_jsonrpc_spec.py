"""Every example of the JSON-RPC 2.0 specification, through the real gateway.

Each example's request text is sent as a frame to a gateway (in memory, real
Autobahn client) whose router has the specification's example methods; the
answer must be exactly the response the specification shows.
"""

from __future__ import annotations

import orjson
import pytest

from rtgateway.testing import MemoryGateway, make_config

NUMBER = {"type": "number"}
SUBTRACT_PARAMS = {
    "oneOf": [
        {"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2},
        {
            "type": "object",
            "properties": {"minuend": NUMBER, "subtrahend": NUMBER},
            "required": ["minuend", "subtrahend"],
            "additionalProperties": False,
        },
    ]
}


def subtract(caller, params):
    if isinstance(params, list):
        return params[0] - params[1]
    return params["minuend"] - params["subtrahend"]


@pytest.fixture
def gateway():
    """A gateway with the specification's example methods registered."""
    gateway = MemoryGateway(make_config())
    router = gateway.gateway.router
    numbers = {"type": "array", "items": NUMBER}
    router.register("subtract", subtract, params=SUBTRACT_PARAMS)
    router.register("sum", lambda caller, params: sum(params), params=numbers)
    router.register("update", lambda caller, params: None, params=numbers)
    router.register("notify_hello", lambda caller, params: None, params=numbers)
    router.register("get_data", lambda caller, params: ["hello", 5])
    yield gateway
    gateway.stop()


def exchange(gateway, text):
    """Send ``text`` as one frame; return what came back (None for nothing)."""
    client = gateway.connect("alice")
    gateway.flush()
    before = len(client.received)
    client.sendMessage(text.encode(), isBinary=False)
    gateway.flush()
    answers = client.received[before:]
    assert len(answers) <= 1
    return answers[0] if answers else None


EXAMPLES = [
    (
        "positional-1",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        '{"jsonrpc": "2.0", "result": 19, "id": 1}',
    ),
    (
        "positional-2",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        '{"jsonrpc": "2.0", "result": -19, "id": 2}',
    ),
    (
        "named-1",
        '{"jsonrpc": "2.0", "method": "subtract", '
        '"params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        '{"jsonrpc": "2.0", "result": 19, "id": 3}',
    ),
    (
        "named-2",
        '{"jsonrpc": "2.0", "method": "subtract", '
        '"params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        '{"jsonrpc": "2.0", "result": 19, "id": 4}',
    ),
    (
        "notification-1",
        '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}',
        None,
    ),
    ("notification-2", '{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        "non-existent-method",
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        '{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"},'
        ' "id": "1"}',
    ),
    (
        "invalid-json",
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"},'
        ' "id": null}',
    ),
    (
        "invalid-request-object",
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"},'
        ' "id": null}',
    ),
    (
        "batch-invalid-json",
        '[ {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        ' {"jsonrpc": "2.0", "method" ]',
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"},'
        ' "id": null}',
    ),
    (
        "empty-array",
        "[]",
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"},'
        ' "id": null}',
    ),
    (
        "invalid-batch-not-empty",
        "[1]",
        '[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"},'
        ' "id": null}]',
    ),
    (
        "invalid-batch",
        "[1,2,3]",
        "["
        + ", ".join(
            [
                '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"},'
                ' "id": null}'
            ]
            * 3
        )
        + "]",
    ),
    (
        "batch",
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
        ]""",
        """[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"},
         "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"},
         "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
        ]""",
    ),
    (
        "batch-all-notifications",
        """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
        ]""",
        None,
    ),
]


@pytest.mark.parametrize(
    ("request_text", "expected_text"),
    [(request, expected) for _, request, expected in EXAMPLES],
    ids=[name for name, _, _ in EXAMPLES],
)
def test_specification_example(gateway, request_text, expected_text):
    """The gateway answers the specification's example exactly as it shows."""
    expected = orjson.loads(expected_text) if expected_text is not None else None
    assert exchange(gateway, request_text) == expected
