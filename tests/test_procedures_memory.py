"""Routed procedures in memory: services register, players call, on a task.Clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from rtgateway.backends.memory import MemoryHub
from rtgateway.testing import MemoryGateway, make_config
from rtgateway.wire import closecodes

SETTINGS = {"procedures": {"call_timeout_s": 5, "timeouts": {"game.slow": 20}}}


@pytest.fixture(name="gateway")
def fixture_gateway(make_memory_gateway):
    return make_memory_gateway(SETTINGS)


def service(gateway, sub="svc", protocols=None):
    return gateway.open(
        sub, token=gateway.token(sub, roles=["service"]), protocols=protocols
    )


def requests(client, method=None):
    """Requests the gateway sent to a service connection."""
    return [
        m
        for m in client.received
        if isinstance(m, dict)
        and "id" in m
        and "method" in m
        and (method is None or m["method"] == method)
    ]


def send(gateway, client, document):
    client.send(document)
    gateway.flush()


def start_call(gateway, player, method, params=None, id=100):
    """Send a call without waiting for its answer (the callee has it)."""
    request = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        request["params"] = params
    send(gateway, player, request)


def answer_of(player, id=100):
    found = [m for m in player.received if isinstance(m, dict) and m.get("id") == id]
    return found[-1] if found else None


def register(gateway, client, procedure="game.echo"):
    response = gateway.call(client, "rpc.register", {"procedure": procedure})
    assert response.get("result") == {}, response
    return response


def test_register_needs_the_service_role(gateway):
    """A player's rpc.register and rpc.unregister get -32001."""
    player = gateway.open("bob")
    for method in ("rpc.register", "rpc.unregister"):
        response = gateway.call(player, method, {"procedure": "game.echo"})
        assert response["error"]["code"] == -32001


@pytest.mark.parametrize("name", ["", "a..b", "a b", "x" * 65, ".".join("a" * 9)])
def test_malformed_names_are_invalid_params(gateway, name):
    """A procedure not spelled like a topic name gets -32602 at /procedure."""
    response = gateway.call(service(gateway), "rpc.register", {"procedure": name})
    assert response["error"]["code"] == -32602
    if name:
        assert response["error"]["data"]["errors"][0]["path"] == "/procedure"


@pytest.mark.parametrize(
    "name",
    ["sys.ping", "session.close", "pubsub.x", "presence.get", "state.join",
     "world.set", "rpc.discover", "admin.kick", "zone.a", "SYS.ping", "rpc"],
)  # fmt: skip
def test_reserved_namespaces_are_forbidden(gateway, name):
    """Names in the gateway's own namespaces get -32001, whatever their case."""
    response = gateway.call(service(gateway), "rpc.register", {"procedure": name})
    assert response["error"]["code"] == -32001


@pytest.mark.parametrize("name", ["world.set", "world.remove", "World.SET"])
def test_the_gateways_world_methods_are_forbidden(gateway, name):
    """world.set and world.remove get -32001, whatever their case."""
    response = gateway.call(service(gateway), "rpc.register", {"procedure": name})
    assert response["error"]["code"] == -32001


@pytest.mark.parametrize("name", ["world.interact", "World.doors.open", "world"])
def test_other_world_names_are_routed(gateway, name):
    """The world namespace is shared: its other names reach a service."""
    callee = service(gateway)
    register(gateway, callee, name)
    start_call(gateway, gateway.open("bob"), name, {"entity": "door1"})
    (invocation,) = requests(callee, name)
    assert invocation["params"]["entity"] == "door1"


def test_world_set_stays_the_gateways_with_world_procedures(gateway):
    """With world.interact registered, world.set is still the state method."""
    callee = service(gateway)
    register(gateway, callee, "world.interact")
    player = gateway.open("bob")
    response = gateway.call(player, "world.set", {"zone": "z", "entity": "e"})
    assert response["error"]["code"] == -32001
    assert requests(callee) == []


