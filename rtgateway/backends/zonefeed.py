"""The bus message of a state zone: one batch of entity changes.

Every write of the state store publishes one batch on the zone's channel
(:func:`~rtgateway.backends.keys.zone_channel`), so that the gateways with
clients in the zone apply the same changes in the same order. A batch is
JSON::

    {"g": gateway_id, "e": {entity_id: [version, fields]}, "r": [entity_id]}

``g`` names the gateway that wrote it (a gateway ignores its own echo),
``e`` maps each changed entity to its new version and only the fields that
changed, ``r`` lists the removed entities. The Redis store's ``world_set``
script assembles these same bytes itself, around the version it assigns
(see :mod:`.redis.state`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson


def encode_zone_batch(
    gateway_id: str,
    changed: Mapping[str, tuple[int, Mapping[str, Any]]],
    removed: Iterable[str],
) -> bytes:
    """The bus message of one batch: ``changed`` is ``{id: (version, fields)}``."""
    entities = {entity_id: [v, f] for entity_id, (v, f) in changed.items()}
    return orjson.dumps({"g": gateway_id, "e": entities, "r": list(removed)})


def decode_zone_batch(
    message: bytes,
) -> tuple[str, dict[str, tuple[int, dict[str, Any]]], list[str]]:
    """The inverse of :func:`encode_zone_batch`: ``(gateway_id, changed, removed)``."""
    batch = orjson.loads(message)
    changed = {entity_id: (v, f) for entity_id, (v, f) in batch["e"].items()}
    return batch["g"], changed, batch["r"]
