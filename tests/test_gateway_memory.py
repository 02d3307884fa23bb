"""The gateway end to end in memory: real Autobahn clients, a task.Clock."""

from __future__ import annotations

import cbor2
import orjson
import pytest

from rtgateway.wire import closecodes


def open_client(gateway, sub="alice", **kwargs):
    client = gateway.connect(sub, **kwargs)
    gateway.flush()
    return client


def call(gateway, client, method, params=None, id=1):
    """Send one request and return the response to it."""
    request = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        request["params"] = params
    before = len(client.received)
    client.send(request)
    gateway.flush()
    responses = [
        m for m in client.received[before:] if isinstance(m, dict) and m.get("id") == id
    ]
    assert len(responses) == 1, client.received[before:]
    return responses[0]


def test_welcome_is_the_first_message_with_every_field(memory_gateway):
    """session.welcome comes first and carries every field of the contract."""
    client = open_client(memory_gateway)
    assert client.opened
    welcome = client.received[0]
    assert welcome["jsonrpc"] == "2.0" and welcome["method"] == "session.welcome"
    assert "id" not in welcome
    params = welcome["params"]
    assert set(params) == {
        "session_id",
        "player_id",
        "gateway_id",
        "resume_token",
        "protocol",
        "server_time_ms",
        "heartbeat",
        "limits",
    }
    assert params["player_id"] == "alice"
    assert params["gateway_id"] == "gw-test"
    assert params["protocol"] == 1
    assert params["heartbeat"] == {"interval_ms": 15000, "timeout_ms": 10000}
    assert params["limits"] == {
        "max_message_bytes": 65536,
        "max_batch": 100,
        "rate_per_second": 100,
        "rate_burst": 200,
    }
    assert isinstance(params["resume_token"], str) and len(params["resume_token"]) >= 32


def test_ping_answers_with_the_server_clock(memory_gateway):
    """sys.ping returns server_time_ms from the gateway's clock."""
    client = open_client(memory_gateway)
    memory_gateway.clock.advance(12.5)
    response = call(memory_gateway, client, "sys.ping", {})
    assert response == {"jsonrpc": "2.0", "result": {"server_time_ms": 12500}, "id": 1}


def test_cbor_subprotocol_uses_binary_frames(memory_gateway):
    """With rtgw.v1.cbor the gateway speaks CBOR in binary frames."""
    client = open_client(memory_gateway, protocols=["rtgw.v1.cbor"])
    assert client.websocket_protocol_in_use == "rtgw.v1.cbor"
    assert client.received[0]["method"] == "session.welcome"
    assert (
        call(memory_gateway, client, "sys.ping", {}, id="p")["result"]["server_time_ms"]
        == 0
    )


def test_first_supported_subprotocol_in_client_order_wins(memory_gateway):
    """The server picks the first subprotocol it supports, in the client's order."""
    client = open_client(
        memory_gateway, protocols=["x.unknown", "rtgw.v1.cbor", "rtgw.v1.json"]
    )
    assert client.websocket_protocol_in_use == "rtgw.v1.cbor"


def test_no_subprotocol_means_json(memory_gateway):
    """A client offering no subprotocol gets JSON and no protocol header."""
    client = open_client(memory_gateway)
    assert client.websocket_protocol_in_use is None
    assert call(memory_gateway, client, "sys.ping", {})["result"] == {
        "server_time_ms": 0
    }


@pytest.mark.parametrize(
    ("protocols", "binary"),
    [([], True), (["rtgw.v1.cbor"], False)],
    ids=["json", "cbor"],
)
def test_frame_of_the_wrong_type_closes_1003(memory_gateway, protocols, binary):
    """A binary frame on JSON (or text on CBOR) closes the connection 1003."""
    client = open_client(memory_gateway, protocols=protocols)
    payload = cbor2.dumps({"jsonrpc": "2.0", "method": "sys.ping", "id": 1})
    client.sendMessage(payload if binary else b'{"a": 1}', isBinary=binary)
    memory_gateway.flush()
    assert client.close_code == closecodes.UNSUPPORTED_DATA


