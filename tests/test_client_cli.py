"""``python -m rtgateway.client`` against a real gateway process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rtgateway.client.cli import parse_args, zone_line
from rtgateway.testing import GatewayProcess, make_config, token_for

TOKENS = make_config()
SETTINGS = {
    "topics": {"chat": {"subscribe": "any", "publish": "any", "history_size": 100}},
    "events": {"chat.line": {"schema": {"type": "object"}}},
    "zones": {
        "arena": {
            "check_interval_ticks": 10,
            "fields": {"x": {"type": "number", "quantum": 0.01}},
        }
    },
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    process = GatewayProcess(tmp_path_factory.mktemp("cli"), SETTINGS).start()
    yield process
    process.stop()


def run_cli(*args, timeout=30):
    result = subprocess.run(
        [sys.executable, "-m", "rtgateway.client", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [json.loads(text) for text in result.stdout.splitlines()]
    states = [
        json.loads(text)["state"]
        for text in result.stderr.splitlines()
        if text.startswith("{")
    ]
    return result.returncode, lines, states, result.stderr


@pytest.mark.integration
def test_subscribe_call_and_tail_events_as_json_lines(gateway):
    """--sub then --call: the result and the event it caused, one JSON per line."""
    params = json.dumps({"topic": "chat.cli", "type": "chat.line", "data": {"n": 1}})
    code, lines, states, stderr = run_cli(
        "--url",
        gateway.url,
        "--token",
        token_for(TOKENS, "alice"),
        "--sub",
        "chat.cli",
        "--call",
        "pubsub.publish",
        "--params",
        params,
        "--duration",
        "1.5",
    )
    assert code == 0, stderr
    assert {"result": {"offset": 1}} in lines
    (event,) = [entry for entry in lines if "event" in entry]
    assert event["event"] == "chat.line"
    assert event["params"]["data"] == {"n": 1} and event["params"]["offset"] == 1
    assert states == ["connecting", "open", "closed"]


@pytest.mark.integration
def test_a_refused_call_prints_the_error_and_exits_1(gateway):
    """A JSON-RPC error is printed with its code, and the exit status is 1."""
    code, lines, _, _ = run_cli(
        "--url",
        gateway.url,
        "--token",
        token_for(TOKENS, "bob"),
        "--call",
        "no.such.method",
    )
    assert code == 1
    assert lines[-1]["error"]["code"] == -32601


@pytest.mark.integration
def test_watch_prints_presence_then_its_changes(gateway):
    """--watch prints the watched players' presence, then their changes."""
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtgateway.client",
            "--url",
            gateway.url,
            "--token",
            token_for(TOKENS, "dora"),
            "--watch",
            "eve",
            "--duration",
            "3",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(watcher.stdout.readline())
        assert first["presence"]["players"]["eve"]["status"] == "offline"
        code, _, _, stderr = run_cli(
            "--url",
            gateway.url,
            "--token",
            token_for(TOKENS, "eve"),
            "--call",
            "presence.set",
            "--params",
            '{"status": "away"}',
        )
        assert code == 0, stderr
        out, _ = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    changes = [json.loads(text) for text in out.splitlines()]
    statuses = [c["params"]["data"]["status"] for c in changes if "event" in c]
    assert "away" in statuses and watcher.returncode == 0


@pytest.mark.integration
def test_join_prints_state_rates(gateway):
    """--join prints the join result, then a stats line every --every seconds."""
    code, lines, _, stderr = run_cli(
        "--url",
        gateway.url,
        "--token",
        token_for(TOKENS, "carol"),
        "--join",
        "arena",
        "--duration",
        "2.4",
        "--every",
        "1",
    )
    assert code == 0, stderr
    assert lines[0]["joined"]["entity"] == "player.carol"
    stats = [entry["stats"] for entry in lines if "stats" in entry]
    assert len(stats) == 2
    assert stats[-1]["desyncs"] == 0 and "state_messages_per_s" in stats[-1]


def test_a_token_is_required(monkeypatch, capsys):
    """Without --token or RTGW_TOKEN the CLI refuses with a usage error."""
    monkeypatch.delenv("RTGW_TOKEN", raising=False)
    with pytest.raises(SystemExit) as info:
        parse_args(["--url", "ws://127.0.0.1:1/ws"])
    assert info.value.code == 2
    assert "--token or RTGW_TOKEN" in capsys.readouterr().err


def test_zone_line_keeps_the_rates_and_desyncs():
    """The --join report names state rate, traffic, desyncs, RTT and entities."""
    stats = {
        "state_messages_per_s": 60.0,
        "messages_in_per_s": 61.0,
        "bytes_in_per_s": 1000.0,
        "desyncs": 0,
        "checks": 6,
        "rtt_ms": {"p50": 1.0},
        "reconnects": 0,
        "other": 1,
    }
    assert zone_line(stats, 3)["stats"] == {
        **{k: v for k, v in stats.items() if k != "other"},
        "entities": 3,
    }
