"""The admin methods on real gateway processes, spoken to with ``websockets``.

One gateway traces a player's frames to an admin over real sockets; two
gateways on a real redis-server (Redis pub/sub, then NATS as the bus) list
each other's connections and count each other's players, read a zone from
the store, trace each other's players, and one killed is listed as missing
and ends the traces of its players.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = pytest.mark.integration

TOKENS = make_config()


class Peer:
    """A websockets client that keeps every message it reads."""

    def __init__(self, url: str, sub: str, roles: list[str] | None = None) -> None:
        self.token = token_for(TOKENS, sub, roles=roles or [])
        self.ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=10,
        )
        self.received: list[dict] = []
        self.welcome = self.next()["params"]
        self._ids = 0

    def next(self, timeout: float = 10.0) -> dict:
        message = json.loads(self.ws.recv(timeout=timeout))
        self.received.append(message)
        return message

    def call(self, method: str, params: dict | None = None) -> dict:
        self._ids += 1
        self.ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": method,
                    "params": params or {},
                    "id": self._ids,
                }
            )
        )
        while True:
            message = self.next()
            if message.get("id") == self._ids:
                return message

    def wait_for(
        self, method: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict]:
        """The params of the first ``count`` notifications of ``method``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m["params"] for m in self.received if m.get("method") == method]
            if len(found) >= count:
                return found[:count]
            self.next(max(0.01, deadline - time.monotonic()))

    def close(self) -> None:
        self.ws.close()


class Peers:
    """The peers a test opens, every one closed when it ends."""

    def __init__(self) -> None:
        self.opened: list[Peer] = []

    def open(self, url: str, sub: str, roles: list[str] | None = None) -> Peer:
        peer = Peer(url, sub, roles)
        self.opened.append(peer)
        return peer

    def admin(self, url: str, sub: str = "root") -> Peer:
        return self.open(url, sub, roles=["admin"])

    def traced(self, player_url: str, admin_url: str, sub: str) -> tuple[Peer, Peer]:
        """A player, and an admin tracing its session (maybe on another gateway)."""
        player, admin = self.open(player_url, sub), self.admin(admin_url)
        session_id = player.welcome["session_id"]
        result = admin.call("admin.trace", {"session_id": session_id})["result"]
        assert result["session_id"] == session_id
        return player, admin


@pytest.fixture
def peers():
    opened = Peers()
    yield opened
    for peer in opened.opened:
        peer.close()


