"""The server-authoritative rules: field types, clamps and the speed limit.

``check_fields`` turns what a client or service sent into stored values:
unknown fields and wrong types are errors (with JSON-pointer paths, for
-32602); numbers are quantized; values past a field's ``min``/``max`` or
the zone's bounds are clamped. :class:`MoveAllowance` shortens moves faster
than ``max_speed``. Whatever was changed beyond quantization is reported as
``corrected``, for the client's prediction to reconcile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rtgateway.state.quantize import quantize, quantize_within
from rtgateway.state.schema import FieldSpec, ZoneSchema


@dataclass(slots=True)
class Checked:
    """The outcome of checking one set of fields."""

    values: dict[str, Any] = field(default_factory=dict)
    corrected: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)


#: The largest magnitude a number field holds: every client's JSON parser
#: reads integers up to it exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``),
#: and RFC 8785 refuses integers beyond it in the view hash.
MAX_MAGNITUDE = 2**53 - 1
OUT_OF_RANGE = "must be within ±(2^53 - 1)"


def _is_number(value: Any) -> bool:
    kind = type(value)
    return (kind is int) or (kind is float and math.isfinite(value))


def _too_large(value: Any) -> bool:
    """Whether a number, or any item of a vector, is past :data:`MAX_MAGNITUDE`."""
    if type(value) is list:
        return any(abs(item) > MAX_MAGNITUDE for item in value)
    return type(value) in (int, float) and abs(value) > MAX_MAGNITUDE


def _clamp_number(spec: FieldSpec, value: float) -> float | int:
    """Quantize and clamp one number (a number field or a vector item)."""
    low, high = spec.min, spec.max
    if spec.quantum is not None:
        return quantize_within(value, spec.quantum, low, high)
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return value


def _problem(spec: FieldSpec, value: Any) -> str | None:
    """Why ``value`` cannot be stored in ``spec``'s field (None: it can)."""
    kind = spec.type
    if kind == "number":
        if not _is_number(value):
            return "must be a number"
        return OUT_OF_RANGE if _too_large(value) else None
    if kind == "integer":
        if type(value) is int or (type(value) is float and value.is_integer()):
            return OUT_OF_RANGE if _too_large(value) else None
        return "must be an integer"
    if kind == "boolean":
        return None if type(value) is bool else "must be a boolean"
    if kind == "string":
        if type(value) is not str:
            return "must be a string"
        if len(value) > spec.length_bound:
            return f"must be at most {spec.length_bound} characters"
        return None
    if type(value) is not list or not all(_is_number(item) for item in value):
        return "must be an array of numbers"
    if len(value) > spec.length_bound:
        return f"must have at most {spec.length_bound} items"
    return OUT_OF_RANGE if _too_large(value) else None


def stored_and_sent(spec: FieldSpec, value: Any) -> tuple[Any, Any]:
    """What is stored for an acceptable ``value``, and what the client holds.

    The stored value is quantized and clamped; the client's is ``value``
    after it quantized it itself. Quantization is not a correction (both
    sides use the same function), so only where the two differ, a clamp,
    is one reported. Unclamped numbers, the input path's common case, are
    quantized once.
    """
    kind = spec.type
    if kind == "number":
        quantum = spec.quantum
        sent = value if quantum is None else quantize(value, quantum)
        if spec.min is None and spec.max is None:
            return sent, sent
        return _clamp_number(spec, value), sent
    if kind == "integer":
        number = int(value)
        sent = number if spec.quantum is None else quantize(number, spec.quantum)
        return int(_clamp_number(spec, number)), sent
    if kind == "vector":
        quantum = spec.quantum
        sent = value if quantum is None else [quantize(i, quantum) for i in value]
        return [_clamp_number(spec, item) for item in value], sent
    return value, value


def check_fields(
    schema: ZoneSchema, fields: dict[str, Any], path: str = "/fields"
) -> Checked:
    """Check and convert ``fields`` by the zone's schema (clamps, no speed)."""
    checked = Checked()
    specs = schema.fields
    values = checked.values
    for name, value in fields.items():
        spec = specs.get(name)
        problem: str | None
        if spec is None:
            problem = "unknown field"
        else:
            problem = _problem(spec, value)
            if problem is None:
                stored, sent = stored_and_sent(spec, value)
                if not _too_large(stored):
                    values[name] = stored
                    if stored != sent:
                        checked.corrected[name] = stored
                    continue
                # Quantizing can round a value at the limit past it.
                problem = OUT_OF_RANGE
        pointer = f"{path}/{_escape(name)}"
        checked.errors.append({"path": pointer, "message": problem})
    if not checked.errors and schema.bounds_min is not None:
        _clamp_to_bounds(schema, checked)
    return checked


def _clamp_to_bounds(schema: ZoneSchema, checked: Checked) -> None:
    values = checked.values
    for axis, name in enumerate(schema.position):
        if name not in values:
            continue
        spec = schema.fields[name]
        low = schema.bounds_min[axis] if schema.bounds_min else None
        high = schema.bounds_max[axis] if schema.bounds_max else None
        value = values[name]
        if (low is not None and value < low) or (high is not None and value > high):
            bounded = FieldSpec(
                name, spec.type, quantum=spec.quantum, min=low, max=high
            )
            values[name] = checked.corrected[name] = _clamp_number(bounded, value)


def _escape(name: str) -> str:
    """A field name as one JSON-pointer token (RFC 6901)."""
    return name.replace("~", "~0").replace("/", "~1")


class MoveAllowance:
    """How far an entity may still move: ``max_speed`` per second elapsed.

    The allowance accumulates with time up to ``speed_burst_s`` seconds'
    worth, so that inputs bunched together by network jitter are not
    corrected while a sustained run faster than ``max_speed`` is.
    """

    __slots__ = ("_at", "_cap", "_left", "_speed")

    def __init__(self, schema: ZoneSchema, now: float) -> None:
        self._speed = schema.max_speed or 0.0
        self._cap = self._speed * schema.speed_burst_s
        self._left = 0.0
        self._at = now

    def limit(
        self,
        schema: ZoneSchema,
        current: dict[str, Any],
        checked: Checked,
        now: float,
    ) -> None:
        """Shorten the move in ``checked`` to what the allowance permits."""
        names = schema.position
        if not any(name in checked.values for name in names):
            return
        if any(name not in current for name in names):
            return  # no position yet: the first one is a placement
        self._left = min(self._cap, self._left + self._speed * (now - self._at))
        self._at = now
        start = [current[name] for name in names]
        target = [checked.values.get(name, current[name]) for name in names]
        distance = math.dist(start, target)
        if distance <= self._left + 1e-9:
            self._left -= distance
            return
        scale = self._left / distance
        moved = 0.0
        for axis, name in enumerate(names):
            spec = schema.fields[name]
            value = start[axis] + (target[axis] - start[axis]) * scale
            if target[axis] == start[axis]:
                value = start[axis]
            elif spec.quantum is not None:
                # Round toward the start, so the move never exceeds the limit.
                steps = value / spec.quantum
                if target[axis] > start[axis]:
                    steps = math.floor(steps + 1e-9)
                else:
                    steps = math.ceil(steps - 1e-9)
                value = quantize(steps * spec.quantum, spec.quantum)
            if value != target[axis] or name in checked.values:
                checked.values[name] = value
                if value != target[axis]:
                    checked.corrected[name] = value
            moved += (value - start[axis]) ** 2
        self._left = max(0.0, self._left - math.sqrt(moved))
