"""``wss://`` end to end: twistd listening on an ``ssl:`` endpoint.

The tests make a self-signed certificate, start ``twistd -n rtgateway``
with ``listen = "ssl:...:privateKey=...:certKey=..."`` exactly as
docs/configuration.rst tells an operator to, and speak to it with the
``websockets`` library trusting only that certificate: authentication,
RPC, the refusals before the upgrade, a resume with replayed events, and
the health endpoints, all over TLS on the one port.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import cbor2
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for
from rtgateway.testing.certs import self_signed
from rtgateway.testing.process import write_config

pytestmark = pytest.mark.integration

TOKENS = make_config()
TOPICS = {
    "chat": {
        "subscribe": "any",
        "publish": "any",
        "history_size": 1000,
        "history_ttl_s": 600,
    }
}
EVENTS = {"chat.line": {"schema": {"type": "object"}}}


class TLSGatewayProcess(GatewayProcess):
    """A gateway process listening with TLS, probed over https."""

    def __init__(self, directory: Path, overrides: dict, *, name: str = "gw"):
        super().__init__(directory, overrides, name=name)
        key, cert = self_signed(directory)
        self.context = ssl.create_default_context(cafile=str(cert))
        self.sections["gateway"]["listen"] = (
            f"ssl:port={self.port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        )
        write_config(self.config_path, self.sections)

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                self.http + path, timeout=timeout, context=self.context
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """One TLS gateway process shared by the tests of this module."""
    process = TLSGatewayProcess(
        tmp_path_factory.mktemp("tls"),
        {
            "gateway": {"allowed_origins": ["https://play.example.com"]},
            "topics": TOPICS,
            "events": EVENTS,
            "limits": {"rate_per_second": 10_000, "rate_burst": 10_000},
        },
    ).start()
    yield process
    process.stop()
    log = process.log()
    assert "Traceback" not in log and "Unhandled" not in log, log


def bearer(sub="alice"):
    return {"Authorization": f"Bearer {token_for(TOKENS, sub)}"}


def open_wss(gateway, sub="alice", *, headers=None, url=None, **kwargs):
    return connect(
        url or gateway.url,
        ssl=gateway.context,
        additional_headers=bearer(sub) if headers is None else headers,
        open_timeout=10,
        close_timeout=10,
        **kwargs,
    )


def receive(ws):
    return json.loads(ws.recv(timeout=10))


def call(ws, method, params, id):
    """Send a request; return its response, keeping notifications apart."""
    ws.send(
        json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
    )
    while True:
        message = receive(ws)
        if message.get("id") == id:
            return message


@pytest.mark.parametrize(
    ("subprotocol", "codec"),
    [("rtgw.v1.json", json), ("rtgw.v1.cbor", cbor2)],
    ids=["json", "cbor"],
)
def test_jwt_authenticated_rpc_over_wss(gateway, subprotocol, codec):
    """A JWT-authenticated connection over TLS gets its welcome and RPC answers."""
    with open_wss(gateway, subprotocols=[subprotocol]) as ws:
        assert ws.subprotocol == subprotocol
        assert ws.socket.version() in ("TLSv1.2", "TLSv1.3")
        welcome = codec.loads(ws.recv(timeout=10))
        assert welcome["method"] == "session.welcome"
        assert welcome["params"]["player_id"] == "alice"
        request = {"jsonrpc": "2.0", "method": "sys.ping", "params": {}, "id": 1}
        ws.send(codec.dumps(request))
        response = codec.loads(ws.recv(timeout=10))
        assert response["id"] == 1
        assert isinstance(response["result"]["server_time_ms"], int)


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
        ({"subprotocols": ["wamp.2.json"]}, 400, "unsupported_subprotocol"),
    ],
    ids=["no-token", "garbage-token", "origin", "subprotocol"],
)
def test_refusals_come_back_over_tls(gateway, kwargs, status, reason):
    """Refused upgrades get the protocol's HTTP status and JSON reason over TLS."""
    with pytest.raises(InvalidStatus) as info:
        open_wss(gateway, **kwargs)
    response = info.value.response
    assert response.status_code == status
    assert json.loads(response.body)["reason"] == reason


def test_wrong_path_is_not_upgraded(gateway):
    """A WebSocket upgrade on another path is a plain 404 over TLS."""
    with pytest.raises(InvalidStatus) as info:
        open_wss(gateway, url=f"wss://127.0.0.1:{gateway.port}/elsewhere")
    assert info.value.response.status_code == 404


def test_expired_token_is_refused_401(gateway):
    """A token past its exp is refused before the upgrade, over TLS too."""
    expired = token_for(TOKENS, "alice", ttl_s=60, now=time.time() - 3600)
    with pytest.raises(InvalidStatus) as info:
        open_wss(gateway, headers={"Authorization": f"Bearer {expired}"})
    assert info.value.response.status_code == 401


def test_resume_over_wss_replays_missed_events(gateway):
    """A dropped wss client resumes its session and gets what it missed, in order."""
    topic = "chat.tls-resume"
    with open_wss(gateway, "carol") as ws:
        welcome = receive(ws)["params"]
        subscribed = call(ws, "pubsub.subscribe", {"topic": topic}, 1)["result"]
        position = {"offset": subscribed["offset"], "epoch": subscribed["epoch"]}
        ws.socket.shutdown(socket.SHUT_RDWR)  # gone without a closing handshake
    with open_wss(gateway, "dave") as publisher:
        receive(publisher)
        for n in range(3):
            params = {"topic": topic, "type": "chat.line", "data": {"n": n}}
            assert "offset" in call(publisher, "pubsub.publish", params, n)["result"]
    with open_wss(gateway, "carol") as ws:
        assert receive(ws)["method"] == "session.welcome"
        params = {
            "resume_token": welcome["resume_token"],
            "positions": {topic: position},
        }
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "session.resume",
                    "params": params,
                    "id": 9,
                }
            )
        )
        messages = [receive(ws) for _ in range(4)]
    (response,) = [m for m in messages if m.get("id") == 9]
    assert response["result"]["session_id"] == welcome["session_id"]
    assert response["result"]["resumed"] is True
    assert response["result"]["subscriptions"] == [topic]
    assert response["result"]["recovered"] == {topic: True}
    replayed = [m["params"]["data"]["n"] for m in messages if m.get("method")]
    assert replayed == [0, 1, 2]


def test_health_endpoints_over_https(gateway):
    """/healthz, /readyz and /metrics answer over https on the WebSocket's port."""
    assert gateway.get("/healthz")[0] == 200
    status, body = gateway.get("/readyz")
    assert status == 200
    assert json.loads(body)["ready"] is True
    status, body = gateway.get("/metrics")
    assert status == 200 and b"rtgateway_connections " in body


def test_plain_http_on_the_tls_port_gets_no_answer(gateway):
    """The port speaks only TLS: a plaintext request gets no HTTP response."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert not plain.recv(1024).startswith(b"HTTP/")
