"""A zone's entity schema and rules, as plain frozen values.

The configuration (``[zones.<name>]``) is checked into these objects; the
rest of the state core reads them and nothing else, so the tick step can be
driven in tests from a schema built by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: The field types of section 7: JSON scalars or a short array of numbers.
FIELD_TYPES = ("number", "integer", "string", "boolean", "vector")
LANES = ("fast", "slow")
#: Items a vector holds when ``max_length`` does not say.
DEFAULT_VECTOR_LENGTH = 4
#: Characters a string holds when ``max_length`` does not say.
DEFAULT_STRING_LENGTH = 256


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a zone's entities.

    ``quantum`` applies to numbers and to each item of a vector; ``min`` and
    ``max`` clamp numbers, integers and vector items; ``max_length`` bounds
    strings (characters) and vectors (items). ``default`` None means the
    field is absent from an entity until it is set.
    """

    name: str
    type: str
    lane: str = "fast"
    quantum: float | None = None
    default: Any = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None

    @property
    def length_bound(self) -> int:
        """The most characters (string) or items (vector) a value may have."""
        if self.max_length is not None:
            return self.max_length
        return DEFAULT_VECTOR_LENGTH if self.type == "vector" else DEFAULT_STRING_LENGTH


@dataclass(frozen=True, slots=True)
class ZoneSchema:
    """A state zone: its rates, rules, interest settings and fields."""

    name: str
    fields: Mapping[str, FieldSpec] = field(
        default_factory=lambda: MappingProxyType({})
    )
    fast_hz: int = 60
    slow_hz: int = 10
    snapshot_interval_s: float = 0.0
    check_interval_ticks: int = 0
    #: The two or three fields that are the position (empty: none).
    position: tuple[str, ...] = ()
    #: Metres per second over the position fields (None: unchecked).
    max_speed: float | None = None
    #: Per position field, the lowest and highest value (None: unbounded).
    bounds_min: tuple[float, ...] | None = None
    bounds_max: tuple[float, ...] | None = None
    #: 0: every client sees the whole zone.
    aoi_radius: float = 0.0
    #: None: 10% of the radius.
    aoi_leave_margin: float | None = None
    max_entities: int = 5000
    #: How far ahead of the clock a moving entity may get: its movement
    #: allowance accumulates at ``max_speed`` up to this many seconds' worth,
    #: so inputs bunched by network jitter are not corrected.
    speed_burst_s: float = 1.0
    #: Seconds a client may stay behind before it is moved to the slow rate,
    #: and before it is closed 4008.
    lag_slow_s: float = 0.5
    lag_close_s: float = 10.0
    #: Add the server's wall-clock time (``ts``, ms) to state messages: a
    #: measuring aid for benchmarks, off by default (not in the protocol).
    timestamps: bool = False

    @property
    def slow_every(self) -> int:
        """Fast ticks per slow tick: slow fields go out when ``t % slow_every == 0``."""
        return self.fast_hz // self.slow_hz

    @property
    def leave_margin(self) -> float:
        """The hysteresis past the radius before an entity leaves a view."""
        if self.aoi_leave_margin is not None:
            return self.aoi_leave_margin
        return self.aoi_radius * 0.1
