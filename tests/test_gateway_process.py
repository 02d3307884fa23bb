"""The real gateway, started by twistd, spoken to by a third-party client.

These tests run ``twistd -n rtgateway`` in a child process and talk to it
with the ``websockets`` library over loopback, exactly as an independent
client would.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time

import cbor2
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from rtgateway.testing import GatewayFleet, GatewayProcess, make_config, token_for
from rtgateway.testing.process import TWISTD

pytestmark = pytest.mark.integration

TOKENS = make_config()


def bearer(sub="alice", **kwargs):
    return {"Authorization": f"Bearer {token_for(TOKENS, sub, **kwargs)}"}


def open_ws(gateway, sub="alice", *, protocols=None, headers=None, **kwargs):
    ws = connect(
        gateway.url,
        additional_headers=headers if headers is not None else bearer(sub),
        subprotocols=protocols,
        open_timeout=10,
        close_timeout=10,
        **kwargs,
    )
    return ws


def receive(ws, codec=json.loads):
    return codec(ws.recv(timeout=10))


def closed_with(ws, timeout=10.0):
    """Read until the server closes; the close frame it sent."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    return info.value.rcvd


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """One gateway process shared by the tests of this module."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"),
        {
            "limits": {
                "max_message_bytes": 4096,
                "max_connections_per_ip": 50,
                "rate_per_second": 100000,
                "rate_burst": 100000,
                "abuse_rejections": 100000,
                "send_buffer_bytes": 262144,
                # Long enough for a slow reader to drain what was buffered
                # before the close frame; short enough to keep tests quick.
                "close_timeout_s": 3.0,
            },
            "gateway": {"allowed_origins": ["https://play.example.com"]},
        },
    ).start()
    yield process
    process.stop()


def test_welcome_then_ping_over_json(gateway):
    """A websockets client gets session.welcome, then answers to sys.ping."""
    with open_ws(gateway, protocols=["rtgw.v1.json"]) as ws:
        assert ws.subprotocol == "rtgw.v1.json"
        welcome = receive(ws)
        assert welcome["method"] == "session.welcome"
        assert welcome["params"]["player_id"] == "alice"
        ws.send(
            json.dumps({"jsonrpc": "2.0", "method": "sys.ping", "params": {}, "id": 7})
        )
        response = receive(ws)
        assert response["id"] == 7 and isinstance(
            response["result"]["server_time_ms"], int
        )


def test_welcome_then_ping_over_cbor(gateway):
    """The same session over CBOR binary frames."""
    with open_ws(gateway, protocols=["rtgw.v1.cbor"]) as ws:
        assert ws.subprotocol == "rtgw.v1.cbor"
        frame = ws.recv(timeout=10)
        assert isinstance(frame, bytes)
        assert cbor2.loads(frame)["method"] == "session.welcome"
        ws.send(cbor2.dumps({"jsonrpc": "2.0", "method": "sys.ping", "id": 1}))
        assert "server_time_ms" in cbor2.loads(ws.recv(timeout=10))["result"]


def test_token_in_query_string(gateway):
    """The access_token query parameter authenticates browsers."""
    token = token_for(TOKENS, "bob")
    ws = connect(f"{gateway.url}?access_token={token}", open_timeout=10)
    with ws:
        assert receive(ws)["params"]["player_id"] == "bob"


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"headers": {}}, 401, "missing_token"),
        ({"headers": {"Authorization": "Bearer not.a.jwt"}}, 401, "malformed_token"),
        (
            {"headers": {**bearer(), "Origin": "https://evil.example"}},
            403,
            "origin_not_allowed",
        ),
        ({"protocols": ["wamp.2.json"]}, 400, "unsupported_subprotocol"),
    ],
    ids=["no-token", "garbage-token", "origin", "subprotocol"],
)
def test_refusals_before_the_upgrade(gateway, kwargs, status, reason):
    """Refused upgrades get the protocol's HTTP status and a JSON reason."""
    with pytest.raises(InvalidStatus) as info:
        open_ws(gateway, **kwargs)
    response = info.value.response
    assert response.status_code == status
    assert json.loads(response.body)["reason"] == reason


