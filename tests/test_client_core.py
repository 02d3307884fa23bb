"""The client's sans-io core on a fake clock: connection, queue, resume, dispatch."""

from __future__ import annotations

import json

import pytest

from rtgateway.client import (
    HIGH,
    LOW,
    CallTimeout,
    ClientClosed,
    ConnectionLost,
    QueueFull,
    ReconnectPolicy,
)
from rtgateway.client.errors import InvalidParams, RateLimited
from rtgateway.client.testing import CoreHarness, event


def opened(**options) -> CoreHarness:
    harness = CoreHarness(**options).start()
    harness.open()
    return harness


def test_connects_then_opens_on_the_welcome():
    """connecting, then open once session.welcome arrives; the session is kept."""
    harness = CoreHarness().start()
    assert harness.connects == ["ws://a/ws"]
    assert harness.state_names() == ["connecting"]
    harness.open()
    assert harness.state_names() == ["connecting", "open"]
    assert harness.core.session_id == "s1"


def test_calls_wait_for_the_session_and_leave_by_priority():
    """Calls made before the session is open go out on open, highest first."""
    harness = CoreHarness().start()
    low = harness.core.call("pubsub.publish", {"n": 1}, priority=LOW)
    high = harness.core.call("presence.set", {"status": "away"}, priority=HIGH)
    normal = harness.core.call("presence.get", {"players": []})
    assert harness.sent == []
    harness.open()
    assert [m["method"] for m in harness.requests()] == [
        "presence.set",
        "presence.get",
        "pubsub.publish",
    ]
    harness.reply("presence.get", {"players": {}})
    assert normal.result == {"players": {}}
    assert not low.settled and not high.settled


def test_overflow_fails_the_call_at_once():
    """A call that does not fit the queue fails with QueueFull, others wait."""
    harness = CoreHarness(queue_size=1).start()
    kept = harness.core.call("sys.ping", {})
    refused = harness.core.call("sys.ping", {})
    assert isinstance(refused.error, QueueFull) and not kept.settled


def test_error_response_raises_a_typed_error():
    """A JSON-RPC error becomes an exception class by code, with message and data."""
    harness = opened()
    call = harness.core.call("pubsub.publish", {"topic": "chat.x"})
    harness.fail("pubsub.publish", -32002, "Rate limited", {"retry_after_ms": 250})
    assert isinstance(call.error, RateLimited)
    assert (call.error.code, call.error.message) == (-32002, "Rate limited")
    assert call.error.data == {"retry_after_ms": 250}
    other = harness.core.call("pubsub.publish", {})
    harness.fail("pubsub.publish", -32602, "Invalid params", {"errors": []})
    assert isinstance(other.error, InvalidParams)


def test_every_call_times_out_queued_or_sent():
    """A call without an answer fails with CallTimeout at its deadline."""
    harness = CoreHarness(call_timeout_s=2).start()
    queued = harness.core.call("sys.ping", {})
    harness.advance(1.9)
    assert not queued.settled
    harness.advance(0.2)
    assert isinstance(queued.error, CallTimeout)
    assert len(harness.core.queue) == 0
    harness.open()
    sent = harness.core.call("presence.get", {"players": []}, timeout=0.5)
    harness.advance(0.6)
    assert isinstance(sent.error, CallTimeout)
    harness.reply("presence.get", {})  # a late answer is ignored
    assert isinstance(sent.error, CallTimeout)


def test_lost_connection_retries_idempotent_calls_only():
    """In-flight idempotent calls are sent again; others fail ConnectionLost."""
    harness = opened()
    ping = harness.core.call("sys.ping", {})
    custom = harness.core.call("game.reserve", {}, idempotent=True)
    publish = harness.core.call("pubsub.publish", {"topic": "chat.x"})
    harness.drop()
    assert isinstance(publish.error, ConnectionLost)
    assert "outcome is unknown" in str(publish.error)
    assert not ping.settled and not custom.settled
    harness.advance(1)
    harness.open(session="s2", token="r2")
    harness.reply(
        "session.resume",
        {"session_id": "s1", "resumed": True, "subscriptions": [], "recovered": {}},
    )
    resent = [m["method"] for m in harness.requests()][-2:]
    assert resent == ["sys.ping", "game.reserve"]
    harness.reply("sys.ping", {"server_time_ms": 1})
    assert ping.result == {"server_time_ms": 1}