def test_call_reaches_the_callee_with_caller_and_answer_returns(gateway):
    """The callee gets a request with _caller; its result is the player's answer."""
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo", {"x": 1})
    (invocation,) = requests(callee, "game.echo")
    session_id = player.received[0]["params"]["session_id"]
    assert invocation["params"] == {
        "x": 1,
        "_caller": {"player_id": "bob", "session_id": session_id},
    }
    send(gateway, callee, {"jsonrpc": "2.0", "result": [7], "id": invocation["id"]})
    assert answer_of(player) == {"jsonrpc": "2.0", "result": [7], "id": 100}


def test_caller_cannot_forge_caller(gateway):
    """A _caller in the player's params is replaced by the real one."""
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo", {"_caller": {"player_id": "eve"}})
    assert requests(callee)[0]["params"]["_caller"]["player_id"] == "bob"


def test_call_without_params_and_with_array_params(gateway):
    """No params become {_caller}; params by position get -32602."""
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo")
    assert set(requests(callee)[0]["params"]) == {"_caller"}
    assert gateway.call(player, "game.echo", [1, 2])["error"]["code"] == -32602


def test_callee_error_passes_through_unchanged(gateway):
    """An error response reaches the player exactly as the callee wrote it."""
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo")
    error = {"code": 4242, "message": "no such door", "data": None}
    send(
        gateway,
        callee,
        {"jsonrpc": "2.0", "error": error, "id": requests(callee)[0]["id"]},
    )
    assert answer_of(player) == {"jsonrpc": "2.0", "error": error, "id": 100}


@pytest.mark.parametrize(
    "response",
    [
        {"jsonrpc": "2.0", "result": 1, "error": {"code": 1, "message": "x"}},
        {"jsonrpc": "2.0", "error": {"code": "1", "message": "x"}},
        {"jsonrpc": "2.0", "error": {"code": 1}},
        {"jsonrpc": "2.0", "error": "broken"},
        {"jsonrpc": "1.0", "result": 1},
    ],
    ids=["both", "text-code", "no-message", "not-an-object", "version"],
)
def test_malformed_response_becomes_internal_error(gateway, response):
    """A response that breaks JSON-RPC gives the player -32603, the callee nothing."""
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo")
    before = len(callee.received)
    send(gateway, callee, {**response, "id": requests(callee)[0]["id"]})
    assert answer_of(player)["error"]["code"] == -32603
    assert callee.received[before:] == []


def test_no_callee_is_method_not_found(gateway):
    """A procedure nobody registered, or that was unregistered, gets -32601."""
    callee = service(gateway)
    player = gateway.open("bob")
    assert gateway.call(player, "game.echo")["error"]["code"] == -32601
    register(gateway, callee)
    assert gateway.call(callee, "rpc.unregister", {"procedure": "game.echo"}) == {
        "jsonrpc": "2.0", "result": {}, "id": gateway._ids,
    }  # fmt: skip
    assert gateway.call(player, "game.echo")["error"]["code"] == -32601


def test_unregister_of_a_procedure_not_registered_is_invalid(gateway):
    """Unregistering what this connection did not register gets -32602."""
    response = gateway.call(service(gateway), "rpc.unregister", {"procedure": "game.x"})
    assert response["error"]["code"] == -32602


def test_timeout_on_the_clock(gateway):
    """No answer within call_timeout_s: -32006; the late answer is dropped."""
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo")
    gateway.advance(4.9)
    assert answer_of(player) is None
    gateway.advance(0.2)
    assert answer_of(player)["error"]["code"] == -32006
    send(
        gateway,
        callee,
        {"jsonrpc": "2.0", "result": 1, "id": requests(callee)[0]["id"]},
    )
    assert [m for m in player.received if m.get("id") == 100] == [answer_of(player)]


def test_per_procedure_timeout(gateway):
    """[procedures.timeouts] gives one procedure a longer wait."""
    callee = service(gateway)
    register(gateway, callee, "game.slow")
    player = gateway.open("bob")
    start_call(gateway, player, "game.slow")
    gateway.advance(19)
    assert answer_of(player) is None
    gateway.advance(1.5)
    assert answer_of(player)["error"]["code"] == -32006


