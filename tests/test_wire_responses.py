"""Responses from backend services, parsed only where the gateway expects them."""

from __future__ import annotations

import pytest

from rtgateway.wire.jsonrpc import InvalidEntry, Request, Response, parse_document


def entries(document, responses=True):
    return parse_document(document, max_batch=10, responses=responses).entries


def test_result_and_error_responses():
    """A result or an error object, with its id, becomes a Response."""
    error = {"code": 5, "message": "no", "data": [1]}
    assert entries({"jsonrpc": "2.0", "result": None, "id": "a"}) == (
        Response("a", result=None),
    )
    assert entries({"jsonrpc": "2.0", "error": error, "id": 3}) == (
        Response(3, error=error),
    )


@pytest.mark.parametrize(
    "document",
    [
        {"jsonrpc": "2.0", "result": 1},
        {"jsonrpc": "2.0", "result": 1, "id": [1]},
        {"jsonrpc": "2.0", "error": {"code": True, "message": "x"}, "id": 1},
        {"jsonrpc": "2.0", "error": None, "id": 1},
    ],
    ids=["no-id", "array-id", "bool-code", "null-error"],
)
def test_malformed_responses_keep_their_id(document):
    """A response that breaks the specification is marked malformed, id kept."""
    (entry,) = entries(document)
    assert entry == Response(document.get("id"), malformed=True)


def test_batches_mix_requests_and_responses():
    """A batch may carry requests and responses side by side."""
    batch = [
        {"jsonrpc": "2.0", "result": 1, "id": 1},
        {"jsonrpc": "2.0", "method": "sys.ping", "id": 2},
    ]
    assert entries(batch) == (Response(1, result=1), Request("sys.ping", None, 2))


def test_without_responses_a_response_is_an_invalid_request():
    """Where no response is expected, one is an invalid request, as before."""
    (entry,) = entries({"jsonrpc": "2.0", "result": 1, "id": 1}, responses=False)
    assert isinstance(entry, InvalidEntry) and entry.id == 1