def test_reconnect_backs_off_with_full_jitter_until_max_attempts():
    """Each failed attempt waits within its ceiling; past max_attempts: closed."""
    policy = ReconnectPolicy(initial_s=1, multiplier=2, max_delay_s=5, max_attempts=4)
    harness = opened(reconnect=policy)
    harness.drop(1006)
    for attempt in range(1, 5):
        change = harness.states[-1]
        assert (change.state, change.attempt) == ("reconnecting", attempt)
        assert 0 <= change.delay <= policy.ceiling(attempt)
        connects = len(harness.connects)
        harness.advance(max(0.0, change.delay - 0.001))
        assert len(harness.connects) == connects  # not before its delay
        harness.advance(0.01)
        assert len(harness.connects) == connects + 1
        harness.core.connect_failed(harness.now, 503, "busy")
        harness.pump()
    assert harness.states[-1].state == "closed"
    assert "gave up after 4" in harness.states[-1].reason


def test_an_open_session_resets_the_attempts():
    """After a successful reconnect the next drop starts again at attempt 1."""
    harness = opened()
    harness.drop()
    harness.advance(60)
    harness.core.connect_failed(harness.now, None, "refused")
    harness.pump()
    assert harness.states[-1].attempt == 2
    harness.advance(60)
    harness.open(session="s2", token="r2")
    harness.reply(
        "session.resume",
        {"session_id": "s1", "resumed": True, "subscriptions": [], "recovered": {}},
    )
    harness.drop()
    assert harness.states[-1].attempt == 1


def test_drain_close_waits_exactly_the_advised_delay():
    """A 1001 with after_ms reconnects after that delay, not the policy's."""
    harness = opened(reconnect=ReconnectPolicy(initial_s=30, max_delay_s=30))
    harness.drop(1001, json.dumps({"reconnect": True, "after_ms": 1234}))
    assert harness.states[-1].delay == pytest.approx(1.234)
    harness.advance(1.233)
    assert len(harness.connects) == 1
    harness.advance(0.002)
    assert len(harness.connects) == 2


@pytest.mark.parametrize("code", [1000, 4003, 4010])
def test_final_close_codes_stop_reconnecting(code):
    """1000, 4003 (taken over) and 4010 (kicked) end the client."""
    harness = opened()
    pending = harness.core.call("pubsub.publish", {})
    harness.drop(code, "bye")
    harness.advance(3600)
    assert harness.connects == ["ws://a/ws"]
    assert harness.states[-1].state == "closed" and harness.states[-1].code == code
    assert isinstance(pending.error, ConnectionLost)
    assert isinstance(harness.core.call("sys.ping").error, ClientClosed)


def test_401_asks_again_once_then_stops():
    """A 401 at the upgrade retries at once (new token); a second one stops."""
    harness = CoreHarness().start()
    harness.core.connect_failed(harness.now, 401, "unauthorized")
    harness.pump()
    assert harness.states[-1].delay == 0
    harness.advance(0)
    assert len(harness.connects) == 2
    harness.core.connect_failed(harness.now, 401, "unauthorized")
    harness.pump()
    assert harness.states[-1].state == "closed" and harness.states[-1].code == 401


def test_fails_over_to_another_endpoint_and_remembers_the_down_one():
    """503, 429 or a refused TCP connect: the next attempt goes elsewhere at once."""
    urls = ["ws://a/ws", "ws://b/ws", "ws://c/ws"]
    harness = CoreHarness(urls, endpoint_down_s=60).start()
    first = harness.connects[-1]
    harness.core.connect_failed(harness.now, 503, "full")
    harness.pump()
    harness.advance(0)
    second = harness.connects[-1]
    assert second != first
    harness.core.connect_failed(harness.now, 429, "too many")
    harness.pump()
    harness.advance(0)
    third = harness.connects[-1]
    assert {first, second, third} == set(urls)
    harness.core.connect_failed(harness.now, None, "refused")
    harness.pump()
    # All down: the policy's backoff now, then the longest-down endpoint.
    assert harness.states[-1].delay > 0 or harness.states[-1].attempt == 4
    harness.advance(120)
    assert harness.connects[-1] == first


