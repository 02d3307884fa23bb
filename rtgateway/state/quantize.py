"""Quantization: one function, used by the server and by every client.

A field with a quantum keeps only multiples of it, printed with the
quantum's decimal places, so that a value read back from JSON or CBOR is
the very number the server holds and hashes ("quantize both sides").
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import lru_cache


@lru_cache(maxsize=256)
def decimal_places(quantum: float) -> int:
    """How many decimals multiples of ``quantum`` need (0.01: 2, 0.25: 2, 5: 0)."""
    exponent = Decimal(repr(quantum)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def quantize(value: float, quantum: float) -> float | int:
    """``round(value / quantum) * quantum``, as the shortest decimal.

    A quantum with no decimal places gives an int; -0.0 becomes 0.0, which
    canonical JSON prints as ``0`` anyway.
    """
    places = decimal_places(quantum)
    steps = round(value / quantum)
    if places == 0:
        return int(steps * quantum)
    return round(steps * quantum, places) + 0.0


def quantize_within(
    value: float, quantum: float, low: float | None, high: float | None
) -> float | int:
    """The multiple of ``quantum`` nearest ``value`` that lies within bounds.

    Clamping after rounding could step half a quantum outside a bound that
    is not itself a multiple; then the next multiple inside is taken.
    """
    result = quantize(value, quantum)
    if low is not None and result < low:
        result = _multiple(math.ceil(low / quantum - 1e-9), quantum)
    if high is not None and result > high:
        result = _multiple(math.floor(high / quantum + 1e-9), quantum)
    return result


def _multiple(steps: int, quantum: float) -> float | int:
    places = decimal_places(quantum)
    if places == 0:
        return int(steps * quantum)
    return round(steps * quantum, places) + 0.0
