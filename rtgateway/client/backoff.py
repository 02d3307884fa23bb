"""When to reconnect, and whether to at all.

Exponential backoff with full jitter (the delay of attempt *n* is drawn
uniformly from ``[0, min(max_delay, initial * multiplier ** (n - 1))]``):
thousands of clients dropped by one failure spread their reconnects over
the whole window instead of arriving in waves. The gateway's own advice in
a 1001 close (``{"reconnect": true, "after_ms": N}``, already jittered by
the gateway) wins over the policy.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

#: Close codes after which a reconnect would be wrong: closed by us, the
#: session taken over by another connection, kicked by an administrator.
FINAL_CLOSE_CODES = frozenset({1000, 4003, 4010})


@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff parameters; ``max_attempts`` None retries forever."""

    initial_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_delay_s < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must not be negative")

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` (from 1) may wait."""
        exponent = max(0, attempt - 1)
        # Capped before the power grows without bound on long outages.
        if self.initial_s == 0:
            return 0.0
        limit = self.max_delay_s / self.initial_s
        growth = 1.0
        for _ in range(exponent):
            growth *= self.multiplier
            if growth >= limit:
                return self.max_delay_s
        return min(self.max_delay_s, self.initial_s * growth)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A full-jitter delay for attempt ``attempt``."""
        return rng.uniform(0.0, self.ceiling(attempt))

    def gives_up(self, attempt: int) -> bool:
        """True when attempt ``attempt`` would be one too many."""
        return self.max_attempts is not None and attempt > self.max_attempts


def advised_delay(code: int | None, reason: str | None) -> float | bool | None:
    """The gateway's advice in a 1001 close.

    Seconds to wait when it says ``reconnect: true``; False when it says not
    to reconnect; None when there is no advice to follow.
    """
    if code != 1001 or not reason:
        return None
    try:
        advice = json.loads(reason)
    except ValueError:
        return None
    if not isinstance(advice, dict) or "reconnect" not in advice:
        return None
    if advice["reconnect"] is not True:
        return False
    after_ms = advice.get("after_ms", 0)
    if not isinstance(after_ms, int | float) or after_ms < 0:
        return 0.0
    return after_ms / 1000.0