def test_expired_token_is_refused(gateway):
    """An expired JWT is refused 401 and counted by reason."""
    before = gateway.metric("rtgateway_auth_failures_total", {"reason": "expired"})
    token = token_for(TOKENS, "alice", ttl_s=60, now=time.time() - 3600)
    with pytest.raises(InvalidStatus) as info:
        open_ws(gateway, headers={"Authorization": f"Bearer {token}"})
    assert info.value.response.status_code == 401
    after = gateway.metric("rtgateway_auth_failures_total", {"reason": "expired"})
    assert after == before + 1


def test_binary_frame_on_json_closes_1003(gateway):
    """A binary frame on a JSON connection closes 1003."""
    with open_ws(gateway) as ws:
        receive(ws)
        ws.send(b"\x01\x02")
        assert closed_with(ws).code == 1003


def test_oversized_message_closes_1009(gateway):
    """A message over max_message_bytes closes 1009 (not a dropped TCP connection)."""
    with open_ws(gateway, compression=None) as ws:
        receive(ws)
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "x" * 5000}))
        assert closed_with(ws).code == 1009


def test_compressed_bomb_closes_1009(gateway):
    """With permessage-deflate the size limit applies after decompression."""
    with open_ws(gateway) as ws:  # websockets offers permessage-deflate by default
        receive(ws)
        ws.send(
            json.dumps({"jsonrpc": "2.0", "method": "sys.ping", "pad": " " * 200_000})
        )
        assert closed_with(ws).code == 1009


def test_health_ready_and_metrics(gateway):
    """GET /healthz, /readyz and /metrics answer on the WebSocket port."""
    with open_ws(gateway) as ws:
        receive(ws)
        # One call of this test's own, so that the latency histogram has a
        # sample whichever tests ran before it on this module's gateway.
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "sys.ping", "id": 1}))
        assert receive(ws)["id"] == 1
        status, body = gateway.get("/healthz")
        health = json.loads(body)
        assert (
            status == 200
            and health["gateway_id"] == "gw"
            and health["connections"] >= 1
        )
    status, body = gateway.get("/readyz")
    assert status == 200 and json.loads(body)["ready"] is True
    status, body = gateway.get("/metrics")
    text = body.decode()
    assert status == 200
    for name in (
        "rtgateway_connections ",
        "rtgateway_messages_in_total",
        "rtgateway_messages_out_total",
        "rtgateway_errors_total",
        "rtgateway_auth_failures_total",
        "rtgateway_call_latency_seconds_bucket",
        "rtgateway_bytes_in_total",
        "rtgateway_bytes_out_total",
    ):
        assert name in text
    metric_names = [
        line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")
    ]
    assert all(n.startswith("rtgateway_") for n in metric_names)


def test_reader_that_stops_reading_is_closed_4008_with_bounded_memory(gateway):
    """A client that never reads is closed 4008; the server's memory stays bounded."""
    slow_before = gateway.metric("rtgateway_slow_consumers_total")
    rss_before = gateway.rss_bytes()
    # max_queue=1: the client's reader thread stops taking data off the socket.
    with open_ws(gateway, max_queue=1, compression=None) as ws:
        discover = json.dumps({"jsonrpc": "2.0", "method": "rpc.discover", "id": 1})
        deadline = time.monotonic() + 30
        sent = 0
        while time.monotonic() < deadline and sent < 40_000:
            ws.send(discover)
            sent += 1
            if (
                sent % 500 == 0
                and gateway.metric("rtgateway_slow_consumers_total") > slow_before
            ):
                break
        assert gateway.metric("rtgateway_slow_consumers_total") == slow_before + 1
        # The responses to what was sent would be tens of MB if buffered.
        assert gateway.rss_bytes() - rss_before < 16 * 1024 * 1024
        # Reading again, the client finds the close frame after what was buffered.
        assert closed_with(ws, timeout=20).code == 4008