def test_message_over_the_size_limit_closes_1009(make_memory_gateway):
    """A message over max_message_bytes closes the connection 1009."""
    gateway = make_memory_gateway({"limits": {"max_message_bytes": 1024}})
    client = open_client(gateway)
    client.sendMessage(orjson.dumps({"jsonrpc": "2.0", "method": "x" * 2000}), False)
    gateway.flush()
    assert client.close_code == closecodes.MESSAGE_TOO_BIG


def test_parse_error_answers_with_null_id(memory_gateway):
    """A frame that is not JSON gets -32700 with id null, and the connection lives."""
    client = open_client(memory_gateway)
    client.sendMessage(
        b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', False
    )
    memory_gateway.flush()
    assert client.received[-1] == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }
    assert call(memory_gateway, client, "sys.ping", {})["result"]


def test_rate_limit_refuses_with_retry_after_then_recovers(make_memory_gateway):
    """Past the burst: -32002 with retry_after_ms; time refills the bucket."""
    gateway = make_memory_gateway({"limits": {"rate_per_second": 10, "rate_burst": 3}})
    client = open_client(gateway)
    for i in range(3):
        assert "result" in call(gateway, client, "sys.ping", {}, id=i)
    refused = call(gateway, client, "sys.ping", {}, id=99)
    assert refused["error"]["code"] == -32002
    assert refused["error"]["data"] == {"retry_after_ms": 100}
    gateway.advance(0.1)
    assert "result" in call(gateway, client, "sys.ping", {}, id=100)


def test_batch_entries_each_count_against_the_rate(make_memory_gateway):
    """Every entry of a batch spends a token; the ones past the burst are refused."""
    gateway = make_memory_gateway({"limits": {"rate_per_second": 1, "rate_burst": 2}})
    client = open_client(gateway)
    client.send([{"jsonrpc": "2.0", "method": "sys.ping", "id": i} for i in range(3)])
    gateway.flush()
    codes = [r.get("error", {}).get("code") for r in client.received[-1]]
    assert codes == [None, None, -32002]


def test_sustained_abuse_closes_4008(make_memory_gateway):
    """A client that keeps sending past the limit is closed 4008."""
    gateway = make_memory_gateway(
        {"limits": {"rate_per_second": 1, "rate_burst": 1, "abuse_rejections": 5}}
    )
    client = open_client(gateway)
    for i in range(8):
        client.send({"jsonrpc": "2.0", "method": "sys.ping", "id": i})
    gateway.flush()
    assert client.close_code == closecodes.SLOW_CONSUMER


def test_idle_connection_closes_4002(make_memory_gateway):
    """No message for idle_timeout_s closes 4002; messages keep it open."""
    gateway = make_memory_gateway({"heartbeat": {"idle_timeout_s": 30}})
    client = open_client(gateway)
    gateway.advance(20)
    call(gateway, client, "sys.ping", {})
    gateway.advance(20)
    assert not client.closed
    gateway.advance(11)
    assert client.close_code == closecodes.IDLE_TIMEOUT


def test_heartbeat_pings_and_drops_a_silent_peer(make_memory_gateway):
    """The server pings every interval; a peer that never pongs is dropped."""
    gateway = make_memory_gateway({"heartbeat": {"interval_s": 5, "timeout_s": 2}})
    client = open_client(gateway)
    gateway.advance(5)
    assert client.pings == 1
    gateway.advance(5)
    assert client.pings == 2 and not client.closed
    client.answer_pings = False
    gateway.advance(5)
    assert client.pings == 3
    gateway.advance(2)
    assert client.closed and client.close_code == closecodes.ABNORMAL
    assert not gateway.gateway.factory.connections


def test_heartbeat_measures_round_trip(make_memory_gateway):
    """Pongs are matched to pings and give the connection's round-trip time."""
    gateway = make_memory_gateway({"heartbeat": {"interval_s": 5, "timeout_s": 2}})
    open_client(gateway)
    gateway.advance(5)
    (connection,) = gateway.gateway.factory.connections
    assert connection._heartbeat.rtt_count == 1


def test_batch_gets_responses_in_request_order(memory_gateway):
    """A batch answers with an array of its requests' responses."""
    client = open_client(memory_gateway)
    client.send(
        [
            {"jsonrpc": "2.0", "method": "sys.ping", "id": "a"},
            {"jsonrpc": "2.0", "method": "sys.ping"},
            {"jsonrpc": "2.0", "method": "nope", "id": "b"},
        ]
    )
    memory_gateway.flush()
    answer = client.received[-1]
    assert [r["id"] for r in answer] == ["a", "b"]
    assert answer[1]["error"] == {"code": -32601, "message": "Method not found"}


