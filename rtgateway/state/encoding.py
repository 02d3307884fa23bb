"""State messages assembled from pre-encoded pieces, in JSON or CBOR.

A tick's ``state.delta`` differs per client (its base, its view, its
``ack``), but the entity fragments inside it are shared: each is encoded
once per codec and the message is the concatenation of the fragments that
client needs between a fixed head and tail. Both encodings of a map are
simple concatenations (JSON: ``{`` members joined by ``,`` ``}``; CBOR: a
head carrying the count, then keys and values), so no document is built or
walked per client.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2
import orjson

JSON, CBOR = 0, 1
CODEC_INDEX = {"json": JSON, "cbor": CBOR}


def fragment(codec: int, entity_id: str, version: int, fields: dict[str, Any]) -> bytes:
    """One ``"id": {"v": v, "fields": {...}}`` member, encoded."""
    body = {"v": version, "fields": fields}
    if codec == JSON:
        return orjson.dumps(entity_id) + b":" + orjson.dumps(body)
    return cbor2.dumps(entity_id) + cbor2.dumps(body)


def _cbor_map_head(count: int) -> bytes:
    if count < 24:
        return bytes((0xA0 | count,))
    if count < 0x100:
        return bytes((0xB8, count))
    if count < 0x10000:
        return b"\xb9" + struct.pack(">H", count)
    return b"\xba" + struct.pack(">I", count)


def _encode(codec: int, value: Any) -> bytes:
    return orjson.dumps(value) if codec == JSON else cbor2.dumps(value)


def _map(codec: int, members: list[bytes]) -> bytes:
    """A map from already encoded members."""
    if codec == JSON:
        return b"{" + b",".join(members) + b"}"
    return _cbor_map_head(len(members)) + b"".join(members)


def _member(codec: int, name: str, encoded_value: bytes) -> bytes:
    return _encode(codec, name) + (b":" if codec == JSON else b"") + encoded_value


def _notification(codec: int, method: str, params: list[bytes]) -> bytes:
    return _map(
        codec,
        [
            _member(codec, "jsonrpc", _encode(codec, "2.0")),
            _member(codec, "method", _encode(codec, method)),
            _member(codec, "params", _map(codec, params)),
        ],
    )


_KEYS = {
    JSON: {name: orjson.dumps(name) + b":" for name in ("zone", "tick", "ack", "ts")},
    CBOR: {name: cbor2.dumps(name) for name in ("zone", "tick", "ack", "ts")},
}
#: What opens a ``state.delta`` up to its params' map head (CBOR: the head
#: is not included, it depends on how many params there are).
_DELTA_OPEN = {
    JSON: b'{"jsonrpc":"2.0","method":"state.delta","params":{"zone":',
    CBOR: b"\xa3"
    + cbor2.dumps("jsonrpc")
    + cbor2.dumps("2.0")
    + cbor2.dumps("method")
    + cbor2.dumps("state.delta")
    + cbor2.dumps("params"),
}


def delta_message(
    codec: int,
    zone: str,
    tick: int,
    base_tick: int,
    changed: list[bytes],
    removed: list[str],
    ack: dict[str, Any] | None,
    ts_ms: float | None = None,
) -> bytes:
    """A ``state.delta`` notification (the hot path: one per client per tick)."""
    if codec == JSON:
        parts = [
            _DELTA_OPEN[JSON],
            orjson.dumps(zone),
            b',"tick":%d,"base_tick":%d,"changed":{' % (tick, base_tick),
            b",".join(changed),
            b'},"removed":',
            orjson.dumps(removed),
        ]
        if ack is not None:
            parts += (b',"ack":', orjson.dumps(ack))
        if ts_ms is not None:
            parts += (b',"ts":', orjson.dumps(ts_ms))
        parts.append(b"}}")
        return b"".join(parts)
    keys = _KEYS[CBOR]
    count = 5 + (ack is not None) + (ts_ms is not None)
    parts = [
        _DELTA_OPEN[CBOR],
        _cbor_map_head(count),
        keys["zone"],
        cbor2.dumps(zone),
        keys["tick"],
        cbor2.dumps(tick),
        _BASE_TICK,
        cbor2.dumps(base_tick),
        _CHANGED,
        _cbor_map_head(len(changed)),
        *changed,
        _REMOVED,
        cbor2.dumps(removed),
    ]
    if ack is not None:
        parts += (keys["ack"], cbor2.dumps(ack))
    if ts_ms is not None:
        parts += (keys["ts"], cbor2.dumps(ts_ms))
    return b"".join(parts)


_BASE_TICK = cbor2.dumps("base_tick")
_CHANGED = cbor2.dumps("changed")
_REMOVED = cbor2.dumps("removed")


def snapshot_message(
    codec: int, zone: str, tick: int, entities: list[bytes], ts_ms: float | None = None
) -> bytes:
    """A ``state.snapshot`` notification."""
    params = [
        _member(codec, "zone", _encode(codec, zone)),
        _member(codec, "tick", _encode(codec, tick)),
        _member(codec, "entities", _map(codec, entities)),
    ]
    if ts_ms is not None:
        params.append(_member(codec, "ts", _encode(codec, ts_ms)))
    return _notification(codec, "state.snapshot", params)


def check_message(codec: int, zone: str, tick: int, digest: str) -> bytes:
    """A ``state.check`` notification."""
    document = {
        "jsonrpc": "2.0",
        "method": "state.check",
        "params": {"zone": zone, "tick": tick, "hash": digest},
    }
    return _encode(codec, document)
