"""What the ``fanout``, ``resume`` and ``presence`` scenarios share: the
benchmark's namespace and event types, given to the gateway through its
configuration (``[topics.bench]``, ``[events."bench.*"]``), and the CPU
accounting of a target that may be one process or a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.procstat import cpu_seconds
from bench.report import percentile

NAMESPACE = "bench"
#: A chat line: what a realistic reliable event carries, plus the sequence
#: number and sending time the load generator measures with.
RELIABLE_TYPE = "bench.chat"
#: The same data delivered as a volatile event (no history, no offset).
VOLATILE_TYPE = "bench.typing"
CHAT_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "maxLength": 500},
        "seq": {"type": "integer"},
        "t": {"type": "number"},
    },
    "required": ["text", "seq", "t"],
    "additionalProperties": False,
}


def overrides(
    history_size: int = 100, max_replay: int | None = None
) -> dict[str, dict[str, Any]]:
    """Configuration sections for the bench namespace and its event types.

    Anybody may subscribe and publish on ``bench.*``; its history keeps
    ``history_size`` events for ten minutes (the scenario that replays
    10,000 events sets ``history_size`` and ``max_replay`` to that).
    """
    sections: dict[str, dict[str, Any]] = {
        f"topics.{NAMESPACE}": {
            "subscribe": "any",
            "publish": "any",
            "history_size": history_size,
            "history_ttl_s": 600,
            "max_payload_bytes": 2048,
        },
        f'events."{RELIABLE_TYPE}"': {
            "delivery": "reliable",
            "schema": CHAT_SCHEMA,
        },
        f'events."{VOLATILE_TYPE}"': {
            "delivery": "volatile",
            "schema": CHAT_SCHEMA,
        },
    }
    if max_replay is not None:
        sections["session"] = {"max_replay": max_replay}
    return sections


def cpu_reader(target: Any) -> Callable[[], dict[str, float]]:
    """A function reading the target's CPU seconds so far: ``server`` (every
    gateway of a cluster, or the baseline) and, on Redis, ``redis``."""
    if hasattr(target, "cpu_seconds"):

        def read() -> dict[str, float]:
            used = target.cpu_seconds()
            return {"server": used.pop("gateways"), **used}

        return read
    return lambda: {"server": cpu_seconds(target.pid)}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


def latency_figures(
    latencies: Sequence[float], prefix: str = "latency"
) -> dict[str, float]:
    """p50, p99 and max of latencies in seconds, as milliseconds."""
    ordered = sorted(latencies)
    return {
        f"{prefix}_p50_ms": percentile(ordered, 0.5) * 1000,
        f"{prefix}_p99_ms": percentile(ordered, 0.99) * 1000,
        f"{prefix}_max_ms": (ordered[-1] if ordered else 0.0) * 1000,
    }