def test_batch_over_max_batch_is_one_invalid_request(make_memory_gateway):
    """A batch longer than max_batch gets a single -32600 error."""
    gateway = make_memory_gateway({"limits": {"max_batch": 2}})
    client = open_client(gateway)
    client.send([{"jsonrpc": "2.0", "method": "sys.ping", "id": i} for i in range(3)])
    gateway.flush()
    answer = client.received[-1]
    assert answer["id"] is None and answer["error"]["code"] == -32600


def test_invalid_params_name_the_json_pointer(memory_gateway):
    """Params failing the schema give -32602 with data.errors path pointers."""
    client = open_client(memory_gateway)
    response = call(memory_gateway, client, "sys.ping", {"extra": 1})
    assert response["error"]["code"] == -32602
    assert [e["path"] for e in response["error"]["data"]["errors"]] == ["/extra"]


def test_handler_crash_is_internal_error_without_traceback(memory_gateway):
    """A handler's exception becomes -32603; the traceback only goes to the log."""
    from twisted.logger import capturedLogs

    def explode(caller, params):
        raise KeyError("secret detail")

    memory_gateway.gateway.router.register("test.explode", explode)
    client = open_client(memory_gateway)
    with capturedLogs() as events:
        response = call(memory_gateway, client, "test.explode", {})
    assert response["error"] == {"code": -32603, "message": "Internal error"}
    assert any(e.get("log_failure") is not None for e in events)
    assert "secret detail" not in orjson.dumps(response).decode()
    assert "result" in call(memory_gateway, client, "sys.ping", {}, id=2)


def test_async_and_deferred_handlers(memory_gateway):
    """Handlers may be async def or return Deferreds."""
    from twisted.internet.defer import succeed

    async def coroutine(caller, params):
        return {"via": "coroutine"}

    memory_gateway.gateway.router.register("test.coro", coroutine)
    memory_gateway.gateway.router.register(
        "test.deferred", lambda c, p: succeed({"via": "d"})
    )
    client = open_client(memory_gateway)
    assert call(memory_gateway, client, "test.coro", {})["result"] == {
        "via": "coroutine"
    }
    assert call(memory_gateway, client, "test.deferred", {}, id=2)["result"] == {
        "via": "d"
    }


def test_role_restricted_method_is_forbidden_to_others(memory_gateway):
    """A method limited to a role answers -32001 to principals without it."""
    memory_gateway.gateway.router.register(
        "test.admin", lambda c, p: {}, roles=["admin"]
    )
    player = open_client(memory_gateway, "bob")
    assert call(memory_gateway, player, "test.admin", {})["error"]["code"] == -32001

    admin_token = memory_gateway.token("root", roles=["admin"])
    admin = open_client(memory_gateway, None, token=admin_token)
    assert call(memory_gateway, admin, "test.admin", {})["result"] == {}


def test_session_close_answers_then_closes_1000(memory_gateway):
    """session.close gets {} and then a 1000 close; the session is gone."""
    client = open_client(memory_gateway)
    session_id = client.received[0]["params"]["session_id"]
    assert call(memory_gateway, client, "session.close", {})["result"] == {}
    memory_gateway.flush()
    assert client.close_code == closecodes.NORMAL
    store = memory_gateway.gateway.backends.sessions
    assert memory_gateway.result_of(store.load(session_id)) is None


def test_discover_lists_methods_with_schemas(memory_gateway):
    """rpc.discover returns an OpenRPC document with params and result schemas."""
    client = open_client(memory_gateway)
    document = call(memory_gateway, client, "rpc.discover", {})["result"]
    assert document["openrpc"].startswith("1.")
    methods = {m["name"]: m for m in document["methods"]}
    assert {"sys.ping", "session.close", "rpc.discover"} <= set(methods)
    ping = methods["sys.ping"]
    assert ping["params"] == []
    assert ping["result"]["schema"]["properties"]["server_time_ms"] == {
        "type": "integer"
    }


