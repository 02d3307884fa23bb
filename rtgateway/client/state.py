"""The client's view of its zone: mirror, checks, interpolation, prediction.

The mirror is the server's own sans-io :class:`~rtgateway.state.mirror.Mirror`
(PROTOCOL.md section 7: a snapshot replaces it, a delta applies only at its
``base_tick``), and every ``state.check`` is compared with a hash the
client computes itself over the mirror. A delta that does not follow, or a
hash that differs, means the client no longer holds what the server sent:
both are counted and answered with one ``state.sync`` (not one per message
while the snapshot is on its way).
"""

from __future__ import annotations

from typing import Any

from rtgateway.client.interpolation import Interpolator
from rtgateway.client.prediction import Predictor
from rtgateway.state.mirror import BrokenChain, Mirror

DEFAULT_FAST_HZ = 60
#: The render delay, in fast ticks, when none is configured.
DELAY_TICKS = 3


class StateView:
    """What the client knows of its zone, fed with state pushes."""

    def __init__(
        self,
        interpolation_delay_s: float | None = None,
        max_extrapolation_s: float = 0.1,
    ) -> None:
        self._configured_delay = interpolation_delay_s
        self.mirror = Mirror()
        self.fast_hz: float = DEFAULT_FAST_HZ
        self.interpolator = Interpolator(
            self._delay(), max_extrapolation_s=max_extrapolation_s
        )
        self.predictor: Predictor | None = None
        self.joined_zone: str | None = None
        self.sync_pending = False
        self.last_ack: dict[str, Any] | None = None
        self.chain_breaks = 0
        self.check_mismatches = 0
        self.checks = 0
        self.syncs = 0

    def _delay(self) -> float:
        if self._configured_delay is not None:
            return self._configured_delay
        return DELAY_TICKS / self.fast_hz

    @property
    def desyncs(self) -> int:
        """Broken chains and check mismatches: each cost a ``state.sync``."""
        return self.chain_breaks + self.check_mismatches

    def joined(self, result: dict[str, Any]) -> None:
        """Take the ``state.join`` result: own entity id and tick rates."""
        self.joined_zone = result.get("zone")
        self.mirror.own = result.get("entity")
        fast = (result.get("tick_hz") or {}).get("fast")
        if isinstance(fast, int | float) and fast > 0:
            self.fast_hz = fast
        self.interpolator.delay_s = self._delay()
        self.interpolator.reset()

    def left(self) -> None:
        self.joined_zone = None
        self.mirror = Mirror()
        self.interpolator.reset()

    def apply(self, method: str, params: dict[str, Any], now: float) -> bool:
        """Apply one state push; True when the client must call ``state.sync``."""
        mirror = self.mirror
        if method == "state.snapshot":
            self.sync_pending = False
            mirror.apply(method, params)
            self.interpolator.reset()
            self._sample(mirror.entities, params["tick"], now)
            own = mirror.entities.get(mirror.own or "")
            if own is not None and self.predictor is not None:
                self.predictor.rebase(own[1])
            return False
        if method == "state.delta":
            try:
                mirror.apply(method, params)
            except BrokenChain:
                if self.sync_pending:
                    return False
                self.chain_breaks += 1
                return self._ask_sync()
            changed = {
                entity_id: mirror.entities[entity_id]
                for entity_id in params["changed"]
                if entity_id in mirror.entities
            }
            self._sample(changed, params["tick"], now)
            for entity_id in params["removed"]:
                self.interpolator.remove(entity_id)
            ack = params.get("ack")
            if ack is not None:
                self.acknowledged(ack)
            return False
        if method == "state.check":
            if self.sync_pending:
                return False
            self.checks += 1
            if mirror.apply(method, params):
                return False
            self.check_mismatches += 1
            return self._ask_sync()
        return False

    def acknowledged(self, ack: dict[str, Any]) -> None:
        """An ``ack`` (in a delta, or a ``state.update`` result)."""
        self.last_ack = ack
        seq = ack.get("input_seq")
        if self.predictor is not None and isinstance(seq, int):
            self.predictor.ack(seq, ack.get("corrected"))

    def _ask_sync(self) -> bool:
        self.sync_pending = True
        self.syncs += 1
        return True

    def _sample(
        self, entities: dict[str, tuple[int, dict[str, Any]]], tick: int, now: float
    ) -> None:
        at = tick / self.fast_hz
        self.interpolator.heard(at)
        own = self.mirror.own
        for entity_id, (_, fields) in entities.items():
            if entity_id != own:
                self.interpolator.add(entity_id, at, fields, now)

    def rendered(self, now: float) -> dict[str, dict[str, Any]]:
        """Every other entity's fields at the render time for ``now``."""
        self.interpolator.advance(now)
        out = {}
        for entity_id in self.mirror.entities:
            if entity_id == self.mirror.own:
                continue
            fields = self.interpolator.sample(entity_id)
            if fields is not None:
                out[entity_id] = fields
        return out