def test_callee_disconnect_fails_calls_in_flight(gateway):
    """Every call in flight to a callee that drops gets -32005; then -32601."""
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo", id=101)
    start_call(gateway, player, "game.echo", id=102)
    gateway.drop(callee)
    assert answer_of(player, 101)["error"]["code"] == -32005
    assert answer_of(player, 102)["error"]["code"] == -32005
    assert gateway.call(player, "game.echo")["error"]["code"] == -32601


def test_round_robin_between_callees(gateway):
    """Calls go to the callees of a procedure in turn."""
    callees = [service(gateway, f"svc{i}") for i in range(3)]
    for callee in callees:
        register(gateway, callee)
    player = gateway.open("bob")
    for id in range(101, 107):
        start_call(gateway, player, "game.echo", id=id)
    assert [len(requests(c)) for c in callees] == [2, 2, 2]
    firsts = [requests(c)[0]["params"] for c in callees]
    assert all(p["_caller"]["player_id"] == "bob" for p in firsts)


@pytest.mark.parametrize(
    ("balance", "third_to"), [("least_busy", "svc2"), ("round_robin", "svc1")]
)
def test_balance_least_busy_or_in_turn(make_memory_gateway, balance, third_to):
    """svc2 answered its call, svc1 not: least busy sends the next to svc2."""
    gateway = make_memory_gateway(
        {"procedures": {**SETTINGS["procedures"], "balance": balance}}
    )
    callees = {name: service(gateway, name) for name in ("svc1", "svc2")}
    for callee in callees.values():
        register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo", id=101)
    start_call(gateway, player, "game.echo", id=102)
    (second,) = requests(callees["svc2"])
    send(gateway, callees["svc2"], {"jsonrpc": "2.0", "result": 2, "id": second["id"]})
    start_call(gateway, player, "game.echo", id=103)
    counts = {name: len(requests(c)) for name, c in callees.items()}
    assert counts == {"svc1": 1, "svc2": 1, third_to: 2}


def test_only_the_invoked_callee_may_answer(gateway):
    """A response from another service to someone else's call is ignored."""
    callee, other = service(gateway, "svc1"), service(gateway, "svc2")
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo")
    send(
        gateway,
        other,
        {"jsonrpc": "2.0", "result": "forged", "id": requests(callee)[0]["id"]},
    )
    assert answer_of(player) is None


def test_players_responses_stay_invalid_requests(gateway):
    """A player sending a response object gets -32600, as before."""
    player = gateway.open("bob")
    send(gateway, player, {"jsonrpc": "2.0", "result": 1, "id": 9})
    assert answer_of(player, 9)["error"]["code"] == -32600


def test_callee_responses_are_rate_limited(make_memory_gateway):
    """A response over the callee's rate fails its call with -32005."""
    gateway = make_memory_gateway(
        {**SETTINGS, "limits": {"rate_per_second": 1, "rate_burst": 2}}
    )
    callee = service(gateway)
    register(gateway, callee)  # takes one token
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo", id=101)
    start_call(gateway, player, "game.echo", id=102)
    first, second = requests(callee)
    send(gateway, callee, {"jsonrpc": "2.0", "result": 1, "id": first["id"]})
    send(gateway, callee, {"jsonrpc": "2.0", "result": 2, "id": second["id"]})
    assert answer_of(player, 101)["result"] == 1
    assert answer_of(player, 102)["error"]["code"] == -32005


def test_oversized_callee_response_closes_it_and_fails_the_call(make_memory_gateway):
    """A response over max_message_bytes closes the callee 1009; the call -32005."""
    gateway = make_memory_gateway({**SETTINGS, "limits": {"max_message_bytes": 1024}})
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo")
    big = {"jsonrpc": "2.0", "result": "x" * 2000, "id": requests(callee)[0]["id"]}
    send(gateway, callee, big)
    assert callee.close_code == closecodes.MESSAGE_TOO_BIG
    assert answer_of(player)["error"]["code"] == -32005


def test_in_flight_bound(make_memory_gateway):
    """Past max_in_flight calls waiting, a new call gets -32005 at once."""
    gateway = make_memory_gateway({"procedures": {"max_in_flight": 2}})
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob")
    start_call(gateway, player, "game.echo", id=101)
    start_call(gateway, player, "game.echo", id=102)
    assert gateway.call(player, "game.echo")["error"]["code"] == -32005


