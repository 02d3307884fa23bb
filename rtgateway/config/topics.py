"""The ``[topics.<namespace>]`` and ``[events.<type>]`` tables.

Unlike the fixed sections, these are maps: the operator names the
namespaces and event types. Event schemas are compiled here, so a broken
schema stops the gateway at start-up with the key that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from rtgateway.config.fields import (
    Invalid,
    key,
    non_negative,
    one_of,
    positive,
    section,
)
from rtgateway.routing.schemas import CompiledSchema, SchemaDefinitionError

_PERMISSION = one_of("any", "self", "service", "none")
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
EVENT_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
MAX_EVENT_TYPE_LENGTH = 128
#: Methods and notifications of the gateway itself, and the clients' own
#: events (client.state, client.lost, ...); events must not mimic them.
RESERVED_EVENT_PREFIXES = (
    "rpc.", "sys.", "session.", "state.", "pubsub.", "admin.", "presence.",
    "client.",
)  # fmt: skip
#: Built by the gateway's components (presence, session data); the
#: configuration may not redefine them.
RESERVED_NAMESPACES = ("presence", "zone", "session")
RESERVED_EVENT_TYPES = ("zone.joined", "zone.left")
_EVENT_KEYS = frozenset({"schema", "version", "delivery", "priority"})


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """Who may use a namespace's topics, and how much history they keep."""

    subscribe: str = key("any", _PERMISSION)
    publish: str = key("service", _PERMISSION)
    history_size: int = key(100, non_negative)
    history_ttl_s: float = key(300.0, non_negative)
    max_payload_bytes: int = key(8192, positive)

    @property
    def reliable(self) -> bool:
        """Whether the namespace keeps history (offsets, replay on resume)."""
        return self.history_size > 0 and self.history_ttl_s > 0


@dataclass(frozen=True, slots=True)
class EventConfig:
    """A registered event type; ``schema`` is the JSON Schema of its data."""

    version: int = key(1, positive)
    delivery: str = key("reliable", one_of("reliable", "volatile"))
    priority: int = 0
    schema: Mapping[str, Any] = field(default_factory=dict, metadata={"derived": True})


def parse_topics(raw: Any) -> Mapping[str, TopicConfig]:
    """``[topics.<namespace>]`` tables into TopicConfigs."""
    if not isinstance(raw, dict):
        raise Invalid("topics", "expected a table of namespaces")
    topics = {}
    for namespace, table in raw.items():
        dotted = f"topics.{namespace}"
        if not NAMESPACE_PATTERN.fullmatch(namespace):
            raise Invalid(dotted, "a namespace is 1 to 64 letters, digits, _ or -")
        if namespace in RESERVED_NAMESPACES:
            raise Invalid(dotted, "this namespace is built in; remove it")
        topics[namespace] = section(TopicConfig, table, dotted)
    return MappingProxyType(topics)


def parse_events(raw: Any, base_dir: Path) -> Mapping[str, EventConfig]:
    """``[events.<type>]`` tables (dotted types may nest) into EventConfigs.

    ``[events."chat.message"]`` and ``[events.chat.message]`` both name the
    type ``chat.message``: a table holding any event key is a definition,
    any other table a level of the dotted name.
    """
    if not isinstance(raw, dict):
        raise Invalid("events", "expected a table of event types")
    events: dict[str, EventConfig] = {}
    _collect_events(raw, (), base_dir, events)
    return MappingProxyType(events)


def _collect_events(
    table: dict[str, Any], prefix: tuple[str, ...], base_dir: Path, out: dict
) -> None:
    for name, value in table.items():
        parts = (*prefix, name)
        dotted = "events." + ".".join(parts)
        if not isinstance(value, dict):
            raise Invalid(dotted, "expected a table defining an event type")
        if value and _EVENT_KEYS.isdisjoint(value):
            _collect_events(value, parts, base_dir, out)
            continue
        event_type = ".".join(parts)
        _check_event_type(event_type, dotted)
        out[event_type] = _event(value, dotted, base_dir)


def _check_event_type(event_type: str, dotted: str) -> None:
    if len(event_type) > MAX_EVENT_TYPE_LENGTH or not EVENT_TYPE_PATTERN.fullmatch(
        event_type
    ):
        raise Invalid(dotted, "an event type is dot-separated letters, digits, _ or -")
    if event_type.startswith(RESERVED_EVENT_PREFIXES) or event_type in (
        RESERVED_EVENT_TYPES
    ):
        reserved = ", ".join(RESERVED_EVENT_PREFIXES)
        raise Invalid(dotted, f"event types may not start with {reserved}")


def _event(table: dict[str, Any], dotted: str, base_dir: Path) -> EventConfig:
    table = dict(table)
    raw_schema = table.pop("schema", {})
    event = section(EventConfig, table, dotted)
    schema = _schema(raw_schema, f"{dotted}.schema", base_dir)
    return replace(event, schema=MappingProxyType(schema))


def _schema(raw: Any, dotted: str, base_dir: Path) -> dict[str, Any]:
    """An inline table, or the path (relative to the config) of a JSON file."""
    if isinstance(raw, str):
        path = base_dir / raw
        try:
            raw = orjson.loads(path.read_bytes())
        except OSError as error:
            raise Invalid(dotted, f"cannot read {path}: {error.strerror}") from None
        except orjson.JSONDecodeError as error:
            raise Invalid(dotted, f"{path} is not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise Invalid(dotted, "expected a JSON Schema (a table) or a file name")
    try:
        CompiledSchema(raw)
    except SchemaDefinitionError as error:
        raise Invalid(dotted, " ".join(str(error).split())) from None
    return raw
