"""rtgateway.js, the JavaScript client, against real gateway processes.

Each test starts the gateways it needs (twistd, as an operator would),
mints tokens and runs one file of the node tests in clients/js/test with
``node --test``, handing over URLs, tokens and process ids in environment
variables; node's output is shown when it fails. The node tests stop
gateways themselves (SIGKILL, SIGTERM) by the process ids they are given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rtgateway.testing import GatewayProcess, make_config, token_for

pytestmark = pytest.mark.integration

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"
NODE = shutil.which("node") or "node"
NODE_TIMEOUT_S = 120
PLAYERS = [
    "alice",
    "bob",
    "carol",
    "dan",
    "erin",
    "frank",
    "gina",
    "hank",
    "ivy",
    "jack",
]
TOKENS = make_config()
SETTINGS = {
    "topics": {
        "chat": {
            "subscribe": "any",
            "publish": "any",
            "history_size": 10_000,
            "history_ttl_s": 600,
        }
    },
    "events": {"chat.line": {"schema": {"type": "object"}}},
    "limits": {"rate_per_second": 10_000, "rate_burst": 10_000},
    "zones": {
        "arena": {
            "check_interval_ticks": 5,
            "fast_hz": 30,
            "position": ["x", "y"],
            "max_speed": 20,
            "bounds": {"min": [-1000, -1000], "max": [1000, 1000]},
            "fields": {
                "x": {"type": "number", "quantum": 0.01},
                "y": {"type": "number", "quantum": 0.01},
                "hp": {"type": "integer", "lane": "slow", "default": 100},
                "name": {"type": "string", "lane": "slow", "default": ""},
            },
        }
    },
}


def run_node(test_file: str, gateways: list[GatewayProcess]) -> None:
    """Run ``clients/js/test/<test_file>`` against ``gateways``; exit code 0 or fail."""
    env = {
        **os.environ,
        "RTGW_URLS": json.dumps([gateway.url for gateway in gateways]),
        "RTGW_TOKENS": json.dumps({p: token_for(TOKENS, p) for p in PLAYERS}),
        "RTGW_GATEWAYS": json.dumps(
            {
                g.sections["gateway"]["id"]: {"url": g.url, "pid": g.started.pid}
                for g in gateways
            }
        ),
    }
    try:
        done = subprocess.run(
            [NODE, "--experimental-websocket", "--test", f"test/{test_file}"],
            cwd=CLIENT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"node --test {test_file} ran over {NODE_TIMEOUT_S} s:\n"
            f"{expired.stdout or ''}{expired.stderr or ''}"
        )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"node --test {test_file} failed:\n{output}"
    assert "# fail 0" in output, output
    assert "# pass 0\n" not in output, f"node ran no test:\n{output}"


@pytest.fixture
def js_gateways(fleet):
    """Starts gateways (of the ``fleet``) from SETTINGS plus overrides.

    Not the directory's ``gateways`` fixture: these tests need zones and
    topics of their own (a check interval, max_speed, reliable history),
    not the development configuration the pages use.
    """
    return lambda name, **overrides: fleet.start({**SETTINGS, **overrides}, name)


def test_core(js_gateways):
    """Connect, calls and typed errors, handler isolation, the queue, stats."""
    run_node("core.test.mjs", [js_gateways("gw-core")])


def test_state(js_gateways):
    """The mirror, state.check verification, a forced desync, prediction."""
    run_node("state.test.mjs", [js_gateways("gw-state")])


def redis_pair(js_gateways, redis_server) -> list[GatewayProcess]:
    redis_server.flush()
    backend = {
        "backend": {"kind": "redis", "redis_url": redis_server.url},
        "shutdown": {"reconnect_jitter_ms": 1500, "drain_timeout_s": 5},
    }
    return [js_gateways("gw-a", **backend), js_gateways("gw-b", **backend)]


def test_sigkill_resumes_on_the_other_gateway(js_gateways, redis_server):
    """Reliable events across a SIGKILL: resumed elsewhere, none lost or doubled."""
    run_node("cluster.test.mjs", redis_pair(js_gateways, redis_server))


def test_sigterm_advice_is_honoured(js_gateways, redis_server):
    """A draining gateway's 1001 after_ms is waited for, then resumed elsewhere."""
    run_node("drain.test.mjs", redis_pair(js_gateways, redis_server))


def test_refused_resume_starts_fresh(js_gateways):
    """Gateways that share nothing: -32003 on resume, a fresh session, re-subscribed."""
    run_node("fresh.test.mjs", [js_gateways("gw-one"), js_gateways("gw-two")])


def test_failures_back_off_and_settle(js_gateways):
    """Refusals, failing tokens and URLs, a gateway stopped mid-close or mid-resume."""
    idle = {"heartbeat": {"idle_timeout_s": 1}}
    run_node(
        "failures.test.mjs", [js_gateways("gw-plain"), js_gateways("gw-idle", **idle)]
    )


def test_cbor_with_cbor_x(js_gateways):
    """rtgw.v1.cbor binary frames with cbor-x: calls, events, state checks."""
    run_node("cbor.test.mjs", [js_gateways("gw-cbor")])
