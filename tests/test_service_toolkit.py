"""The service toolkit: declared procedures answered as JSON-RPC, and on NATS.

:class:`ProcedureTable` is checked on its own (params and result schemas,
errors, awaitables); the NATS transport against a real ``nats-server``,
called the way a gateway calls it (a request on ``rtgw.rpc.<procedure>``).
"""

from __future__ import annotations

import orjson
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from rtgateway.nats import NatsClient
from rtgateway.service import ProcedureTable, Service, procedure
from rtgateway.service.procedures import declared
from rtgateway.wire.errors import Forbidden, NotFound

ECHO_PARAMS = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}


class Echo(Service):
    """Procedures for each way a procedure can end."""

    @procedure("game.echo", params=ECHO_PARAMS, result={"type": "object"}, summary="s")
    def echo(self, params, caller):
        return {"n": params["n"], "caller": caller}

    @procedure("game.later")
    async def later(self, params, caller):
        await defer.succeed(None)
        return {"later": True}

    @procedure("game.deferred")
    def deferred(self, params, caller):
        return defer.succeed([1, 2])

    @procedure("game.missing")
    def missing(self, params, caller):
        raise NotFound("no such door")

    @procedure("game.broken")
    def broken(self, params, caller):
        raise ValueError("secret internals")

    @procedure("game.liar", result={"type": "object"})
    def liar(self, params, caller):
        return "not an object"


def answer(table: ProcedureTable, method: str, params=None, id=1):
    request = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        request["params"] = params
    results = []
    table.answer(request).addBoth(results.append)
    assert results, "the answer did not fire"
    return results[0]


@pytest.fixture
def table():
    return Echo(reactor).procedures


def test_params_checked_and_caller_set_apart(table):
    """The method gets params without _caller, and the caller on its own."""
    caller = {"player_id": "alice", "session_id": "s1"}
    response = answer(table, "game.echo", {"n": 3, "_caller": caller})
    assert response == {"jsonrpc": "2.0", "result": {"n": 3, "caller": caller}, "id": 1}
    refused = answer(table, "game.echo", {"n": "three"})["error"]
    assert refused["code"] == -32602
    assert refused["data"]["errors"][0]["path"] == "/n"
    assert answer(table, "game.echo", [3])["error"]["code"] == -32602


def test_coroutines_and_deferreds_are_awaited(table):
    assert answer(table, "game.later")["result"] == {"later": True}
    assert answer(table, "game.deferred")["result"] == [1, 2]


def test_errors_pass_as_raised_and_exceptions_stay_private(table):
    missing = answer(table, "game.missing")["error"]
    assert missing == {"code": -32003, "message": "no such door"}
    broken = answer(table, "game.broken")["error"]
    assert broken["code"] == -32603 and "secret" not in orjson.dumps(broken).decode()
    assert answer(table, "game.liar")["error"]["code"] == -32603
    assert answer(table, "game.nothing")["error"]["code"] == -32601


def test_notifications_get_no_answer(table):
    results = []
    table.answer({"jsonrpc": "2.0", "method": "game.echo"}).addBoth(results.append)
    assert results == [None]


def test_registration_carries_schemas_and_summary(table):
    echo = {p.declaration.name: p for p in table}["game.echo"]
    assert echo.registration() == {
        "procedure": "game.echo",
        "params": ECHO_PARAMS,
        "result": {"type": "object"},
        "summary": "s",
    }
    later = {p.declaration.name: p for p in table}["game.later"]
    assert later.registration() == {"procedure": "game.later"}


@pytest.mark.parametrize("name", ["sys.ping", "world.set", "rpc.anything"])
def test_gateway_names_are_refused_at_declaration(name):
    with pytest.raises(Forbidden):
        procedure(name)


def test_every_declared_method_is_found():
    names = sorted(p.declaration.name for p in declared(Echo(reactor)))
    assert names == [
        "game.broken",
        "game.deferred",
        "game.echo",
        "game.later",
        "game.liar",
        "game.missing",
    ]


@pytest_twisted.ensureDeferred
async def test_nats_transport_answers_requests_and_publishes(nats_server):
    """A request on rtgw.rpc.<procedure> gets the JSON-RPC response; publish asks."""
    service = Echo(reactor)
    caller = NatsClient(reactor, [nats_server.url])
    caller.start()
    try:
        await service.connect_nats([nats_server.url])
        await caller.when_connected()
        request = {"jsonrpc": "2.0", "method": "game.echo", "params": {"n": 5}, "id": 9}
        reply = await caller.request(
            "rtgw.rpc.game.echo", orjson.dumps(request), timeout=5
        )
        assert orjson.loads(reply.payload) == {
            "jsonrpc": "2.0",
            "result": {"n": 5, "caller": None},
            "id": 9,
        }
        request["params"] = {}
        reply = await caller.request(
            "rtgw.rpc.game.echo", orjson.dumps(request), timeout=5
        )
        assert orjson.loads(reply.payload)["error"]["code"] == -32602
        outcomes = iter([{"result": {"offset": 4}}, {"error": {"message": "no"}}])
        seen = []

        def gateway(msg):
            seen.append(orjson.loads(msg.payload))
            caller.publish(msg.reply, orjson.dumps(next(outcomes)))

        caller.subscribe("rtgw.publish.chat.lobby", gateway)
        await caller.flush()
        assert await service.publish("chat.lobby", "chat.line", {"t": 1}) == {
            "offset": 4
        }
        assert seen == [{"type": "chat.line", "data": {"t": 1}}]
        with pytest.raises(RuntimeError, match="no"):
            await service.publish("chat.lobby", "chat.line", {"t": 2})
    finally:
        await service.close()
        await caller.stop()
