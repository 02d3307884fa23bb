"""The ``[zones.<name>]`` tables: state zones, checked into ZoneSchemas.

A zone names its entity fields (``[zones.<name>.fields.<field>]``), its
tick rates, which fields are the position, and the rules the server
enforces on them (speed, bounds, interest). Everything is checked here,
including the relations between keys (a speed limit needs a position, a
default must fit its field), so the state core can trust its schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any

from rtgateway.config.fields import (
    Invalid,
    convert,
    describe,
    key,
    non_negative,
    one_of,
    positive,
    quote,
    section,
    suggest,
)
from rtgateway.state.quantize import quantize_within
from rtgateway.state.schema import FIELD_TYPES, LANES, FieldSpec, ZoneSchema

ZONE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
FIELD_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_FAST_HZ = 240
#: Which field types take each type-specific key.
_ALLOWED = {
    "quantum": ("number", "vector"),
    "min": ("number", "integer", "vector"),
    "max": ("number", "integer", "vector"),
    "max_length": ("string", "vector"),
}


def _fast_hz(value: int) -> None:
    if not 1 <= value <= MAX_FAST_HZ:
        raise ValueError(f"must be from 1 to {MAX_FAST_HZ}, got {value}")


@dataclass(frozen=True, slots=True)
class _ZoneKeys:
    """The plain keys of a ``[zones.<name>]`` table, as the file spells them."""

    fast_hz: int = key(60, _fast_hz)
    slow_hz: int = key(10, positive)
    snapshot_interval_s: float = key(0.0, non_negative)
    check_interval_ticks: int = key(0, non_negative)
    position: tuple[str, ...] = ()
    max_speed: float | None = key(None, positive)
    speed_burst_s: float = key(1.0, positive)
    aoi_radius: float = key(0.0, non_negative)
    aoi_leave_margin: float | None = key(None, non_negative)
    max_entities: int = key(5000, positive)
    lag_slow_s: float = key(0.5, positive)
    lag_close_s: float = key(10.0, positive)
    timestamps: bool = False


@dataclass(frozen=True, slots=True)
class _FieldKeys:
    """The keys of a ``[zones.<name>.fields.<field>]`` table but ``default``."""

    type: str = key("number", one_of(*FIELD_TYPES))
    lane: str = key("fast", one_of(*LANES))
    quantum: float | None = key(None, positive)
    min: float | None = None
    max: float | None = None
    max_length: int | None = key(None, positive)


@dataclass(frozen=True, slots=True)
class _BoundsKeys:
    min: tuple[float, ...] = ()
    max: tuple[float, ...] = ()


#: Keys of a zone holding tables, parsed apart from the plain ones.
_ZONE_TABLES = ("fields", "bounds")
_ZONE_KEYS = (*(f.name for f in fields(_ZoneKeys)), *_ZONE_TABLES)


def parse_zones(raw: Any) -> Mapping[str, ZoneSchema]:
    """``[zones.<name>]`` tables into ZoneSchemas."""
    if not isinstance(raw, dict):
        raise Invalid("zones", "expected a table of zones")
    zones = {}
    for name, table in raw.items():
        dotted = f"zones.{name}"
        if not ZONE_NAME_PATTERN.fullmatch(name):
            raise Invalid(dotted, "a zone name is 1 to 64 letters, digits, _ or -")
        zones[name] = _zone(name, table, dotted)
    return MappingProxyType(zones)


def _zone(name: str, table: Any, dotted: str) -> ZoneSchema:
    if not isinstance(table, dict):
        raise Invalid(dotted, f"expected a table, got {describe(table)}")
    for raw_key in table:
        if raw_key not in _ZONE_KEYS:
            problem = "unknown key" + suggest(raw_key, _ZONE_KEYS)
            raise Invalid(f"{dotted}.{raw_key}", problem)
    plain = {k: v for k, v in table.items() if k not in _ZONE_TABLES}
    keys = section(_ZoneKeys, plain, dotted)
    if keys.fast_hz % keys.slow_hz:
        raise Invalid(
            f"{dotted}.slow_hz",
            f"fast_hz ({keys.fast_hz}) must be a multiple of slow_hz ({keys.slow_hz})",
        )
    specs = _fields(table.get("fields", {}), f"{dotted}.fields")
    position = _position(keys.position, specs, dotted)
    needs_position = {
        "max_speed": keys.max_speed is not None,
        "bounds": "bounds" in table,
        "aoi_radius": keys.aoi_radius > 0,
    }
    for needy, used in needs_position.items():
        if used and not position:
            raise Invalid(f"{dotted}.{needy}", "needs position (the fields it acts on)")
    bounds_min = bounds_max = None
    if "bounds" in table:
        bounds_min, bounds_max = _bounds(table["bounds"], position, dotted)
        _defaults_within_bounds(specs, position, bounds_min, bounds_max, dotted)
    return ZoneSchema(
        name=name,
        fields=MappingProxyType(specs),
        fast_hz=keys.fast_hz,
        slow_hz=keys.slow_hz,
        snapshot_interval_s=keys.snapshot_interval_s,
        check_interval_ticks=keys.check_interval_ticks,
        position=position,
        max_speed=keys.max_speed,
        bounds_min=bounds_min,
        bounds_max=bounds_max,
        aoi_radius=keys.aoi_radius,
        aoi_leave_margin=keys.aoi_leave_margin,
        max_entities=keys.max_entities,
        speed_burst_s=keys.speed_burst_s,
        lag_slow_s=keys.lag_slow_s,
        lag_close_s=keys.lag_close_s,
        timestamps=keys.timestamps,
    )


# -- position and bounds


def _position(
    names: tuple[str, ...], specs: dict[str, FieldSpec], dotted: str
) -> tuple[str, ...]:
    key = f"{dotted}.position"
    if len(names) not in (0, 2, 3):
        raise Invalid(key, f"expected two or three field names, got {len(names)}")
    for index, name in enumerate(names):
        item = f"{key}[{index}]"
        if name not in specs:
            problem = f"no field {quote(name)} in {dotted}.fields"
            raise Invalid(item, problem + suggest(name, specs))
        if specs[name].type != "number":
            kind = specs[name].type
            raise Invalid(item, f"field {quote(name)} is a {kind}, not a number")
        if name in names[:index]:
            raise Invalid(item, f"names {quote(name)} twice")
    return names


def _bounds(
    raw: Any, position: tuple[str, ...], dotted: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    key = f"{dotted}.bounds"
    bounds = section(_BoundsKeys, raw, key)
    axes = len(position)
    for end in ("min", "max"):
        values = getattr(bounds, end)
        expected = f"{axes} numbers, one per position field"
        if end not in raw:
            raise Invalid(f"{key}.{end}", f"missing: a list of {expected}")
        if len(values) != axes:
            raise Invalid(f"{key}.{end}", f"expected {expected}, got {len(values)}")
    for axis, (low, high) in enumerate(zip(bounds.min, bounds.max, strict=True)):
        if low >= high:
            raise Invalid(
                f"{key}.max[{axis}]",
                f"must be greater than bounds.min[{axis}] ({low:.15g}), "
                f"got {high:.15g}",
            )
    return bounds.min, bounds.max


def _defaults_within_bounds(
    specs: dict[str, FieldSpec],
    position: tuple[str, ...],
    low: tuple[float, ...],
    high: tuple[float, ...],
    dotted: str,
) -> None:
    for axis, name in enumerate(position):
        default = specs[name].default
        if default is not None and not low[axis] <= default <= high[axis]:
            raise Invalid(
                f"{dotted}.fields.{name}.default",
                f"must be within {dotted}.bounds ({low[axis]:.15g} to "
                f"{high[axis]:.15g}), got {default:.15g}",
            )


# -- fields


def _fields(raw: Any, dotted: str) -> dict[str, FieldSpec]:
    if not isinstance(raw, dict):
        raise Invalid(dotted, f"expected a table of fields, got {describe(raw)}")
    specs = {}
    for name, table in raw.items():
        key = f"{dotted}.{name}"
        if not FIELD_NAME_PATTERN.fullmatch(name):
            raise Invalid(
                key, "a field name is a letter or _, then up to 63 letters, digits or _"
            )
        specs[name] = _field(name, table, key)
    return specs


def _field(name: str, table: Any, dotted: str) -> FieldSpec:
    if not isinstance(table, dict):
        raise Invalid(dotted, f"expected a table, got {describe(table)}")
    if "type" not in table:
        listed = ", ".join(f'"{kind}"' for kind in FIELD_TYPES)
        raise Invalid(f"{dotted}.type", f"missing: one of {listed}")
    keys = section(
        _FieldKeys, {k: v for k, v in table.items() if k != "default"}, dotted
    )
    kind = keys.type
    for option, kinds in _ALLOWED.items():
        if option in table and kind not in kinds:
            allowed = ", ".join(kinds[:-1]) + " and " + kinds[-1]
            problem = f"only {allowed} fields take it, not {kind} fields"
            raise Invalid(f"{dotted}.{option}", problem)
    low, high = keys.min, keys.max
    if kind == "integer":  # an integer clamped to 0.5 would not be an integer
        for end in ("min", "max"):
            if end in table:
                convert(table[end], int, (), f"{dotted}.{end}", False)
        low = None if low is None else int(low)
        high = None if high is None else int(high)
    if low is not None and high is not None and low > high:
        raise Invalid(
            f"{dotted}.max", f"must be at least min ({low:.15g}), got {high:.15g}"
        )
    spec = FieldSpec(
        name=name,
        type=kind,
        lane=keys.lane,
        quantum=keys.quantum,
        min=low,
        max=high,
        max_length=keys.max_length,
    )
    if "default" not in table:
        return spec
    default = _default(spec, table["default"], f"{dotted}.default")
    return replace(spec, default=default)


def _default(spec: FieldSpec, raw: Any, dotted: str) -> Any:
    """A field's default, checked like a stored value and quantized."""
    kind = spec.type
    if kind == "vector":
        if not isinstance(raw, list):
            raise Invalid(dotted, f"expected a list of numbers, got {describe(raw)}")
        if len(raw) > spec.length_bound:
            problem = f"must have at most {spec.length_bound} items, got {len(raw)}"
            raise Invalid(dotted, problem)
        # A list, as the state core stores vectors and clients decode them.
        return [_number(spec, item, f"{dotted}[{i}]") for i, item in enumerate(raw)]
    if kind == "number":
        return _number(spec, raw, dotted)
    if kind == "integer":
        value = convert(raw, int, (), dotted, False)
        _within(spec, value, dotted)
        return value
    if kind == "string":
        value = convert(raw, str, (), dotted, False)
        if len(value) > spec.length_bound:
            problem = (
                f"must be at most {spec.length_bound} characters, got {len(value)}"
            )
            raise Invalid(dotted, problem)
        return value
    return convert(raw, bool, (), dotted, False)


def _number(spec: FieldSpec, raw: Any, dotted: str) -> float | int:
    value = convert(raw, float, (), dotted, False)
    _within(spec, value, dotted)
    if spec.quantum is None:
        return value
    return quantize_within(value, spec.quantum, spec.min, spec.max)


def _within(spec: FieldSpec, value: float, dotted: str) -> None:
    if spec.min is not None and value < spec.min:
        raise Invalid(
            dotted, f"must be at least min ({spec.min:.15g}), got {value:.15g}"
        )
    if spec.max is not None and value > spec.max:
        raise Invalid(
            dotted, f"must be at most max ({spec.max:.15g}), got {value:.15g}"
        )
