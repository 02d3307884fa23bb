"""Smoke test of ``python -m bench balance``: tiny, and the choice it shows."""

from __future__ import annotations

from test_bench_smoke import run_bench


def test_least_busy_spares_a_slow_callee_what_round_robin_queues(tmp_path):
    """With one slow callee, least busy keeps p99 far below round robin's."""
    document = run_bench("balance", tmp_path)
    (slow,) = [c for c in document["cases"] if c["params"]["service_ms"] == [1, 4]]
    assert slow["reference"] == "round_robin"
    summary = slow["summary"]
    assert summary["least_busy"]["timeouts"]["median"] == 0
    p99 = {policy: summary[policy]["p99_ms"]["median"] for policy in summary}
    assert p99["least_busy"] * 3 < p99["round_robin"]
