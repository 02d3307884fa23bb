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
    """The buffer ends inside the reply being parsed."""


class ReplyReader:
    """Cuts a byte stream into RESP2 replies (the hiredis ``Reader`` API)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def gets(self) -> Any:
        """The next complete reply, or :data:`INCOMPLETE`."""
        try:
            reply, end = self._parse(self._start)
        except _Incomplete:
            return INCOMPLETE
        self._start = end
        if end == len(self._buffer):
            self._buffer.clear()
            self._start = 0
        elif end >= _COMPACT_AT:
            del self._buffer[:end]
            self._start = 0
        return reply

    def _parse(self, start: int) -> tuple[Any, int]:
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
                return None, position
            if len(buffer) < position + length + 2:
                raise _Incomplete
            return bytes(buffer[position : position + length]), position + length + 2
        if kind == 0x2A:  # * array
            count = int(line)
            if count < 0:
                return None, position
            items = []
            for _ in range(count):
                item, position = self._parse(position)
                items.append(item)
            return items, position
        if kind == 0x3A:  # : integer
            return int(line), position
        if kind == 0x2B:  # + status
            return line.decode(errors="replace"), position
        if kind == 0x2D:  # - error
            return txredisapi.ResponseError(line.decode(errors="replace")), position
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