def test_cbor_player_json_callee(gateway):
    """Encodings differ per connection: a CBOR player reaches a JSON callee."""
    callee = service(gateway)
    register(gateway, callee)
    player = gateway.open("bob", protocols=["rtgw.v1.cbor"])
    start_call(gateway, player, "game.echo", {"n": 2})
    send(
        gateway,
        callee,
        {"jsonrpc": "2.0", "result": {"n": 3}, "id": requests(callee)[0]["id"]},
    )
    assert answer_of(player)["result"] == {"n": 3}


def test_discover_lists_registered_procedures(gateway):
    """rpc.discover lists routed procedures while a callee holds them."""
    callee = service(gateway)
    register(gateway, callee, "game.open_door")
    player = gateway.open("bob")
    methods = gateway.call(player, "rpc.discover")["result"]["methods"]
    routed = [m for m in methods if m.get("x-routed")]
    assert [m["name"] for m in routed] == ["game.open_door"]
    gateway.drop(callee)
    methods = gateway.call(player, "rpc.discover")["result"]["methods"]
    assert not [m for m in methods if m.get("x-routed")]


def two_gateways(ttl_s=3.0, one_clock=True):
    """Gateways A and B sharing a hub; with two clocks, B's time can stand still."""
    hub, clock = MemoryHub(), Clock()
    settings = {**SETTINGS, "presence": {"gateway_ttl_s": ttl_s}}
    return [
        MemoryGateway(
            make_config({**settings, "gateway": {"id": name}}),
            clock=clock if one_clock else Clock(),
            hub=hub,
        )
        for name in ("gw-a", "gw-b")
    ]


def flush(*gateways):
    for gateway in gateways:
        gateway.flush()
    for gateway in gateways:
        gateway.flush()


def test_call_routed_to_another_gateway():
    """A player on A reaches a callee on B over the bus; errors pass through."""
    a, b = two_gateways()
    callee = service(b)
    register(b, callee)
    player = a.open("bob")
    start_call(a, player, "game.echo", {"x": 1}, id=101)
    flush(a, b)
    (invocation,) = requests(callee)
    assert invocation["params"]["_caller"]["player_id"] == "bob"
    send(b, callee, {"jsonrpc": "2.0", "result": "hi", "id": invocation["id"]})
    flush(a, b)
    assert answer_of(player, 101) == {"jsonrpc": "2.0", "result": "hi", "id": 101}
    start_call(a, player, "game.echo", id=102)
    flush(a, b)
    error = {"code": 7, "message": "nope", "data": {"why": 1}}
    send(b, callee, {"jsonrpc": "2.0", "error": error, "id": requests(callee)[1]["id"]})
    flush(a, b)
    assert answer_of(player, 102)["error"] == error


def test_local_callees_come_first():
    """With a callee on its own gateway, no call goes to the other."""
    a, b = two_gateways()
    here, there = service(a, "svc1"), service(b, "svc2")
    register(a, here)
    register(b, there)
    player = a.open("bob")
    for id in range(101, 104):
        start_call(a, player, "game.echo", id=id)
    flush(a, b)
    assert len(requests(here)) == 3 and requests(there) == []


def test_remote_callee_disconnect_and_timeout():
    """B's callee dropping fails A's call -32005; a silent one times out -32006."""
    a, b = two_gateways()
    callee = service(b)
    register(b, callee)
    player = a.open("bob")
    start_call(a, player, "game.echo", id=101)
    flush(a, b)
    b.drop(callee)
    flush(a, b)
    assert answer_of(player, 101)["error"]["code"] == -32005
    callee = service(b)
    register(b, callee)
    start_call(a, player, "game.echo", id=102)
    flush(a, b)
    for _ in range(51):  # in steps, so that each renewal runs at its time
        a.advance(0.1)
    flush(a, b)
    assert answer_of(player, 102)["error"]["code"] == -32006