def test_resume_sends_positions_and_drops_replayed_duplicates():
    """Resume carries each topic's last position; replays reach handlers once."""
    harness = opened()
    seen = []
    harness.core.on("chat.line", lambda e: seen.append(e.offset))
    harness.core.subscribe("chat.lobby")
    harness.reply(
        "pubsub.subscribe", {"topic": "chat.lobby", "offset": 3, "epoch": "e1"}
    )
    for offset in (4, 5, 6):
        harness.feed(event("chat.lobby", offset))
    harness.drop()
    harness.advance(60)
    harness.open(session="s2", token="r2")
    resume = harness.last("session.resume")
    assert resume["params"] == {
        "resume_token": "r1",
        "positions": {"chat.lobby": {"offset": 6, "epoch": "e1"}},
    }
    harness.reply(
        "session.resume",
        {
            "session_id": "s1",
            "resumed": True,
            "subscriptions": ["chat.lobby"],
            "recovered": {"chat.lobby": True},
        },
    )
    for offset in (5, 6, 7, 8, 7):
        harness.feed(event("chat.lobby", offset))
    assert seen == [4, 5, 6, 7, 8]
    assert harness.core.stats()["duplicates_dropped"] == 3
    assert harness.core.stats()["resume_success_rate"] == 1.0


def test_not_recovered_calls_the_lost_handler_and_restarts_the_chain():
    """recovered: false tells the application; the next event is taken as is."""
    harness = opened()
    lost, seen = [], []
    harness.core.on("client.lost", lambda topic, reason: lost.append((topic, reason)))
    harness.core.on("chat.line", lambda e: seen.append(e.offset))
    harness.core.subscribe("chat.lobby")
    harness.reply(
        "pubsub.subscribe", {"topic": "chat.lobby", "offset": 9, "epoch": "e1"}
    )
    harness.drop()
    harness.advance(60)
    harness.open(session="s2", token="r2")
    harness.reply(
        "session.resume",
        {
            "session_id": "s1",
            "resumed": True,
            "subscriptions": ["chat.lobby"],
            "recovered": {"chat.lobby": False},
        },
    )
    assert lost == [("chat.lobby", "not recovered")]
    harness.feed(event("chat.lobby", 1, epoch="e2"))
    harness.feed(event("chat.lobby", 2, epoch="e2"))
    assert seen == [1, 2] and lost == [("chat.lobby", "not recovered")]


def test_gap_or_new_epoch_is_reported_as_lost():
    """An offset that jumps means events were lost for good: the handler hears it."""
    harness = opened()
    lost = []
    harness.core.on("client.lost", lambda topic, reason: lost.append(reason))
    harness.core.subscribe("chat.lobby")
    harness.reply(
        "pubsub.subscribe", {"topic": "chat.lobby", "offset": 0, "epoch": "e1"}
    )
    harness.feed(event("chat.lobby", 1))
    harness.feed(event("chat.lobby", 3))
    assert lost == ["gap"]


def test_refused_resume_falls_back_to_a_fresh_session_and_resubscribes():
    """-32003 on resume: the new session is kept, topics subscribed with since."""
    harness = opened()
    harness.core.subscribe("chat.lobby")
    harness.reply(
        "pubsub.subscribe", {"topic": "chat.lobby", "offset": 2, "epoch": "e1"}
    )
    harness.core.set_presence({"status": "busy"})
    harness.reply("presence.set", {"presence": {}})
    harness.core.join("arena", {"x": 1})
    harness.reply("state.join", {"zone": "arena", "tick": 1, "entity": "player.a"})
    harness.drop()
    harness.advance(60)
    harness.open(session="s2", token="r2")
    harness.fail("session.resume", -32003, "no session for this resume token")
    assert harness.core.session_id == "s2"
    subscribe = harness.last("pubsub.subscribe")
    assert subscribe["params"] == {
        "topic": "chat.lobby",
        "since": {"offset": 2, "epoch": "e1"},
    }
    assert harness.last("presence.set")["params"] == {"status": "busy"}
    assert harness.last("state.join")["params"] == {"zone": "arena", "fields": {"x": 1}}
    assert harness.states[-1].state == "open"
    # Later reconnects resume the new session.
    harness.drop()
    harness.advance(60)
    harness.open(session="s3", token="r3")
    assert harness.last("session.resume")["params"]["resume_token"] == "r2"


