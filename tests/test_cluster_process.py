"""A cluster of real gateway processes on one real redis-server.

Every cluster test runs twice: with Redis pub/sub as the bus, and with a
real nats-server as the bus (``bus = "nats"``), Redis storing the data.

Players on different gateways exchange events; a gateway dies (SIGKILL) or
drains (SIGTERM) while publications keep flowing; its player reconnects to
the other gateway, resumes, and must have received every publication
exactly once, in offset order. The same drop-and-resume runs on one
process with the memory backend.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = pytest.mark.integration

TOKENS = make_config()
TOPICS = {
    "chat": {
        "subscribe": "any",
        "publish": "any",
        "history_size": 10_000,
        "history_ttl_s": 600,
    }
}
EVENTS = {"chat.line": {"schema": {"type": "object"}}}


class Player:
    """A test client that keeps every event it receives and can resume."""

    def __init__(self, url: str, sub: str, **token_claims) -> None:
        self.sub = sub
        self.token_claims = token_claims
        self.events: list[dict] = []
        self.responses: dict[int, dict] = {}
        self.close_frame = None
        self._ids = 0
        self.ws = self._connect(url)
        self.welcome = self._next()["params"]

    def _connect(self, url: str):
        token = token_for(TOKENS, self.sub, **self.token_claims)
        connection = connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
            close_timeout=5,
        )
        return connection.__enter__()  # closed by close() or reconnect()

    def _next(self, timeout: float = 10.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def call(self, method: str, params: dict | None = None, timeout: float = 10.0):
        """Send a request; keep events that arrive first; return the response."""
        self._ids += 1
        request = {"jsonrpc": "2.0", "method": method, "id": self._ids}
        if params is not None:
            request["params"] = params
        self.ws.send(json.dumps(request))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._next(max(0.01, deadline - time.monotonic()))
            if message.get("id") == self._ids:
                return message
            self._keep(message)
        raise AssertionError(f"no answer to {method}")

    def _keep(self, message: dict) -> None:
        if "method" in message and "topic" in message.get("params", {}):
            self.events.append(message["params"])

    def drain(self, idle: float = 0.5, limit: float = 20.0) -> None:
        """Take events until none arrives for ``idle`` seconds (or the socket ends)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                self._keep(self._next(idle))
            except TimeoutError:
                return
            except ConnectionClosed as closed:
                self.close_frame = closed.rcvd
                return

    def reconnect(self, url: str) -> dict:
        """Open a new connection to ``url`` and resume with the last positions."""
        positions = {}
        for event in self.events:
            positions[event["topic"]] = {
                "offset": event["offset"],
                "epoch": event["epoch"],
            }
        token = self.welcome["resume_token"]
        old_session = self.welcome["session_id"]
        self.ws.close()
        self.ws = self._connect(url)
        self._next()  # the new connection's own welcome
        result = self.call(
            "session.resume", {"resume_token": token, "positions": positions}
        )
        assert result["result"]["session_id"] == old_session, result
        return result["result"]

    def offsets(self, topic: str) -> list[int]:
        return [e["offset"] for e in self.events if e["topic"] == topic]

    def close(self) -> None:
        self.ws.close()


class Publisher(threading.Thread):
    """Publishes numbered events on a topic until told to stop (bounded)."""

    def __init__(self, url: str, topic: str, limit: int = 2000) -> None:
        super().__init__(daemon=True)
        self.player = Player(url, "publisher")
        self.topic = topic
        self.limit = limit
        self.published: list[int] = []
        self.halt = threading.Event()
        self.errors: list[object] = []

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while (
            not self.halt.is_set()
            and len(self.published) < self.limit
            and time.monotonic() < deadline
        ):
            n = len(self.published) + 1
            params = {"topic": self.topic, "type": "chat.line", "data": {"n": n}}
            response = self.player.call("pubsub.publish", params)
            if "result" not in response:
                self.errors.append(response)
                return
            self.published.append(response["result"]["offset"])
            time.sleep(0.005)

    def stop(self) -> list[int]:
        self.halt.set()
        self.join(timeout=30)
        self.player.close()
        assert not self.errors, self.errors
        return self.published