def test_dead_gateway_registrations_expire_and_calls_fail_unavailable():
    """B freezes: within the TTL its entries go and A's calls to it get -32005."""
    a, b = two_gateways(ttl_s=3.0, one_clock=False)
    callee = service(b)
    register(b, callee)
    player = a.open("bob")
    start_call(a, player, "game.echo", id=101)
    flush(a, b)
    a.advance(2.9)  # B's clock stands still: it renews nothing, answers nothing
    registry = a.gateway.backends.procedures
    assert a.result_of(registry.gateways("game.echo")) == ["gw-b"]
    assert answer_of(player, 101) is None
    a.advance(1.1)
    assert answer_of(player, 101)["error"]["code"] == -32005
    assert a.result_of(registry.gateways("game.echo")) == []
    assert a.call(player, "game.echo")["error"]["code"] == -32601


INTERACT = {
    "type": "object",
    "properties": {"entity": {"type": "string", "maxLength": 64}},
    "required": ["entity"],
    "additionalProperties": False,
}


def test_discover_lists_the_schemas_a_callee_registered(gateway):
    """rpc.register's params, result and summary appear in players' rpc.discover."""
    callee = service(gateway)
    described = {
        "procedure": "game.interact",
        "params": INTERACT,
        "result": {"type": "object"},
        "summary": "Use a door or a pickup.",
    }
    assert gateway.call(callee, "rpc.register", described)["result"] == {}
    register(gateway, callee, "game.bare")
    methods = gateway.call(gateway.open("bob"), "rpc.discover")["result"]["methods"]
    routed = {m["name"]: m for m in methods if m.get("x-routed")}
    interact = routed["game.interact"]
    assert interact["summary"] == "Use a door or a pickup."
    assert interact["x-params-schema"] == INTERACT
    assert interact["params"] == [
        {"name": "entity", "required": True, "schema": INTERACT["properties"]["entity"]}
    ]
    assert interact["result"] == {"name": "result", "schema": {"type": "object"}}
    assert routed["game.bare"]["params"] == []
    assert routed["game.bare"]["result"]["schema"] == {}


@pytest.mark.parametrize(
    ("member", "schema", "message"),
    [
        ("params", {"type": "nonsense"}, "invalid JSON Schema"),
        ("result", {"minLength": "x"}, "invalid JSON Schema"),
        ("params", {"$ref": "http://127.0.0.1:9/x"}, "only references inside"),
        ("params", {"enum": ["x" * 200] * 100}, "larger than 16384 bytes"),
        ("params", [1], "is not of type"),
    ],
)
def test_bad_schemas_are_invalid_params(gateway, member, schema, message):
    """A schema that does not compile, refers outside, or is too big: -32602 at it."""
    callee = service(gateway)
    params = {"procedure": "game.interact", member: schema}
    error = gateway.call(callee, "rpc.register", params)["error"]
    assert error["code"] == -32602
    (problem,) = error["data"]["errors"]
    assert problem["path"] == "/" + member
    assert message in problem["message"]
    assert (
        gateway.call(callee, "rpc.register", {"procedure": "game.interact"})["result"]
        == {}
    )


def test_the_size_bound_is_configured(make_memory_gateway):
    """[procedures] max_schema_bytes bounds each schema."""
    gateway = make_memory_gateway({"procedures": {"max_schema_bytes": 64}})
    callee = service(gateway)
    small = {"procedure": "game.a", "params": {"type": "object"}}
    assert gateway.call(callee, "rpc.register", small)["result"] == {}
    error = gateway.call(callee, "rpc.register", {**small, "params": INTERACT})["error"]
    assert "larger than 64 bytes" in error["data"]["errors"][0]["message"]


def test_a_description_is_shared_across_gateways_and_renewed():
    """Gateway B lists A's callee with its schemas, after renewals too."""
    a, b = two_gateways()
    callee = service(a)
    params = {"procedure": "game.interact", "params": INTERACT}
    assert a.call(callee, "rpc.register", params)["result"] == {}
    a.clock.advance(5)
    flush(a, b)
    methods = b.call(b.open("bob"), "rpc.discover")["result"]["methods"]
    (routed,) = [m for m in methods if m.get("x-routed")]
    assert routed["x-params-schema"] == INTERACT