def ping_and_refresh_shown(player: Peer, admin: Peer) -> list[dict]:
    """The player pings and refreshes: the admin sees four frames, no token."""
    player.call("sys.ping")
    player.call("session.refresh", {"token": player.token})
    shown = admin.wait_for("admin.frame", 4)
    assert [(f["direction"], f["method"]) for f in shown] == [
        ("in", "sys.ping"),
        ("out", None),
        ("in", "session.refresh"),
        ("out", None),
    ]
    assert "server_time_ms" in shown[1]["frame"]["result"]
    assert shown[2]["frame"]["params"] == {"token": "[redacted]"}
    assert player.token not in json.dumps(admin.received)
    assert player.welcome["resume_token"] not in json.dumps(admin.received)
    return shown


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """One gateway process with a small trace rate."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("admin"),
        {"admin": {"trace_rate": 20, "trace_max_frame_bytes": 300}},
    ).start()
    yield process
    process.stop()
    assert "Traceback" not in process.log(), process.log()


def test_a_player_is_refused_every_admin_method(gateway, peers):
    """A JWT without the admin role gets -32001 over a real socket."""
    player = peers.open(gateway.url, "mallory")
    for method in ("admin.connections", "admin.zones", "admin.stats"):
        assert player.call(method)["error"]["code"] == -32001
    error = player.call("admin.trace", {"session_id": player.welcome["session_id"]})
    assert error["error"]["code"] == -32001


def test_trace_shows_a_players_frames_live_and_ends_with_it(gateway, peers):
    """Frames in and out reach the admin as they happen, no token among them."""
    player, admin = peers.traced(gateway.url, gateway.url, "alice")
    session_id = player.welcome["session_id"]
    listed = admin.call("admin.connections", {"filter": session_id})["result"]
    assert [row["player_id"] for row in listed["connections"]] == ["alice"]
    ping_and_refresh_shown(player, admin)
    player.close()
    (ended,) = admin.wait_for("admin.trace_ended")
    assert ended["session_id"] == session_id and ended["shown"] == 4


def test_trace_rate_is_bounded_over_real_sockets(gateway, peers):
    """A burst over trace_rate shows trace_rate frames and counts the rest."""
    player, admin = peers.traced(gateway.url, gateway.url, "bob")
    for _ in range(50):
        player.call("sys.ping")
    untraced = {"session_id": player.welcome["session_id"]}
    counts = admin.call("admin.untrace", untraced)["result"]
    assert counts["shown"] + counts["dropped"] == 100
    # 20 at once, and 20 a second after that: the pings take well under 2 s.
    assert 20 <= counts["shown"] < 60 and counts["dropped"] > 0
    frames = [m for m in admin.received if m.get("method") == "admin.frame"]
    assert len(frames) == counts["shown"]


def polled(ask: Callable[[], dict], done: Callable[[dict], bool]) -> dict:
    """``ask()`` again until ``done`` with its result, or 10 s have passed."""
    deadline = time.monotonic() + 10
    while True:
        result = ask()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def answered_by_both(admin: Peer, method: str, params: dict | None = None) -> dict:
    """The result of ``method`` once both gateways answer it (they meet first)."""
    result = polled(
        lambda: admin.call(method, params)["result"],
        lambda result: result["gateways"] == ["gw1", "gw2"],
    )
    assert result["gateways"] == ["gw1", "gw2"] and result["missing"] == []
    return result


@pytest.fixture(params=["redis", "nats"])
def two_gateways(request, tmp_path, redis_server, nats_server):
    """Two gateway processes on the shared redis-server, Redis or NATS the bus,
    that have met (each answers the other's admin questions)."""
    redis_server.flush()
    backend = {"kind": "redis", "redis_url": redis_server.url}
    if request.param == "nats":
        backend.update(bus="nats", nats_url=[nats_server.url])
    started = [
        GatewayProcess(
            tmp_path,
            {
                "backend": backend,
                "admin": {"cluster_timeout_s": 1},
                "zones": {"arena": {"fields": {"x": {"type": "number"}}}},
            },
            name=name,
        ).start()
        for name in ("gw1", "gw2")
    ]
    admin = Peer(started[0].url, "root", roles=["admin"])
    answered_by_both(admin, "admin.connections")
    admin.close()
    yield started
    for process in started:
        process.stop()


def test_connections_of_both_gateways_then_one_missing(two_gateways, peers):
    """An admin on gw1 sees gw2's players; gw2 killed, it is listed as missing."""
    first, second = two_gateways
    player = peers.open(second.url, "carol")
    admin = peers.admin(first.url)
    result = answered_by_both(admin, "admin.connections")
    rows = {(r["gateway_id"], r["player_id"]) for r in result["connections"]}
    assert rows == {("gw1", "root"), ("gw2", "carol")}
    second.kill()
    with pytest.raises(ConnectionClosed):
        player.next(timeout=10)
    started = time.monotonic()
    result = admin.call("admin.connections")["result"]
    assert time.monotonic() - started >= 0.9
    assert result["gateways"] == ["gw1"] and result["missing"] == ["gw2"]


def test_presence_counts_the_players_of_both_gateways(two_gateways, peers):
    """An admin on gw1 counts gw2's players by status and zone, from Redis."""
    first, second = two_gateways
    carol = peers.open(second.url, "carol")
    dave = peers.open(first.url, "dave")
    admin = peers.admin(first.url)
    carol.call("presence.set", {"status": "away", "zone": "forest"})
    dave.call("presence.set", {"status": "invisible", "zone": "forest"})
    result = answered_by_both(admin, "admin.presence")
    assert result["players"] == 3
    assert result["statuses"] == {"online": 1, "away": 1, "busy": 0, "invisible": 1}
    assert result["zones"] == [{"zone": "forest", "players": 2}]
    assert result["cursor"] is None


def test_zone_shows_the_entities_of_a_player_on_the_other_gateway(two_gateways, peers):
    """An admin on gw1 reads, from Redis, the entity of a player on gw2."""
    first, second = two_gateways
    erin = peers.open(second.url, "erin")
    admin = peers.admin(first.url)
    erin.call("state.join", {"zone": "arena", "fields": {"x": 4.25}})
    erin.call("state.update", {"fields": {"x": 8.5}})
    result = polled(
        lambda: admin.call("admin.zone", {"zone": "arena"})["result"],
        lambda result: (
            "player.erin" in result["entities"]
            and result["entities"]["player.erin"]["fields"] == {"x": 8.5}
        ),
    )
    assert result["count"] == 1 and result["truncated"] is False
    assert result["entities"]["player.erin"] == {"v": 2, "fields": {"x": 8.5}}


def traced_row(admin: Peer, player: str, traced: bool) -> dict:
    """The player's row once its ``traced`` flag is ``traced``."""
    result = polled(
        lambda: admin.call("admin.connections", {"filter": player})["result"],
        lambda result: [r["traced"] for r in result["connections"]] == [traced],
    )
    (row,) = result["connections"]
    return row


def test_trace_across_gateways_live_then_untraced(two_gateways, peers):
    """An admin on gw1 traces a player of gw2: frames live, untrace, then none."""
    first, second = two_gateways
    player, admin = peers.traced(second.url, first.url, "frank")
    ping_and_refresh_shown(player, admin)
    session_id = player.welcome["session_id"]
    counts = admin.call("admin.untrace", {"session_id": session_id})["result"]
    assert counts == {"session_id": session_id, "shown": 4, "dropped": 0}
    assert traced_row(admin, "frank", False)["gateway_id"] == "gw2"


def test_trace_across_gateways_ends_with_the_player_or_the_admin(two_gateways, peers):
    """The player leaving gw2 ends the trace; an admin leaving gw1 ends its own."""
    first, second = two_gateways
    player, admin = peers.traced(second.url, first.url, "gina")
    player.call("sys.ping")
    player.close()
    (ended,) = admin.wait_for("admin.trace_ended")
    assert ended == {
        "session_id": player.welcome["session_id"],
        "shown": 2,
        "dropped": 0,
        "reason": "disconnected",
    }
    _, other_admin = peers.traced(second.url, first.url, "hank")
    watcher = peers.admin(first.url, "root2")
    traced_row(watcher, "hank", True)
    other_admin.close()
    traced_row(watcher, "hank", False)


def test_trace_ends_when_the_owning_gateway_dies(two_gateways, peers):
    """gw2 SIGKILLed: the admin on gw1 is told gateway_lost within 3 timeouts."""
    first, second = two_gateways
    _, admin = peers.traced(second.url, first.url, "ivan")
    second.kill()
    started = time.monotonic()
    (ended,) = admin.wait_for("admin.trace_ended", timeout=10)
    assert ended["reason"] == "gateway_lost"
    assert 2 <= time.monotonic() - started <= 6
