"""WebSocket framing of outgoing messages, without Autobahn's send path.

Autobahn's ``sendMessage`` applies ``maxMessagePayloadSize`` (our limit on
what clients may send) to what the server sends too, and runs assertions
and statistics on every call. Unmasked server frames are simple enough to
build here; compressed connections still go through Autobahn, with the
limit lifted for the call.
"""

from __future__ import annotations

import struct

_TEXT = 0x81  # FIN + text opcode
_BINARY = 0x82  # FIN + binary opcode
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