def test_drain_closes_1001_with_jittered_reconnect_hint(make_memory_gateway):
    """Draining closes every connection 1001 with {"reconnect": true, "after_ms": N}."""
    gateway = make_memory_gateway({"shutdown": {"reconnect_jitter_ms": 3000}})
    clients = [open_client(gateway, f"p{i}") for i in range(5)]
    done = gateway.gateway.factory.drain(10)
    gateway.flush()
    for client in clients:
        assert client.close_code == closecodes.GOING_AWAY
        hint = orjson.loads(client.close_reason)
        assert hint["reconnect"] is True and 0 <= hint["after_ms"] <= 3000
    assert done.called


def test_drain_drops_what_does_not_close_in_time(make_memory_gateway):
    """Connections that do not finish closing are dropped at the deadline."""
    gateway = make_memory_gateway({"shutdown": {"drain_timeout_s": 4}})
    gateway.connect("alice")
    gateway.flush()
    done = gateway.gateway.factory.drain(4)
    gateway.clock.advance(0)  # the client never reads: no close handshake
    assert not done.called
    gateway.clock.advance(4)
    gateway.flush()
    assert done.called and not gateway.gateway.factory.connections


def test_slow_reader_is_closed_4008(make_memory_gateway):
    """Past send_buffer_bytes while the transport is full: closed 4008."""
    gateway = make_memory_gateway({"limits": {"send_buffer_bytes": 4096}})
    client = open_client(gateway)
    (connection,) = gateway.gateway.factory.connections
    connection._guard.pauseProducing()  # what a full TCP buffer makes the transport do
    for i in range(50):
        client.send({"jsonrpc": "2.0", "method": "rpc.discover", "id": i})
    gateway.flush()
    assert client.close_code == closecodes.SLOW_CONSUMER


def test_metrics_count_messages_and_errors(memory_gateway):
    """Messages in/out by method, errors by code and bytes are counted."""
    client = open_client(memory_gateway)
    call(memory_gateway, client, "sys.ping", {})
    call(memory_gateway, client, "no.such", {}, id=2)
    registry = memory_gateway.gateway.metrics.registry
    value = registry.get_sample_value
    assert value("rtgateway_messages_in_total", {"method": "sys.ping"}) == 1
    assert value("rtgateway_messages_in_total", {"method": "unknown"}) == 1
    assert value("rtgateway_errors_total", {"code": "-32601"}) == 1
    assert value("rtgateway_connections") == 1
    assert value("rtgateway_bytes_in_total") > 0
    assert value("rtgateway_call_latency_seconds_count", {"method": "sys.ping"}) == 1


def refused(gateway, sub="alice", **kwargs):
    client = gateway.connect(sub, **kwargs)
    gateway.flush()
    assert not client.opened
    return client.http_status, orjson.loads(client.http_body)


def test_missing_token_is_401_with_reason(memory_gateway):
    """No token: HTTP 401, the reason in a JSON body, an auth failure counted."""
    status, body = refused(memory_gateway, None)
    assert status == 401
    assert body == {"error": "unauthorized", "reason": "missing_token"}
    value = memory_gateway.gateway.metrics.registry.get_sample_value
    assert value("rtgateway_auth_failures_total", {"reason": "missing_token"}) == 1


def test_token_in_query_parameter_is_accepted(memory_gateway):
    """Browsers send the JWT as access_token in the query string."""

    token = memory_gateway.token("carol")
    client = open_client(memory_gateway, None, query=f"?access_token={token}")
    assert client.received[0]["params"]["player_id"] == "carol"


def test_bad_token_is_401_and_never_echoed(memory_gateway):
    """A token with a bad signature is refused 401 and not repeated back."""

    token = memory_gateway.token("alice")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    client = memory_gateway.connect(None, token=forged)
    memory_gateway.flush()
    assert client.http_status == 401
    assert forged.encode() not in client.raw


def test_unknown_origin_is_403(make_memory_gateway):
    """With an origin allow-list, other browser origins get 403."""
    gateway = make_memory_gateway(
        {"gateway": {"allowed_origins": ["https://play.example.com"]}}
    )
    status, body = refused(gateway, headers={"Origin": "https://evil.example.net"})
    assert status == 403 and body["reason"] == "origin_not_allowed"
    client = open_client(gateway, headers={"Origin": "https://play.example.com"})
    assert client.opened


def test_only_unknown_subprotocols_is_400(memory_gateway):
    """Offering only subprotocols the server does not speak gets 400."""
    status, body = refused(memory_gateway, protocols=["wamp.2.json"])
    assert status == 400 and body["reason"] == "unsupported_subprotocol"


