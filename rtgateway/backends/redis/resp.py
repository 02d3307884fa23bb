"""Reading Redis replies (RESP2) in one pass over each chunk received.

txredisapi's own parser is a line receiver that, after every bulk string
followed by more data, pauses the transport and parses the rest on the next
reactor turn: about 15 µs and two epoll changes per bulk string, so a burst
of 1,000 bus messages (three bulk strings each) or a 1,000-event replay
costs tens of milliseconds of reactor turns. The backends' protocols use
:class:`ReplyReader` instead, the way txredisapi's ``HiredisProtocol`` uses
hiredis's reader (whose presence would otherwise change the parsing under
us): everything else (commands, AUTH, SELECT, the reply queue, reply
timeouts) is txredisapi's.

Replies are as txredisapi gives them with ``charset=None`` and
``convertNumbers=False``: bulk strings as ``bytes`` (never decoded), nil as
None, integers as ``int``, status lines as ``str``, arrays as lists and
errors as :class:`txredisapi.ResponseError` instances (raised by the command
that gets them). These connections never use MULTI.
"""

from __future__ import annotations

from typing import Any

import txredisapi

#: What :meth:`ReplyReader.gets` returns while no complete reply is buffered.
INCOMPLETE = object()

# The buffer is compacted once this much of it has been consumed.
_COMPACT_AT = 65536


class _Incomplete(Exception):
    """The buffer ends inside the item being read."""


class ReplyReader:
    """Cuts a byte stream into RESP2 replies (the hiredis ``Reader`` API).

    Arrays are built item by item, and an array cut by the end of a chunk
    is kept half-built (``_stack``) until the next one: a 3 MB reply of
    20,000 items read in 64 KiB chunks is parsed once, not once per chunk.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0
        #: Arrays being filled, outermost first: (items so far, item count).
        self._stack: list[tuple[list[Any], int]] = []

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def gets(self) -> Any:
        """The next complete reply, or :data:`INCOMPLETE`."""
        while True:
            try:
                value, self._start, count = self._read(self._start)
            except _Incomplete:
                self._compact()
                return INCOMPLETE
            if count:  # a non-empty array starts: its items come next
                self._stack.append(([], count))
                continue
            while self._stack:
                items, count = self._stack[-1]
                items.append(value)
                if len(items) < count:
                    break
                self._stack.pop()
                value = items
            else:
                self._compact()
                return value

    def _compact(self) -> None:
        if self._start == len(self._buffer):
            self._buffer.clear()
            self._start = 0
        elif self._start >= _COMPACT_AT:
            del self._buffer[: self._start]
            self._start = 0

    def _read(self, start: int) -> tuple[Any, int, int]:
        """One item at ``start``: (value, end, item count of an array header)."""
        buffer = self._buffer
        end = buffer.find(b"\r\n", start)
        if end < 0:
            raise _Incomplete
        kind = buffer[start]
        line = buffer[start + 1 : end]
        position = end + 2
        if kind == 0x24:  # $ bulk string
            length = int(line)
            if length < 0:
                return None, position, 0
            if len(buffer) < position + length + 2:
                raise _Incomplete
            return bytes(buffer[position : position + length]), position + length + 2, 0
        if kind == 0x2A:  # * array
            count = int(line)
            return (None if count < 0 else []), position, max(count, 0)
        if kind == 0x3A:  # : integer
            return int(line), position, 0
        if kind == 0x2B:  # + status
            return line.decode(errors="replace"), position, 0
        if kind == 0x2D:  # - error
            error = txredisapi.ResponseError(line.decode(errors="replace"))
            return error, position, 0
        raise txredisapi.InvalidResponse(f"unknown reply type {bytes([kind])!r}")


class ReplyReaderProtocol(txredisapi.BaseRedisProtocol):
    """txredisapi's protocol, reading replies with :class:`ReplyReader`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reader = ReplyReader()

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not INCOMPLETE:
            self.replyReceived(reply)
