"""The example world service against two real gateways on a real redis-server.

``examples/world_service.py`` runs as its own process, as a backend team
would run it, connected over WebSocket with a service token to one of two
gateways, and players use a third-party ``websockets`` client. They see
its procedure in ``rpc.discover``, its doors and pickups in their state
snapshot, and change them with ``world.interact``; when the
service's gateway is SIGKILLed the service reconnects to the other one,
registers again, and players' calls work again.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from rtgateway.testing import make_config, token_for

pytestmark = pytest.mark.integration

TOKENS = make_config()
EXAMPLE = Path(__file__).parent.parent / "examples" / "world_service.py"
ZONES = {
    "dungeon": {
        "fields": {
            "kind": {"type": "string", "max_length": 16},
            "x": {"type": "number", "quantum": 0.01},
            "y": {"type": "number", "quantum": 0.01},
            "open": {"type": "boolean"},
        }
    }
}
TTL_S = 2.0
#: The labels of the rpc.register requests a gateway received.
REGISTER = {"method": "rpc.register"}


class Player:
    """A player's JSON connection that keeps its state pushes."""

    def __init__(self, url: str, sub: str) -> None:
        token = token_for(TOKENS, sub)
        self.ws = connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}
        ).__enter__()
        self.pushes: list[dict] = []
        self.next()  # session.welcome
        self.ids = 0

    def next(self, timeout: float = 10.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def call(self, method: str, params: dict, timeout: float = 10.0) -> dict:
        self.ids += 1
        self.ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "method": method, "params": params, "id": self.ids}
            )
        )
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message.get("id") == self.ids and "method" not in message:
                return message
            self.pushes.append(message)

    def push(self, method: str, check, timeout: float = 10.0) -> dict:
        """The first push of ``method`` (kept or new) for which ``check`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.pushes:
                if message.get("method") == method and check(message["params"]):
                    return message["params"]
            self.pushes.append(self.next(max(0.01, deadline - time.monotonic())))

    def close(self) -> None:
        self.ws.close()


def start_service(urls: list[str]) -> subprocess.Popen:
    token = token_for(TOKENS, "world-svc", roles=["service"])
    command = [sys.executable, str(EXAMPLE), "--zone", "dungeon"]
    for url in urls:
        command += ["--url", url]
    service = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RTGW_SERVICE_TOKEN": token},
    )
    assert service.stdout is not None
    ready, _, _ = select.select([service.stdout], [], [], 30)
    line = service.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        service.kill()
        raise AssertionError(f"the service did not start: {line!r}")
    return service


@pytest.fixture
def world(fleet, redis_server):
    """Gateways A and B, and the example service connected to one of them."""
    redis_server.flush()
    sections = {
        "backend": {"kind": "redis", "redis_url": redis_server.url},
        "presence": {"gateway_ttl_s": TTL_S, "reap_interval_s": 1},
        "zones": ZONES,
    }
    gateways = [fleet.start(sections, name) for name in ("gw-a", "gw-b")]
    service = start_service([gateway.url for gateway in gateways])
    yield gateways, service
    service.send_signal(signal.SIGINT)
    try:
        service.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.kill()
    output = service.stdout.read().decode() if service.stdout else ""
    assert "Traceback" not in output, output


def entity(params: dict, name: str) -> dict | None:
    found = params.get("entities", params.get("changed", {})).get(
        f"world.dungeon.{name}"
    )
    return None if found is None else found["fields"]


def test_players_interact_with_the_world_service(world):
    """Discover, see the entities, open a door, take a pickup once, bad params."""
    (_, gw_b), _ = world
    player = Player(gw_b.url, "alice")  # the service may be on either gateway
    methods = player.call("rpc.discover", {})["result"]["methods"]
    (interact,) = [m for m in methods if m["name"] == "world.interact"]
    assert interact["x-params-schema"]["required"] == ["entity"]
    assert [p["name"] for p in interact["params"]] == ["entity"]
    assert interact["summary"].startswith("Open or close a door")
    assert "result" in player.call("state.join", {"zone": "dungeon"})
    snapshot = player.push("state.snapshot", lambda p: True)
    assert entity(snapshot, "door-1") == {
        "kind": "door",
        "x": 10,
        "y": 5,
        "open": False,
    }
    assert entity(snapshot, "potion-1")["kind"] == "pickup"
    opened = player.call("world.interact", {"entity": "door-1"})["result"]
    assert opened["entity"] == "door-1" and opened["action"] == "opened"
    player.push("state.delta", lambda p: (entity(p, "door-1") or {}).get("open"))
    closed = player.call("world.interact", {"entity": "door-1"})["result"]
    assert closed["action"] == "closed" and closed["version"] == opened["version"] + 1
    assert player.call("world.interact", {"entity": "potion-1"})["result"] == {
        "entity": "potion-1",
        "action": "taken",
    }
    player.push(
        "state.delta", lambda p: "world.dungeon.potion-1" in p.get("removed", [])
    )
    again = player.call("world.interact", {"entity": "potion-1"})
    assert again["error"]["code"] == -32003
    refused = player.call("world.interact", {"door": "door-1"})["error"]
    assert refused["code"] == -32602
    assert refused["data"]["errors"]
    player.close()


def test_service_moves_to_the_other_gateway_and_registers_again(world):
    """The service's gateway dies: it reconnects to the other and serves again."""
    gateways, _ = world
    # The client picks among its URLs at random: find the service's gateway.
    (home,) = [g for g in gateways if g.metric("rtgateway_connections") == 1]
    (other,) = [g for g in gateways if g is not home]
    # One rpc.register per procedure and connection (world.interact): none twice.
    assert home.metric("rtgateway_messages_in_total", REGISTER) == 1
    player = Player(other.url, "bob")
    assert player.call("world.interact", {"entity": "door-2"})["result"]["action"] == (
        "opened"
    )
    home.signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        answer = player.call("world.interact", {"entity": "door-2"}, timeout=15)
        if "result" in answer:
            break
        assert answer["error"]["code"] in (-32005, -32601), answer
        assert time.monotonic() < deadline, "the service never came back"
        time.sleep(0.2)
    assert answer["result"]["action"] == "closed"
    assert other.metric("rtgateway_connections") == 2  # the service moved here
    assert other.metric("rtgateway_messages_in_total", REGISTER) == 1
    player.close()
