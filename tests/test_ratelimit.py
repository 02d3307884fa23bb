"""The token bucket and the abuse detector, on a task.Clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from rtgateway.ratelimit import AbuseDetector, TokenBucket


def test_bucket_allows_the_burst_then_refuses():
    """A full bucket allows ``burst`` messages at once, then none."""
    bucket = TokenBucket(Clock(), rate=10, burst=5)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]


def test_bucket_refills_at_the_rate_up_to_the_burst():
    """Tokens come back at ``rate`` per second and never beyond ``burst``."""
    clock = Clock()
    bucket = TokenBucket(clock, rate=10, burst=5)
    for _ in range(5):
        bucket.take()
    clock.advance(0.25)  # 2.5 tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.advance(3600)
    assert sum(bucket.take() for _ in range(10)) == 5


def test_retry_after_says_when_the_next_token_comes():
    """retry_after_ms is the time to the next whole token, at least 1 ms."""
    clock = Clock()
    bucket = TokenBucket(clock, rate=4, burst=1)
    assert bucket.take()
    assert not bucket.take()
    assert bucket.retry_after_ms() == 250
    clock.advance(0.2)
    assert not bucket.take()
    assert bucket.retry_after_ms() == 50
    clock.advance(0.05)
    assert bucket.take()


def test_abuse_is_many_rejections_within_the_window():
    """Over ``limit`` rejections in one window is abuse; a new window starts over."""
    clock = Clock()
    detector = AbuseDetector(clock, limit=3, window_s=10)
    assert [detector.rejected() for _ in range(3)] == [False] * 3
    clock.advance(10)
    assert [detector.rejected() for _ in range(3)] == [False] * 3
    assert detector.rejected() is True
