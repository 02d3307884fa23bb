"""The benchmark suite runs end to end at its smallest sizes.

Each scenario runs as ``python -m bench SCENARIO --tiny --runs 1`` from the
repository root, as a developer would run it, and its JSON results are
checked for shape only: the figures exist and are positive numbers, and
the scenarios that count errors (lost, repeated or misordered deliveries,
replayed offsets, zone listings) counted none. No timing is asserted;
this machine is too noisy for that, and the figures belong in
docs/benchmarks.rst, not in a test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.long]

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_bench(scenario: str, tmp_path: Path, *extra: str) -> dict:
    """Run one scenario at its smallest; its JSON results."""
    results = tmp_path / f"{scenario}.json"
    command = [sys.executable, "-m", "bench", scenario, "--tiny", "--runs", "1"]
    completed = subprocess.run(
        [*command, "--json", str(results), *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "median" in completed.stdout
    document = json.loads(results.read_text())
    assert document["scenario"] == scenario
    assert document["runs"] == 1
    assert document["machine"]["cores"] >= 1
    assert document["cases"]
    return document


def figures(document: dict, target: str) -> list[dict[str, dict[str, float]]]:
    """The summary of ``target`` in every case, checked to be numbers >= 0."""
    summaries = []
    for case in document["cases"]:
        assert case["name"] and case["figures"]
        summary = case["summary"][target]
        for stats in summary.values():
            assert set(stats) == {"median", "min", "max"}
            assert all(math.isfinite(v) and v >= 0 for v in stats.values())
            assert stats["min"] <= stats["median"] <= stats["max"]
        summaries.append(summary)
    return summaries


def assert_positive(summary: dict, *keys: str) -> None:
    for key in keys:
        assert summary[key]["median"] > 0, key


def test_rpc_reports_throughput_latency_and_cpu_for_both_servers(tmp_path):
    """rpc measures every case on the gateway and the baseline, with ratios."""
    document = run_bench("rpc", tmp_path)
    assert len(document["cases"]) == 6
    for target in ("gateway", "baseline"):
        for summary in figures(document, target):
            assert_positive(
                summary, "messages_per_s", "latency_p50_ms", "server_cpu_us_per_msg"
            )
    for case in document["cases"]:
        assert case["ratio"]["gateway"]["messages_per_s"] > 0
        assert all(run["errors"] == 0 for run in case["runs"]["gateway"])


def test_connections_reports_rate_memory_and_idle_cpu(tmp_path):
    """connections measures opening and memory on both servers, idle CPU on one."""
    document = run_bench("connections", tmp_path)
    (gateway,) = figures(document, "gateway")
    (baseline,) = figures(document, "baseline")
    # The idle CPU of a smoke run's few connections can stay under the
    # kernel's 10 ms accounting tick: it is reported, not necessarily > 0.
    assert_positive(gateway, "open_per_s", "rss_after_mib", "heartbeats")
    assert "heartbeat_cpu_us" in gateway
    assert_positive(baseline, "open_per_s", "rss_after_mib")
    assert "heartbeat_cpu_us" not in baseline
    assert document["cases"][0]["ratio"]["gateway"]["open_per_s"] > 0


def test_connections_max_climbs_and_says_why_it_stopped(tmp_path):
    """connections --max climbs in steps and names the limit that stopped it."""
    document = run_bench(
        "connections", tmp_path, "--max", "--step", "10", "--max-rss-mb", "1"
    )
    assert document["max_connections"] == 10
    assert "max-rss-mb" in document["stopped_because"]
    (step,) = figures(document, "gateway")
    assert_positive(step, "open_per_s", "rss_after_mib", "gateway_files")


def test_reactors_compares_each_reactor_with_its_own_baseline(tmp_path):
    """reactors runs the pipelined case on every available reactor."""
    document = run_bench("reactors", tmp_path)
    reactors = [case["params"]["reactor"] for case in document["cases"]]
    assert reactors[:2] == ["epoll", "asyncio"]
    for summary in figures(document, "gateway"):
        assert_positive(summary, "messages_per_s")


def test_codecs_times_every_codec_on_every_message(tmp_path):
    """codecs times encode and decode of each message with each codec."""
    document = run_bench("codecs", tmp_path)
    for case in document["cases"]:
        assert set(case["summary"]) == {
            "orjson",
            "json",
            "cbor2",
            "rtgw-json",
            "rtgw-cbor",
        }
        for summary in case["summary"].values():
            assert_positive(summary, "encode_ns", "decode_ns", "size_bytes")


def all_runs_error_free(document: dict) -> None:
    for case in document["cases"]:
        for target, runs in case["runs"].items():
            assert all(run["errors"] == 0 for run in runs), (case["name"], target)


def test_fanout_delivers_to_every_subscriber_on_every_target(tmp_path):
    """fanout runs one gateway, two on each bus and both raw broadcasts."""
    document = run_bench("fanout", tmp_path)
    assert [case["params"]["window"] for case in document["cases"]] == [1, 16]
    for case in document["cases"]:
        assert set(case["summary"]) == {
            "gateway",
            "gateway volatile",
            "2 gateways, redis",
            "2 gateways, nats",
            "broadcast",
            "broadcast-raw",
        }
        assert case["reference"] == "broadcast"
        assert case["ratio"]["gateway"]["deliveries_per_s"] > 0
        assert "redis_cpu_us_per_delivery" in case["summary"]["2 gateways, redis"]
        assert "nats_cpu_us_per_delivery" in case["summary"]["2 gateways, nats"]
    for target in ("gateway", "2 gateways, redis", "2 gateways, nats", "broadcast-raw"):
        for summary in figures(document, target):
            assert_positive(
                summary,
                "deliveries_per_s",
                "latency_p50_ms",
                "latency_max_ms",
                "server_cpu_us_per_delivery",
                "load_cpu_us_per_delivery",
            )
    all_runs_error_free(document)


def test_resume_replays_every_missed_event_once_in_order(tmp_path):
    """resume times the replay on memory, Redis and the other gateway."""
    document = run_bench("resume", tmp_path)
    (case,) = document["cases"]
    assert set(case["summary"]) == {"memory", "redis", "redis, other gateway"}
    for target in case["summary"]:
        (summary,) = figures(document, target)
        assert_positive(summary, "resume_ms", "reply_ms", "events_per_s")
        (run,) = case["runs"][target]
        assert run["received"] == case["params"]["missed_events"]
    all_runs_error_free(document)


def test_client_compares_both_transports_with_raw_websockets(tmp_path):
    """client: calls/s, events/s and reconnect-to-resumed for both transports,
    each with its ratio to raw websockets; every drop resumed."""
    document = run_bench("client", tmp_path)
    ping, events, reconnect = document["cases"]
    assert ping["params"]["window"] == events["params"]["window"]
    targets = {"rtgateway twisted", "rtgateway asyncio", "websockets"}
    for case in document["cases"]:
        assert set(case["summary"]) == targets
        assert case["reference"] == "websockets"
        assert set(case["ratio"]) == targets - {"websockets"}
    for target in targets:
        ping_summary, event_summary, reconnect_summary = figures(document, target)
        assert_positive(ping_summary, "messages_per_s")
        assert_positive(event_summary, "messages_per_s")
        assert_positive(reconnect_summary, "resumed_p50_ms", "resumed_p99_ms")
        (run,) = reconnect["runs"][target]
        assert run["resumed"] == reconnect["params"]["drops"]
        (run,) = events["runs"][target]
        assert 0 < run["messages"] <= run["published"]
    all_runs_error_free(document)


def test_presence_times_changes_and_zone_pages(tmp_path):
    """presence measures change latency to watchers and a zone walk."""
    document = run_bench("presence", tmp_path)
    changes, zone = document["cases"]
    assert set(changes["summary"]) == {
        "gateway",
        "2 gateways, redis",
        "broadcast",
        "broadcast-raw",
    }
    for summary in changes["summary"].values():
        assert summary["latency_p50_ms"]["median"] > 0
        assert summary["deliveries_per_s"]["median"] > 0
    assert set(zone["summary"]) == {"memory", "redis"}
    for target in ("memory", "redis"):
        (run,) = zone["runs"][target]
        assert run["count"] == zone["params"]["players"]
        assert run["pages"] == -(-run["count"] // zone["params"]["limit"])
        assert run["page_p50_ms"] > 0 and run["walk_ms"] > 0
    all_runs_error_free(document)


def test_state_weighs_deltas_times_ticks_and_ramps(tmp_path):
    """state runs A, B, C and the ramp: deltas weighed against snapshots in
    both encodings, the gateway's ticks, latency from ts, no desync."""
    document = run_bench("state", tmp_path)
    names = [case["params"].get("case") for case in document["cases"]]
    assert names[:3] == ["A", "B", "C"]
    for case in document["cases"][:3]:
        (summary,) = [case["summary"]["gateway"]]
        assert_positive(
            summary,
            "json_delta_Bps",
            "json_snapshot_Bps",
            "cbor_delta_Bps",
            "cbor_snapshot_Bps",
            "ticks_per_s",
            "tick_mean_ms",
            "latency_p50_ms",
            "inputs_per_s",
            "deltas_per_s",
            "engine_tick_p50_ms",
        )
        for encoding in ("json", "cbor"):
            assert (
                summary[f"{encoding}_delta_Bps"]["median"]
                < summary[f"{encoding}_snapshot_Bps"]["median"]
            )
        (run,) = case["runs"]["gateway"]
        assert run["checks"] > 0
        assert run["desyncs"] == 0 and run["snapshot_scale_errors"] == 0
    ramp = [case for case in document["cases"] if case["name"].startswith("ramp")]
    assert ramp and "held" in ramp[0]["summary"]["gateway"]
    for case in ramp[1:]:
        assert_positive(case["summary"]["gateway"], "ticks_per_s", "inputs_per_s")
    all_runs_error_free(document)