def test_per_ip_cap_is_429(make_memory_gateway):
    """Over max_connections_per_ip from one address: 429; other addresses get in."""
    gateway = make_memory_gateway({"limits": {"max_connections_per_ip": 2}})
    open_client(gateway, "a")
    open_client(gateway, "b")
    status, _ = refused(gateway, "c")
    assert status == 429
    assert open_client(gateway, "d", host="127.0.0.2").opened


def test_global_cap_is_503(make_memory_gateway):
    """Over max_connections: 503."""
    gateway = make_memory_gateway({"limits": {"max_connections": 1}})
    first = open_client(gateway, "a")
    status, _ = refused(gateway, "b", host="127.0.0.9")
    assert status == 503
    call(gateway, first, "session.close", {})
    gateway.flush()
    assert open_client(gateway, "c").opened


def test_plain_get_on_the_websocket_path_is_426(memory_gateway):
    """A GET without Upgrade on the WebSocket path answers 426."""
    from twisted.internet.testing import StringTransport

    channel = memory_gateway.gateway.site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 426")


def test_silent_connection_is_dropped_at_the_handshake_timeout(make_memory_gateway):
    """A connection that never completes its upgrade is dropped after the timeout."""
    from twisted.internet.testing import StringTransport

    gateway = make_memory_gateway({"limits": {"handshake_timeout_s": 3}})
    channel = gateway.gateway.site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # headers never end
    gateway.clock.advance(2.9)
    assert not transport.disconnecting
    gateway.clock.advance(0.2)
    assert transport.disconnecting


def test_connection_events_are_logged_without_the_token(memory_gateway):
    """Open, close and auth failure each log one event with ids, never the token."""
    from twisted.logger import capturedLogs

    token = memory_gateway.token("dave")
    with capturedLogs() as events:
        client = open_client(memory_gateway, None, token=token)
        call(memory_gateway, client, "session.close", {})
        memory_gateway.flush()
        memory_gateway.connect(None, token=token + "x")
        memory_gateway.flush()
    texts = [repr(e) for e in events]
    opened = [e for e in events if "opened" in e.get("log_format", "")]
    closed = [e for e in events if "closed with" in e.get("log_format", "")]
    failed = [e for e in events if "authentication failed" in e.get("log_format", "")]
    assert len(opened) == len(closed) == len(failed) == 1
    assert opened[0]["player_id"] == "dave" and opened[0]["connection_id"]
    assert closed[0]["code"] == closecodes.NORMAL
    assert failed[0]["reason"] == "bad_signature"
    assert not any(token in text for text in texts)


def test_unencodable_result_keeps_its_id_and_its_batch(memory_gateway):
    """A result that cannot be encoded becomes -32603 for that id alone."""
    memory_gateway.gateway.router.register("test.set", lambda caller, params: {1, 2})
    client = open_client(memory_gateway)
    client.send(
        [
            {"jsonrpc": "2.0", "method": "test.set", "id": "bad"},
            {"jsonrpc": "2.0", "method": "sys.ping", "id": "good"},
        ]
    )
    memory_gateway.flush()
    bad, good = client.received[-1]
    assert bad == {
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": "Internal error"},
        "id": "bad",
    }
    assert good["id"] == "good" and "result" in good


def test_garbage_frames_are_rate_limited_too(make_memory_gateway):
    """Unparseable frames spend tokens: past the burst they get no answer."""
    gateway = make_memory_gateway({"limits": {"rate_per_second": 1, "rate_burst": 2}})
    client = open_client(gateway)
    before = len(client.received)
    for _ in range(5):
        client.sendMessage(b"not json", False)
    gateway.flush()
    assert len(client.received) - before == 2


def test_malformed_websocket_handshake_is_400_with_a_json_reason(memory_gateway):
    """A handshake without Sec-WebSocket-Key is refused 400 with a JSON body."""
    from twisted.internet.testing import StringTransport

    channel = memory_gateway.gateway.site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    response = transport.value()
    assert response.startswith(b"HTTP/1.1 400 Bad Request")
    assert orjson.loads(response.partition(b"\r\n\r\n")[2])["reason"] == (
        "invalid_websocket_handshake"
    )
