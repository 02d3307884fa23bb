"""WebSocket framing of outgoing messages, and unmasking of incoming ones.

Autobahn's ``sendMessage`` applies ``maxMessagePayloadSize`` (our limit on
what clients may send) to what the server sends too, and runs assertions
and statistics on every call. Unmasked server frames are simple enough to
build here (heartbeat pings too); compressed connections still go through
Autobahn, with the limit lifted for the call.

Autobahn unmasks every client frame with a native masker that it builds
for that frame, which costs 4 us however small the frame (a third of the
gateway's own work on a ``sys.ping``). :func:`unmask` does small frames as
one XOR of two integers, and hands large ones to Autobahn's native masker,
which is faster past a kilobyte or two (where Autobahn runs without it,
its pure Python masker is slower at any size, and is never used).
"""

from __future__ import annotations

import struct

from autobahn.websocket import USES_NVX
from autobahn.websocket.xormasker import create_xor_masker

_TEXT = 0x81  # FIN + text opcode
_BINARY = 0x82  # FIN + binary opcode
_PING = 0x89  # FIN + ping opcode
_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def frame_header(size: int, binary: bool) -> bytes:
    """The header of one unfragmented, unmasked data frame of ``size`` bytes."""
    first = _BINARY if binary else _TEXT
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return _SHORT.pack(first, 126, size)
    return _LONG.pack(first, 127, size)


def ping_frame(payload: bytes) -> bytes:
    """A whole ping frame carrying ``payload`` (at most 125 bytes)."""
    if len(payload) > 125:
        raise ValueError("a ping carries at most 125 bytes")
    return bytes((_PING, len(payload))) + payload


#: Payloads up to this size are unmasked in Python; larger ones natively.
NATIVE_UNMASK_FROM = 1024 if USES_NVX else None


def unmask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    """``data`` XOR the 4-byte ``mask`` of its frame (RFC 6455, 5.3).

    ``offset`` is where ``data`` starts in the frame's payload, for a frame
    that arrives in pieces.
    """
    shift = offset & 3
    if shift:
        mask = mask[shift:] + mask[:shift]
    size = len(data)
    if NATIVE_UNMASK_FROM is not None and size > NATIVE_UNMASK_FROM:
        return create_xor_masker(mask, size).process(data)
    key = (mask * ((size + 3) >> 2))[:size]
    value = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(size, "little")
