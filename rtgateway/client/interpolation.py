"""Rendering other entities between the ticks the gateway sent.

Other players' positions arrive at the zone's tick rate, late by a network
delay that varies. Drawing them as they arrive looks jerky; drawing them
``delay_s`` in the past (three fast ticks by default) lets the client
linearly interpolate between the two ticks that bracket the render time,
which nearly always both arrived already. When they have not (a late or
missing packet), the last motion is extrapolated for at most
``max_extrapolation_s``, then glides back over as long again to the last
position received, where it holds: the gateway sends nothing for an entity
that stopped, so a motion that is not followed by a sample has most likely
ended there. An entity that a later tick left unchanged is known to have
stopped and is not extrapolated at all.

The render clock maps the client's time to the zone's tick time. Its offset
is learnt from the earliest-arriving samples (the least delayed ones), and
the clock runs within ``slew`` of real time towards its target rather than
jumping, so that rendered motion stays smooth and never goes backwards
when the estimate improves; only a gap larger than ``snap_s`` (a new
snapshot after a reconnect) moves it at once.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Any

Sample = tuple[float, dict[str, Any]]


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def lerp_fields(a: dict[str, Any], b: dict[str, Any], alpha: float) -> dict[str, Any]:
    """Fields between ``a`` (alpha 0) and ``b`` (alpha 1); others from ``a``."""
    out = dict(a)
    for name, start in a.items():
        end = b.get(name)
        if _is_number(start) and _is_number(end):
            out[name] = start + (end - start) * alpha
        elif (
            isinstance(start, list)
            and isinstance(end, list)
            and len(start) == len(end)
            and all(map(_is_number, start))
            and all(map(_is_number, end))
        ):
            out[name] = [s + (e - s) * alpha for s, e in zip(start, end, strict=True)]
    return out


class Interpolator:
    """Per-entity sample buffers and a smooth render clock."""

    def __init__(
        self,
        delay_s: float = 3 / 60,
        max_extrapolation_s: float = 0.1,
        *,
        slew: float = 0.1,
        snap_s: float = 0.5,
        buffer_s: float = 2.0,
    ) -> None:
        self.delay_s = delay_s
        self.max_extrapolation_s = max_extrapolation_s
        self.slew = slew
        self.snap_s = snap_s
        self.buffer_s = buffer_s
        self._samples: dict[str, deque[Sample]] = {}
        self._offset: float | None = None
        #: The newest zone time a state message was received for.
        self._heard: float | None = None
        self._render: float | None = None
        self._last_now: float | None = None
        #: Renders past the newest sample (late packets), and capped ones.
        self.extrapolated = 0
        self.held = 0

    def reset(self) -> None:
        """Forget everything (a new zone, or a snapshot after a reconnect)."""
        self._samples.clear()
        self._offset = None
        self._heard = None

    def heard(self, at: float) -> None:
        """A state message for zone time ``at``: entities it left out did not move."""
        if self._heard is None or at > self._heard:
            self._heard = at

    def add(
        self, entity_id: str, at: float, fields: dict[str, Any], now: float
    ) -> None:
        """A sample of ``entity_id`` for zone time ``at``, received at ``now``."""
        offset = at - now
        if self._offset is None or offset > self._offset:
            self._offset = offset
        samples = self._samples.setdefault(entity_id, deque())
        if samples and at <= samples[-1][0]:
            return  # not newer than what is held: nothing to add
        samples.append((at, dict(fields)))
        while len(samples) > 2 and samples[1][0] < at - self.buffer_s:
            samples.popleft()

    def remove(self, entity_id: str) -> None:
        self._samples.pop(entity_id, None)

    def advance(self, now: float) -> float | None:
        """Move the render clock to ``now``; the zone time rendered (None: no data)."""
        if self._offset is None:
            return None
        target = now + self._offset - self.delay_s
        if self._render is None or self._last_now is None:
            self._render = target
        else:
            elapsed = max(0.0, now - self._last_now)
            if abs(target - (self._render + elapsed)) > self.snap_s:
                self._render = max(target, self._render)
            else:
                low = self._render + elapsed * (1 - self.slew)
                high = self._render + elapsed * (1 + self.slew)
                self._render = min(max(target, low), high)
        self._last_now = now
        return self._render

    @property
    def render_time(self) -> float | None:
        return self._render

    def sample(self, entity_id: str) -> dict[str, Any] | None:
        """The fields of ``entity_id`` at the render time."""
        samples = self._samples.get(entity_id)
        if not samples:
            return None
        at = self._render
        if at is None:
            return dict(samples[-1][1])
        times = [t for t, _ in samples]
        index = bisect_right(times, at)
        if index == 0:
            return dict(samples[0][1])
        if index < len(samples):
            (t0, a), (t1, b) = samples[index - 1], samples[index]
            return lerp_fields(a, b, (at - t0) / (t1 - t0))
        return self._extrapolate(samples, at)

    def _extrapolate(self, samples: deque[Sample], at: float) -> dict[str, Any]:
        t1, last = samples[-1]
        limit = self.max_extrapolation_s
        ahead = at - t1
        known_still = self._heard is not None and t1 < self._heard
        if len(samples) < 2 or limit <= 0 or known_still or ahead >= 2 * limit:
            self.held += 1
            return dict(last)
        t0, before = samples[-2]
        if ahead > limit:
            self.held += 1
            ahead = 2 * limit - ahead  # back towards the last sample
        else:
            self.extrapolated += 1
        return lerp_fields(before, last, 1 + ahead / (t1 - t0))

    def entities(self) -> list[str]:
        return list(self._samples)