def test_state_updates_while_away_are_coalesced():
    """Inputs made while disconnected: only the latest is sent on reconnect."""
    harness = opened()
    harness.drop()
    for x in range(10):
        harness.core.update({"x": x}, input_seq=x + 1)
    harness.advance(60)
    harness.open(session="s2", token="r2")
    harness.reply(
        "session.resume",
        {"session_id": "s1", "resumed": True, "subscriptions": [], "recovered": {}},
    )
    updates = [m for m in harness.sent if m.get("method") == "state.update"]
    assert updates == [
        {
            "jsonrpc": "2.0",
            "method": "state.update",
            "params": {"fields": {"x": 9}, "input_seq": 10},
        }
    ]
    assert harness.core.stats()["coalesced"] == 9


def test_a_raising_handler_is_isolated():
    """A handler that raises is logged; the others run and the client stays open."""
    harness = opened()
    seen = []

    def broken(event):
        raise RuntimeError("bug")

    harness.core.on("chat.line", broken)

    @harness.core.on("chat.line")
    def good(event):
        seen.append(event.data)

    harness.core.on("*", lambda e: seen.append(("any", e.type)))
    harness.feed(event("chat.x", 1, text="hi"))
    assert seen == [{"text": "hi"}, ("any", "chat.line")]
    assert harness.core.stats()["handler_errors"] == 1
    assert harness.core.phase == "open"


def test_event_log_keeps_the_last_frames_with_timestamps():
    """The ring buffer holds the last N frames in and out, with their times."""
    harness = opened(event_log_size=3)
    harness.now = 5.0
    harness.core.call("sys.ping", {}, harness.now)
    harness.pump()
    harness.reply("sys.ping", {"server_time_ms": 1})
    frames = harness.core.frames.frames()
    assert [(f.direction, f.at) for f in frames] == [
        ("in", 0.0),
        ("out", 5.0),
        ("in", 5.0),
    ]
    assert frames[1].message["method"] == "sys.ping"


def test_session_expiring_refreshes_without_reconnecting():
    """session.expiring asks for a token, then session.refresh on the same socket."""
    harness = opened()
    harness.feed(
        {
            "jsonrpc": "2.0",
            "method": "session.expiring",
            "params": {"expires_at_ms": 1000},
        }
    )
    assert harness.refresh_asked == 1
    harness.core.refresh("new-token", harness.now)
    harness.pump()
    assert harness.last("session.refresh")["params"] == {"token": "new-token"}
    harness.reply("session.refresh", {"expires_at_ms": 99_000})
    assert harness.core.token_expires_at_ms == 99_000
    assert harness.connects == ["ws://a/ws"]


def test_close_ends_the_session_and_stops():
    """close(): session.close, then a 1000 close, then closed without reconnect."""
    harness = opened()
    harness.core.close(harness.now)
    harness.pump()
    harness.reply("session.close", {})
    assert harness.disconnects == [(1000, "client closed")]
    harness.drop(1000, "client closed")
    harness.advance(3600)
    assert harness.states[-1].state == "closed" and len(harness.connects) == 1


def test_pings_measure_rtt_percentiles():
    """Periodic sys.ping answers give RTT p50/p99 over the window."""
    harness = opened(ping_interval_s=1)
    for rtt in [0.010, 0.020, 0.030, 0.040, 0.200]:
        harness.advance(harness.core.next_deadline() - harness.now)
        harness.now += rtt
        harness.reply("sys.ping", {"server_time_ms": 0})
    rtt = harness.core.stats()["rtt_ms"]
    assert rtt["samples"] == 5
    assert rtt["p50"] == pytest.approx(30)
    assert rtt["p99"] == pytest.approx(200)


