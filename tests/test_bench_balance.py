"""Smoke test of ``python -m bench balance``: tiny, and the choice it shows."""

from __future__ import annotations

from bench.scenarios.balance import Case, simulate


def test_least_busy_spares_a_slow_callee_what_round_robin_queues():
    """With one slow callee, least busy keeps p99 far below round robin's."""
    case = Case("fast and slow", (1.0, 4.0), 0.8)
    in_turn = simulate(case, "round_robin", 400, seed=1)
    least_busy = simulate(case, "least_busy", 400, seed=1)
    assert in_turn["timeouts"] == least_busy["timeouts"] == 0
    assert least_busy["p99_ms"] * 3 < in_turn["p99_ms"]