def test_soak_reports_every_minute_and_delivers_every_publication_once(tmp_path):
    """soak reads the gateway every minute and before and after the load;
    every acknowledged publication reached every receiver exactly once,
    and nothing failed or closed unexpectedly."""
    document = run_bench("soak", tmp_path)
    gateway, load = document["cases"]
    (summary,) = figures({"cases": [gateway]}, "gw1")
    assert_positive(
        summary, "rss_first_mb", "fds_max", "delayed_max", "connections", "cpu_cores"
    )
    assert summary["fds_after"]["median"] < summary["fds_max"]["median"]
    (minutes,) = document["minutes"]
    assert [row["minute"] for row in minutes] == [1, 2, "stop"]
    (run,) = load["runs"]["load"]
    assert run["published"] > 0 and run["owed"] > 0 and run["resumes"] > 0
    assert run["churn_opened"] > 0 and run["rejoins"] > 0
    assert run["complete_pct"] == 100.0
    for key in ("missing", "repeated", "failed_calls", "unexpected_closes"):
        assert run[key] == 0, (key, minutes)


def test_services_routes_calls_through_one_and_two_gateways(tmp_path):
    """services: routed calls and sys.ping on every topology, every call
    answered, each routed figure with its ratio to sys.ping; then the bus
    fan-out on Redis and NATS, every event delivered."""
    document = run_bench("services", tmp_path)
    routed = [c for c in document["cases"] if "topology" in c["params"]]
    fanned = [c for c in document["cases"] if "topology" not in c["params"]]
    assert {c["params"]["topology"] for c in routed} == {
        "one gateway",
        "two gateways, Redis bus",
        "two gateways, NATS bus",
    }
    for case in routed:
        assert case["reference"] == "sys.ping"
        assert case["ratio"]["routed call"]["messages_per_s"] > 0
        for target in ("sys.ping", "routed call"):
            assert_positive(case["summary"][target], "messages_per_s", "latency_p50_ms")
    assert [case["params"]["window"] for case in fanned] == [1, 16]
    for case in fanned:
        assert case["reference"] == "redis"
        for bus in ("redis", "nats"):
            assert_positive(case["summary"][bus], "deliveries_per_s", "latency_p50_ms")
        assert "nats_cpu_us_per_delivery" in case["summary"]["nats"]
    all_runs_error_free(document)