def test_plugin_is_discovered_from_the_installed_package(tmp_path):
    """twisted.plugin finds rtgateway from the installed package."""
    script = (
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "import rtgateway\n"
        "print(rtgateway.__file__)\n"
        "print([p.tapname for p in getPlugins(IServiceMaker)])\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "'rtgateway'" in result.stdout.splitlines()[-1]


def test_twistd_without_config_is_a_usage_error(tmp_path):
    """twistd rtgateway without --config refuses with a usage error."""
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "rtgateway"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--config is required" in result.stdout + result.stderr


def test_twistd_with_a_bad_config_names_file_and_key(tmp_path):
    """A bad config stops twistd with one line naming the file and the key."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[auth]\nsecret = "0123456789abcdef0123456789abcdef"\n'
        '[limits]\nrate_burst = "x"\n'
    )
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "rtgateway", "--config", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{path}: limits.rate_burst: expected an integer" in output
    assert "Traceback" not in output


@pytest.fixture
def fresh_gateway(fleet):
    """A gateway of one's own, for tests that end it or change its limits:
    ``fresh_gateway(sections, name)``."""
    return fleet.start


def test_idle_connection_closes_4002(fresh_gateway):
    """A connection that sends nothing for idle_timeout_s is closed 4002."""
    gateway = fresh_gateway({"heartbeat": {"idle_timeout_s": 0.5}})
    with open_ws(gateway) as ws:
        receive(ws)
        assert closed_with(ws).code == 4002


def test_connection_caps_429_and_503(fresh_gateway):
    """Past the per-IP cap: 429; past the global cap: 503."""
    gateway = fresh_gateway(
        {"limits": {"max_connections_per_ip": 2, "max_connections": 3}}
    )
    with open_ws(gateway, "a"), open_ws(gateway, "b"):
        with pytest.raises(InvalidStatus) as info:
            open_ws(gateway, "c")
        assert info.value.response.status_code == 429
    gateway_global = fresh_gateway(
        {"limits": {"max_connections_per_ip": 10, "max_connections": 1}}, name="gw2"
    )
    with open_ws(gateway_global, "a"):
        with pytest.raises(InvalidStatus) as info:
            open_ws(gateway_global, "b")
        assert info.value.response.status_code == 503


def test_sigterm_drains_with_1001_and_reconnect_hint(fresh_gateway):
    """SIGTERM closes each connection 1001 with a jittered reconnect hint."""
    gateway = fresh_gateway(
        {"shutdown": {"drain_timeout_s": 5, "reconnect_jitter_ms": 2000}}
    )
    stack = contextlib.ExitStack()
    clients = [stack.enter_context(open_ws(gateway, f"p{i}")) for i in range(3)]
    for ws in clients:
        receive(ws)
    started = time.monotonic()
    gateway.signal(signal.SIGTERM)
    for ws in clients:
        frame = closed_with(ws)
        assert frame.code == 1001
        hint = json.loads(frame.reason)
        assert hint["reconnect"] is True and 0 <= hint["after_ms"] <= 2000
    # twistd re-raises the signal after a clean shutdown, as its exit status.
    assert gateway.wait(timeout=10) in (0, -signal.SIGTERM)
    assert "Traceback" not in gateway.log()
    assert time.monotonic() - started < 5 + 2
    stack.close()


HOSTILE_JSON = [
    "[" * 100_000 + "]" * 100_000,
    "1" * 10_000,
    '{"jsonrpc": "2.0", "method": "sys.ping", "params": {"x": NaN}, "id": 1}',
    '{"jsonrpc": "2.0", "method": "sys.ping", "id": 1e400}',
    '"\\ud800"',
]
HOSTILE_CBOR = [
    bytes.fromhex("d81c81d81d00"),  # shared-reference cycle
    bytes.fromhex("9bffffffffffffffff"),  # array declaring 2**64-1 items
    bytes.fromhex("7bffffffffffffffff"),  # text declaring 2**64-1 bytes
    bytes.fromhex("d9ffff00"),  # unknown tag
    bytes.fromhex("c24aff") + b"\xff" * 9,  # bignum
    bytes.fromhex("d8236161"),  # regular expression
    cbor2.dumps({"jsonrpc": "2.0", "method": "sys.ping", "id": 1})
    + b"\x00",  # trailing
]


@pytest.mark.parametrize(
    ("protocol", "frames"),
    [("rtgw.v1.json", HOSTILE_JSON), ("rtgw.v1.cbor", HOSTILE_CBOR)],
    ids=["json", "cbor"],
)
def test_hostile_frames_get_errors_and_spare_neighbours(gateway, protocol, frames):
    """Hostile input gets -32700/-32600 or a close; a neighbour keeps working."""
    codec = json.loads if protocol.endswith("json") else cbor2.loads
    with open_ws(gateway, "neighbour") as neighbour:
        receive(neighbour)
        for frame in frames:
            with open_ws(
                gateway, "mallory", protocols=[protocol], compression=None
            ) as ws:
                receive(ws, codec)
                ws.send(frame)
                try:
                    answer = receive(ws, codec)
                except ConnectionClosed as closed:
                    assert closed.rcvd is not None and closed.rcvd.code in (1009, 4000)
                else:
                    assert answer["error"]["code"] in (-32700, -32600), answer
                    assert answer["id"] is None
            neighbour.send(
                json.dumps({"jsonrpc": "2.0", "method": "sys.ping", "id": 1})
            )
            assert "result" in receive(neighbour)
    assert "Traceback" not in gateway.log()


def test_tokens_never_reach_the_log(gateway):
    """Neither a good nor a refused token appears in the gateway's log."""
    good = token_for(TOKENS, "erin")
    with connect(f"{gateway.url}?access_token={good}", open_timeout=10) as ws:
        receive(ws)
    bad = good[:-2] + "xx"
    with pytest.raises(InvalidStatus):
        open_ws(gateway, headers={"Authorization": f"Bearer {bad}"})
    log = gateway.log()
    assert "erin" in log
    assert good not in log and bad not in log and good.split(".")[1] not in log


def test_json_log_option(fresh_gateway):
    """[logging] format = "json" writes one JSON object per event."""
    gateway = fresh_gateway({"logging": {"format": "json"}})
    with open_ws(gateway, "frank") as ws:
        receive(ws)
    gateway.stop()
    events = [json.loads(line) for line in gateway.log().splitlines() if line.strip()]
    opened = [
        e for e in events if e.get("player_id") == "frank" and "connection_id" in e
    ]
    assert opened, events[-5:]


def test_silent_tcp_connection_is_dropped_after_handshake_timeout(fresh_gateway):
    """A TCP connection that never sends its upgrade is closed by the gateway."""
    import socket

    gateway = fresh_gateway({"limits": {"handshake_timeout_s": 0.5}})
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\n")
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the gateway
        assert time.monotonic() - started < 5


def test_fleet_fails_on_a_traceback_in_any_gateway_log(tmp_path):
    """The check every process test relies on: a traceback fails the test."""
    fleet = GatewayFleet(tmp_path)
    clean = fleet.start(name="clean")
    broken = fleet.start(name="broken")
    with open(broken.log_path, "a") as log:
        log.write("Traceback (most recent call last):\n  boom\n")
    with pytest.raises(AssertionError, match=r"broken\.log"):
        fleet.stop()
    assert clean.process.poll() is not None and broken.process.poll() is not None
    assert fleet.started == []
