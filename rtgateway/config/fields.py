"""The machinery behind the configuration schema: one driver, small checks.

A section is a frozen dataclass whose fields carry their checks in their
metadata (:func:`key`); :func:`section` reads a TOML table into it, turning
every problem into an :class:`Invalid` that names the dotted key.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable
from dataclasses import field, fields
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints

Check = Callable[[Any], None]


class Invalid(Exception):
    """A problem at a key, before the source file's name is attached."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


def suggest(word: str, choices: Any) -> str:
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), by_lower, n=1)
    return f' (did you mean "{by_lower[close[0]]}"?)' if close else ""


def one_of(*choices: str) -> Check:
    def check(value: str) -> None:
        if value not in choices:
            listed = ", ".join(f'"{choice}"' for choice in choices)
            suggestion = suggest(value, choices)
            raise ValueError(
                f"expected one of {listed}, got {quote(value)}{suggestion}"
            )

    return check


def positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value:.15g}")


def non_negative(value: float) -> None:
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value:.15g}")


def matching(pattern: str, expected: str) -> Check:
    regex = re.compile(pattern)

    def check(value: str) -> None:
        if not regex.fullmatch(value):
            raise ValueError(f"expected {expected}, got {quote(value)}")

    return check


def key(
    default: Any, *checks: Check, secret: bool = False, derived: bool = False
) -> Any:
    """A field whose metadata holds the checks run on a value from the file
    (on each item of a list); ``secret`` values are never shown, in errors or
    reprs, so they cannot reach a log; ``derived`` fields are computed, not
    read."""
    meta = {"checks": checks, "secret": secret, "derived": derived}
    return field(default=default, repr=not secret, metadata=meta)


def section(kind: type, raw: Any, name: str) -> Any:
    if not isinstance(raw, dict):
        raise Invalid(name, f"expected a table, got {describe(raw)}")
    hints = get_type_hints(kind)
    keys = {f.name: f for f in fields(kind) if not f.metadata.get("derived")}
    values = {}
    for key, value in raw.items():
        dotted = f"{name}.{key}"
        if key not in keys:
            raise Invalid(dotted, "unknown key" + suggest(key, keys))
        meta = keys[key].metadata
        values[key] = convert(
            value, hints[key], meta.get("checks", ()), dotted, meta.get("secret", False)
        )
    return kind(**values)


def convert(
    value: Any, hint: Any, checks: tuple[Check, ...], key: str, secret: bool
) -> Any:
    if get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise Invalid(key, f"expected a list, got {describe(value, secret)}")
        item = get_args(hint)[0]
        return tuple(
            convert(v, item, checks, f"{key}[{i}]", secret) for i, v in enumerate(value)
        )
    if isinstance(hint, UnionType):  # X | None: absent from the file means None
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    converted = scalar(value, hint)
    if converted is None:
        expected = _EXPECTED[hint]
        if hint is float and isinstance(value, float):  # only nan and inf get here
            expected = "a finite number"
        raise Invalid(key, f"expected {expected}, got {describe(value, secret)}")
    for check in checks:
        try:
            check(converted)
        except ValueError as error:
            raise Invalid(key, str(error)) from None
    return converted


_EXPECTED = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_EXPECTED[bytes] = _EXPECTED[str]  # the secret: TOML has no bytes
_KINDS = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
_KINDS |= {list: "a list", dict: "a table"}  # bool before int: bools are ints


def scalar(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` if it converts without loss, else None.

    TOML tells 1 from 1.0 and true from 1; a number field takes either
    spelling of a whole number, but a bool is never a number.
    """
    if isinstance(value, bool) != (kind is bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if kind is int and isinstance(value, float):
        return int(value) if value.is_integer() else None
    if kind is float and isinstance(value, int):
        return float(value)
    if kind is bytes and isinstance(value, str):
        return value.encode("utf-8")
    return value if isinstance(value, kind) else None


def quote(text: str) -> str:
    """A string as TOML would spell it, clipped, on one line."""
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted if len(quoted) <= 80 else quoted[:76] + '..."'


def describe(value: Any, secret: bool = False) -> str:
    kind = next(
        (n for cls, n in _KINDS.items() if isinstance(value, cls)), "a datetime"
    )
    if secret or isinstance(value, list | dict):
        return kind
    if isinstance(value, str):
        return f"{kind} ({quote(value)})"
    return f"{kind} ({str(value).lower() if isinstance(value, bool) else value})"