@pytest.fixture(params=["redis", "nats"])
def cluster(request, fleet, redis_server, nats_server):
    """Starts gateway processes on the shared redis-server, emptied first.

    ``backend`` overrides are merged into the cluster's backend section.
    """
    redis_server.flush()
    backend = {"kind": "redis", "redis_url": redis_server.url}
    if request.param == "nats":
        backend.update(bus="nats", nats_url=[nats_server.url])

    def start(name: str, **overrides) -> GatewayProcess:
        sections = {
            "backend": {**backend, **overrides.pop("backend", {})},
            "topics": TOPICS,
            "events": EVENTS,
            "limits": {"rate_per_second": 10_000, "rate_burst": 10_000},
            **overrides,
        }
        return fleet.start(sections, name)

    return start


def test_players_on_two_gateways_exchange_events(cluster):
    """A publication on either gateway reaches subscribers on both, in order."""
    gw_a, gw_b = cluster("gw-a"), cluster("gw-b")
    alice, bob = Player(gw_a.url, "alice"), Player(gw_b.url, "bob")
    for player in (alice, bob):
        assert "result" in player.call("pubsub.subscribe", {"topic": "chat.duo"})
    for i in range(5):
        speaker = alice if i % 2 == 0 else bob
        params = {"topic": "chat.duo", "type": "chat.line", "data": {"i": i}}
        assert "result" in speaker.call("pubsub.publish", params)
    for player in (alice, bob):
        player.drain()
        assert player.offsets("chat.duo") == [1, 2, 3, 4, 5]
        assert [e["data"]["i"] for e in player.events] == [0, 1, 2, 3, 4]
    assert [e["from"] for e in alice.events] == ["alice", "bob"] * 2 + ["alice"]
    alice.close()
    bob.close()


def test_gateway_without_subscribers_receives_no_topic_traffic(cluster):
    """Bus traffic follows interest: a gateway nobody subscribed on hears nothing."""
    gw_a, gw_b, gw_idle = cluster("gw-a"), cluster("gw-b"), cluster("gw-idle")
    subscriber, publisher = Player(gw_b.url, "sub"), Player(gw_a.url, "pub")
    subscriber.call("pubsub.subscribe", {"topic": "chat.quiet"})
    before = gw_idle.metric("rtgateway_bus_messages_received_total")
    for _ in range(20):
        publisher.call(
            "pubsub.publish", {"topic": "chat.quiet", "type": "chat.line", "data": {}}
        )
    subscriber.drain()
    assert subscriber.offsets("chat.quiet") == list(range(1, 21))
    assert gw_b.metric("rtgateway_bus_messages_received_total") >= 20
    assert gw_idle.metric("rtgateway_bus_messages_received_total") == before
    subscriber.close()
    publisher.close()


@pytest.mark.parametrize("ending", ["sigkill", "sigterm"])
def test_player_resumes_on_another_gateway_without_loss(cluster, ending):
    """Gateway A dies or drains mid-stream; the player resumes on B, losing nothing."""
    gw_a, gw_b = cluster("gw-a"), cluster("gw-b")
    topic = f"chat.{ending}"
    player = Player(gw_a.url, "alice")
    assert "result" in player.call("pubsub.subscribe", {"topic": topic})
    publisher = Publisher(gw_b.url, topic)
    publisher.start()
    deadline = time.monotonic() + 20
    while len(player.events) < 20 and time.monotonic() < deadline:
        player.drain(idle=0.05, limit=0.5)
    if ending == "sigkill":
        gw_a.signal(signal.SIGKILL)
    else:
        gw_a.signal(signal.SIGTERM)
    player.drain(idle=2.0)
    if ending == "sigterm":
        assert player.close_frame is not None and player.close_frame.code == 1001
        assert json.loads(player.close_frame.reason)["reconnect"] is True
    time.sleep(0.2)  # publications keep flowing while the player is away
    result = player.reconnect(gw_b.url)
    assert result["recovered"] == {topic: True}
    time.sleep(0.2)
    published = publisher.stop()
    player.drain()
    assert player.offsets(topic) == published == list(range(1, len(published) + 1))
    assert len(published) >= 40
    player.close()