def test_rates_count_messages_and_bytes_per_second():
    """Messages and bytes in/out per second over the last complete seconds."""
    harness = opened(stats_window_s=2, ping_interval_s=0)
    harness.now = 10.0
    for _ in range(20):
        harness.feed(event("chat.x", 0))
    stats = harness.core.stats(12.5)
    assert stats["messages_in_per_s"] == 10
    assert stats["bytes_in_per_s"] > 10 * 50


def test_a_call_made_while_a_lost_call_fails_waits_for_the_next_session():
    """A callback of a call lost with the connection calls again: it is queued."""
    harness = opened()
    lost = harness.core.call("pubsub.publish", {})
    again = []
    lost.add_done_callback(lambda _: again.append(harness.core.call("sys.ping", {})))
    harness.drop()
    assert isinstance(lost.error, ConnectionLost)
    assert len(harness.core.queue) == 1
    harness.advance(1)
    harness.open(session="s2", token="r2")
    harness.reply(
        "session.resume",
        {"session_id": "s1", "resumed": True, "subscriptions": [], "recovered": {}},
    )
    harness.reply("sys.ping", {"server_time_ms": 5})
    assert again[0].result == {"server_time_ms": 5}


def test_events_are_validated_against_the_discovered_schemas():
    """With validation on, data off its schema goes to client.invalid, not handlers."""
    harness = opened()
    seen, invalid = [], []
    harness.core.on("chat.line", lambda e: seen.append(e.data))
    harness.core.on("client.invalid", lambda e, errors: invalid.append(errors))
    harness.core.validate_events()
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    }
    harness.reply(
        "rpc.discover",
        {"methods": [], "x-events": [{"name": "chat.line", "schema": schema}]},
    )
    harness.feed(event("chat.a", 1, text="hello"))
    harness.feed(event("chat.a", 2, text=3))
    assert seen == [{"text": "hello"}]
    assert invalid == [['/text: 3 is not of type "string"']]
    assert harness.core.stats()["invalid_events"] == 1


def test_an_unanswered_ping_drops_a_silent_connection():
    """No pong within ping_timeout_s: the link is dead, dropped, then resumed."""
    harness = opened(ping_interval_s=1, ping_timeout_s=2)
    harness.advance(1.0)
    harness.reply("sys.ping", {"server_time_ms": 0})
    harness.advance(2.9)
    assert harness.aborts == []
    harness.advance(0.2)  # the ping of t=2 has had no answer for 2 s
    assert harness.aborts == ["no answer to sys.ping"]
    harness.drop(1006)
    assert harness.states[-1].state == "reconnecting"


def test_a_zone_left_is_not_joined_again_on_a_fresh_session():
    """leave() forgets the zone at once: late pushes and fresh sessions alike."""
    harness = opened()
    harness.core.join("arena", {"x": 1})
    harness.reply("state.join", {"zone": "arena", "tick": 1, "entity": "player.a"})
    harness.core.leave()
    assert harness.last("state.leave")["params"] == {}
    assert harness.core.view.mirror.entities == {}
    # A delta sent before the leave took effect breaks no chain: no sync.
    harness.feed(
        {
            "jsonrpc": "2.0",
            "method": "state.delta",
            "params": {"zone": "arena", "tick": 3, "base_tick": 2, "changed": {}},
        }
    )
    assert harness.requests("state.sync") == []
    harness.drop()
    harness.advance(60)
    harness.open(session="s2", token="r2")
    harness.fail("session.resume", -32003, "no session for this resume token")
    assert harness.states[-1].state == "open"
    assert len(harness.requests("state.join")) == 1


def test_calls_queued_before_the_first_session_are_sent_once():
    """A join and a presence made before the first welcome go out once each."""
    harness = CoreHarness().start()
    harness.core.join("arena", {"x": 1})
    harness.core.set_presence({"status": "away"})
    harness.open()
    assert len(harness.requests("state.join")) == 1
    assert len(harness.requests("presence.set")) == 1
