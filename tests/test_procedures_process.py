"""Routed procedures across two twistd gateways on a real redis-server.

A backend service on gateway B registers a procedure; a player on gateway A
calls it through the bus and gets the answer. Then B is killed (SIGKILL)
with calls in flight: they fail with -32005 once B's registry entries run
out (its liveness TTL), and the procedure is gone from the cluster.
"""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = pytest.mark.integration

TOKENS = make_config()
TTL_S = 2.0


class Peer:
    """A JSON connection of a player or, with the service role, a backend service."""

    def __init__(self, url: str, sub: str, roles: tuple[str, ...] = ()) -> None:
        token = token_for(TOKENS, sub, roles=roles)
        self.ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
        ).__enter__()
        self.welcome = self.next()["params"]

    def next(self, timeout: float = 10.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def send(self, document: dict) -> None:
        self.ws.send(json.dumps(document))

    def request(self, method: str, params: dict | None, id: int) -> None:
        self.send(
            {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": id}
        )

    def answer(self, id: int, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message.get("id") == id and "method" not in message:
                return message

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def gateways(tmp_path, redis_server):
    """Gateways A and B on the shared redis-server, emptied first."""
    redis_server.flush()
    sections = {
        "backend": {"kind": "redis", "redis_url": redis_server.url},
        "presence": {"gateway_ttl_s": TTL_S, "reap_interval_s": 1},
        "procedures": {"call_timeout_s": 30},
    }
    started = [
        GatewayProcess(tmp_path, sections, name=name).start()
        for name in ("gw-a", "gw-b")
    ]
    yield started
    for process in started:
        process.stop()
        assert "Traceback" not in process.log(), process.log()


def test_player_on_a_calls_service_on_b(gateways):
    """The call crosses the bus with _caller; result and error come back as sent."""
    a, b = gateways
    service = Peer(b.url, "world-svc", roles=("service",))
    service.request("rpc.register", {"procedure": "world.set"}, 1)
    assert service.answer(1)["error"]["code"] == -32001
    service.request("rpc.register", {"procedure": "game.interact"}, 2)
    assert service.answer(2) == {"jsonrpc": "2.0", "result": {}, "id": 2}
    player = Peer(a.url, "alice")
    player.request("game.interact", {"door": 3}, 10)
    invocation = service.next()
    assert invocation["method"] == "game.interact"
    assert invocation["params"] == {
        "door": 3,
        "_caller": {"player_id": "alice", "session_id": player.welcome["session_id"]},
    }
    service.send({"jsonrpc": "2.0", "result": {"open": True}, "id": invocation["id"]})
    assert player.answer(10) == {"jsonrpc": "2.0", "result": {"open": True}, "id": 10}
    player.request("game.interact", {}, 11)
    invocation = service.next()
    error = {"code": 1001, "message": "locked", "data": {"key": "red"}}
    service.send({"jsonrpc": "2.0", "error": error, "id": invocation["id"]})
    assert player.answer(11)["error"] == error
    player.request("rpc.discover", {}, 12)
    names = [m["name"] for m in player.answer(12)["result"]["methods"]]
    assert "game.interact" in names
    service.close()
    player.close()


def test_sigkill_of_the_callee_gateway_fails_calls_in_flight(gateways):
    """B dies with calls in flight: -32005 within its TTL, then -32601."""
    a, b = gateways
    service = Peer(b.url, "world-svc", roles=("service",))
    service.request("rpc.register", {"procedure": "game.slow"}, 1)
    assert "result" in service.answer(1)
    player = Peer(a.url, "alice")
    for id in (10, 11, 12):
        player.request("game.slow", {}, id)
    for _ in range(3):
        assert service.next()["method"] == "game.slow"  # in flight on B
    killed = time.monotonic()
    b.kill()
    for id in (10, 11, 12):
        assert player.answer(id, timeout=TTL_S * 3)["error"]["code"] == -32005
    assert time.monotonic() - killed < TTL_S * 2
    player.request("game.slow", {}, 20)
    assert player.answer(20)["error"]["code"] == -32601
    player.close()