def test_drop_and_resume_on_one_memory_gateway(tmp_path):
    """With the memory backend, a dropped player resumes on the same process."""
    gateway = GatewayProcess(
        tmp_path,
        {
            "topics": TOPICS,
            "events": EVENTS,
            "limits": {"rate_per_second": 10_000, "rate_burst": 10_000},
        },
    ).start()
    try:
        player = Player(gateway.url, "alice")
        player.call("pubsub.subscribe", {"topic": "chat.solo"})
        publisher = Publisher(gateway.url, "chat.solo", limit=300)
        publisher.start()
        deadline = time.monotonic() + 20
        while len(player.events) < 10 and time.monotonic() < deadline:
            player.drain(idle=0.05, limit=0.5)
        player.ws.socket.close()  # the network goes away: no closing handshake
        time.sleep(0.2)
        assert player.reconnect(gateway.url)["recovered"] == {"chat.solo": True}
        published = publisher.stop()
        player.drain()
        assert player.offsets("chat.solo") == published
        player.close()
    finally:
        gateway.stop()


def test_admin_kick_reaches_every_gateway(cluster):
    """admin.kick on one gateway closes the player's sessions on the others 4010."""
    gw_a, gw_b = cluster("gw-a"), cluster("gw-b")
    target = Player(gw_b.url, "mallory")
    admin = Player(gw_a.url, "root", roles=["admin"])
    assert admin.call("admin.kick", {"player_id": "mallory", "reason": "x"}) == {
        "jsonrpc": "2.0",
        "result": {},
        "id": 1,
    }
    target.drain()
    assert target.close_frame is not None and target.close_frame.code == 4010
    again = Player(gw_a.url, "mallory")
    response = again.call(
        "session.resume", {"resume_token": target.welcome["resume_token"]}
    )
    assert response["error"]["code"] == -32003
    admin.close()
    again.close()


