"""Reconnect policy, gateway advice and the endpoint pool (sans-io, no clock)."""

from __future__ import annotations

import random

import pytest

from rtgateway.client.backoff import ReconnectPolicy, advised_delay
from rtgateway.client.endpoints import EndpointPool


def test_ceiling_grows_exponentially_up_to_the_maximum():
    """Attempt n may wait at most min(max, initial * multiplier ** (n - 1))."""
    policy = ReconnectPolicy(initial_s=0.5, multiplier=2, max_delay_s=10)
    assert [policy.ceiling(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert policy.ceiling(10_000) == 10


def test_full_jitter_stays_within_bounds_and_spreads():
    """Delays are drawn from [0, ceiling]: all in bounds, spread over the range."""
    policy = ReconnectPolicy(initial_s=1, multiplier=3, max_delay_s=20)
    rng = random.Random(7)
    for attempt in (1, 2, 3, 4):
        ceiling = policy.ceiling(attempt)
        delays = [policy.delay(attempt, rng) for _ in range(2000)]
        assert all(0 <= d <= ceiling for d in delays)
        assert min(delays) < 0.05 * ceiling and max(delays) > 0.95 * ceiling
        assert 0.45 * ceiling < sum(delays) / len(delays) < 0.55 * ceiling


def test_max_attempts_or_forever():
    """max_attempts bounds the retries; None retries forever."""
    assert not ReconnectPolicy(max_attempts=3).gives_up(3)
    assert ReconnectPolicy(max_attempts=3).gives_up(4)
    assert not ReconnectPolicy(max_attempts=None).gives_up(10**9)


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_s": -1}, {"multiplier": 0.5}, {"max_attempts": -1}],
)
def test_nonsense_policies_are_refused(kwargs):
    """Negative delays, shrinking backoff and negative attempts are refused."""
    with pytest.raises(ValueError):
        ReconnectPolicy(**kwargs)


@pytest.mark.parametrize(
    ("code", "reason", "advice"),
    [
        (1001, '{"reconnect": true, "after_ms": 1500}', 1.5),
        (1001, '{"reconnect": false}', False),
        (1001, "going away", None),
        (1006, '{"reconnect": true, "after_ms": 1500}', None),
        (1001, '{"reconnect": true, "after_ms": -3}', 0.0),
    ],
)
def test_gateway_advice_in_a_1001_close(code, reason, advice):
    """Only a 1001 with a JSON reason advises; after_ms becomes seconds."""
    assert advised_delay(code, reason) == advice


def test_pool_picks_at_random_among_up_endpoints():
    """Every endpoint gets picked; a down one is avoided until its time is over."""
    pool = EndpointPool(["a", "b", "c"], random.Random(3), down_for_s=10)
    assert {pool.pick(0) for _ in range(100)} == {"a", "b", "c"}
    pool.mark_down("b", now=0)
    assert "b" not in {pool.pick(5) for _ in range(100)}
    assert "b" in {pool.pick(10) for _ in range(100)}


def test_pool_with_everything_down_tries_the_longest_down():
    """With every endpoint down, the one that failed first is tried again."""
    pool = EndpointPool(["a", "b"], random.Random(3), down_for_s=10)
    pool.mark_down("b", now=1)
    pool.mark_down("a", now=2)
    assert not pool.any_up(3)
    assert pool.pick(3) == "b"
    pool.mark_up("a")
    assert pool.pick(3) == "a"
