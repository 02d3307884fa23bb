"""The view hash of ``state.check`` and ``state.hash``.

The first 16 hex digits of the SHA-256 of the RFC 8785 (JSON
Canonicalization Scheme) form of ``{id: {"v": v, "fields": fields}}`` over
the entities of a view. An object's canonical form is its members sorted by
the UTF-16 code units of their names and joined without white space, so the
form of a whole view is assembled from each entity's own canonical member,
computed once per published change and shared by every view holding it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import rfc8785

HASH_DIGITS = 16


def canonical_member(entity_id: str, version: int, fields: dict[str, Any]) -> bytes:
    """The canonical ``"id":{"fields":...,"v":...}`` member of one entity."""
    return (
        rfc8785.dumps(entity_id)
        + b":"
        + rfc8785.dumps({"v": version, "fields": fields})
    )


def utf16_order(entity_id: str) -> bytes:
    """The sort key RFC 8785 orders member names by."""
    return entity_id.encode("utf-16-be")


def view_hash(members: Iterable[tuple[str, bytes]]) -> str:
    """The hash of a view from ``(entity_id, canonical_member)`` pairs."""
    ordered = sorted(members, key=lambda pair: utf16_order(pair[0]))
    return ordered_hash([member for _, member in ordered])


def ordered_hash(members: list[bytes]) -> str:
    """The hash of a view from its canonical members, already in order."""
    return hashlib.sha256(b"{" + b",".join(members) + b"}").hexdigest()[:HASH_DIGITS]


def hash_entities(entities: dict[str, tuple[int, dict[str, Any]]]) -> str:
    """The hash of ``{id: (v, fields)}``: what a client computes over its mirror."""
    return view_hash(
        (entity_id, canonical_member(entity_id, version, fields))
        for entity_id, (version, fields) in entities.items()
    )