def test_redis_outage_gives_32005_then_recovers(cluster, redis_server):
    """Redis down: -32005, not ready, new connections 503; it comes back by itself."""
    gateway = cluster("gw-a", backend={"call_timeout_s": 0.5})
    player = Player(gateway.url, "alice")
    player.call("pubsub.subscribe", {"topic": "chat.outage"})
    params = {"topic": "chat.outage", "type": "chat.line", "data": {}}
    assert player.call("pubsub.publish", params)["result"] == {"offset": 1}
    epoch = player.call("pubsub.subscribe", {"topic": "chat.outage"})["result"]["epoch"]
    redis_server.kill()
    started = time.monotonic()
    response = player.call("pubsub.publish", params)
    assert response["error"]["code"] == -32005
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 10
    while gateway.get("/readyz")[0] != 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.get("/readyz")[0] == 503
    with pytest.raises(InvalidStatus) as refused:
        Player(gateway.url, "bob")
    assert refused.value.response.status_code == 503
    redis_server.restart()
    deadline = time.monotonic() + 30
    while gateway.get("/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.get("/readyz")[0] == 200
    after = player.call("pubsub.publish", params)
    assert after["result"] == {"offset": 1}  # the data was lost: a new epoch
    player.drain()
    assert player.events[-1]["epoch"] != epoch
    player.close()


def presence_changes(player: Player, who: str) -> list[dict]:
    return [e["data"] for e in player.events if e["topic"] == f"presence.{who}"]


def test_presence_across_gateways(cluster):
    """A watcher on B sees a player on A come online, change, and go offline."""
    gw_a, gw_b = cluster("gw-a", session={"resume_window_s": 1}), cluster("gw-b")
    watcher = Player(gw_b.url, "watcher")
    watcher.call("presence.watch", {"players": ["alice"]})
    alice = Player(gw_a.url, "alice")
    alice.call("presence.set", {"status": "away", "zone": "forest"})
    watcher.drain()
    seen = presence_changes(watcher, "alice")
    assert [(c["status"], c["zone"]) for c in seen] == [
        ("online", None),
        ("away", "forest"),
    ]
    zone = watcher.call("presence.zone", {"zone": "forest"})["result"]
    assert zone == {"count": 1, "players": ["alice"], "cursor": None}
    alice.ws.socket.close()  # dropped: online through the 1 s window, then offline
    watcher.drain(idle=2.5)
    offline = presence_changes(watcher, "alice")[-1]
    assert offline["status"] == "offline" and offline["last_seen_ms"] is not None
    watcher.close()


def test_no_flap_when_a_player_drops_and_resumes(cluster):
    """Dropping and resuming on another gateway within the window changes nothing."""
    gw_a, gw_b = cluster("gw-a"), cluster("gw-b")
    watcher = Player(gw_b.url, "watcher")
    watcher.call("presence.watch", {"players": ["bella"]})
    bella = Player(gw_a.url, "bella")
    watcher.drain(idle=1.0)
    assert [c["status"] for c in presence_changes(watcher, "bella")] == ["online"]
    bella.ws.socket.close()
    time.sleep(0.2)
    bella.reconnect(gw_b.url)
    watcher.drain(idle=1.0)
    assert [c["status"] for c in presence_changes(watcher, "bella")] == ["online"]
    status = watcher.call("presence.get", {"players": ["bella"]})["result"]
    assert status["players"]["bella"]["status"] == "online"
    bella.close()
    watcher.close()


def test_players_of_a_killed_gateway_go_offline(cluster):
    """SIGKILL a gateway: after its liveness expires its players go offline."""
    presence = {"gateway_ttl_s": 1.5, "reap_interval_s": 0.5}
    gw_a = cluster("gw-a", presence=presence)
    gw_b = cluster("gw-b", presence=presence)
    watcher = Player(gw_b.url, "watcher")
    victim = Player(gw_a.url, "victim")
    watched = watcher.call("presence.watch", {"players": ["victim"]})["result"]
    # The victim's going online may still be on its way to gateway B.
    deadline = time.monotonic() + 5
    while watched["players"]["victim"]["status"] != "online":
        assert time.monotonic() < deadline, watched
        watcher.drain(idle=0.05, limit=0.2)
        watched = watcher.call("presence.get", {"players": ["victim"]})["result"]
    watcher.drain(idle=0.2, limit=0.5)
    watcher.events.clear()
    gw_a.signal(signal.SIGKILL)
    started = time.monotonic()
    deadline = started + 10
    while time.monotonic() < deadline and not presence_changes(watcher, "victim"):
        watcher.drain(idle=0.2, limit=0.5)
    (offline,) = presence_changes(watcher, "victim")
    assert offline["status"] == "offline"
    assert time.monotonic() - started < 1.5 + 0.5 + 2
    watcher.close()
    del victim  # its gateway is gone; nothing to close


@pytest.fixture
def nats_cluster(tmp_path, redis_server, nats_server):
    """Two gateways on the NATS bus, and the nats-server to stop."""
    redis_server.flush()
    sections = {
        "backend": {
            "kind": "redis",
            "redis_url": redis_server.url,
            "bus": "nats",
            "nats_url": [nats_server.url],
            "call_timeout_s": 0.5,
        },
        "topics": TOPICS,
        "events": EVENTS,
        "limits": {"rate_per_second": 10_000, "rate_burst": 10_000},
    }
    started = [
        GatewayProcess(tmp_path, sections, name=name).start()
        for name in ("gw-a", "gw-b")
    ]
    yield started, nats_server
    for process in started:
        process.stop()
        assert "Traceback" not in process.log(), process.log()


def wait_ready(gateway: GatewayProcess, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while gateway.get("/readyz")[0] != status and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.get("/readyz")[0] == status


def test_nats_outage_repairs_streams_from_history(nats_cluster):
    """NATS down: not ready, publications still stored; back: nothing missing."""
    (gw_a, gw_b), nats = nats_cluster
    subscriber, publisher = Player(gw_a.url, "sub"), Player(gw_b.url, "pub")
    subscriber.call("pubsub.subscribe", {"topic": "chat.nats"})
    params = {"topic": "chat.nats", "type": "chat.line", "data": {}}
    assert publisher.call("pubsub.publish", params)["result"] == {"offset": 1}
    nats.kill()
    for gateway in (gw_a, gw_b):
        wait_ready(gateway, 503)
    for offset in (2, 3):  # Redis stores them; NATS cannot announce them
        assert publisher.call("pubsub.publish", params)["result"] == {"offset": offset}
    nats.restart()
    for gateway in (gw_a, gw_b):
        wait_ready(gateway, 200)
    assert publisher.call("pubsub.publish", params)["result"] == {"offset": 4}
    subscriber.drain()
    assert subscriber.offsets("chat.nats") == [1, 2, 3, 4]
    subscriber.close()
    publisher.close()
