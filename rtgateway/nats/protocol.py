"""The NATS client protocol, sans-io: bytes in, typed server messages out.

NATS is a text protocol of CRLF-terminated control lines, some followed by
a payload whose length the line gives (the server's own description is at
https://docs.nats.io/reference/reference-protocols/nats-protocol). This
module parses what a server sends (``INFO``, ``MSG``, ``HMSG``, ``PING``,
``PONG``, ``+OK``, ``-ERR``) and serializes what a client sends
(``CONNECT``, ``PUB``, ``HPUB``, ``SUB``, ``UNSUB``, ``PING``, ``PONG``). It
knows no sockets, no reactor and no clock, so the Twisted client
(:mod:`rtgateway.nats.client`) only moves bytes and timers, and the parser
can be fed any split of a stream in a unit test.

Headers (``HPUB``/``HMSG``) are the ``NATS/1.0`` block: a first line
holding an optional status code and description (``NATS/1.0 503`` is how
the server says that a request had no responders), then ``Key: Value``
lines and an empty line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

CRLF = b"\r\n"
HEADER_LINE = b"NATS/1.0"

#: A control line longer than this without its CRLF is a broken stream
#: (the server's own limit, ``max_control_line``, defaults to 4 KiB; an
#: INFO with many cluster URLs can be longer, hence the margin).
MAX_CONTROL_LINE = 64 * 1024


class ProtocolError(ValueError):
    """The server sent bytes that are not the NATS protocol."""


@dataclass(frozen=True, slots=True)
class Info:
    """``INFO``: the server's description (``max_payload``, ``connect_urls``...)."""

    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Msg:
    """A message delivered on a subscription (``MSG`` or ``HMSG``).

    ``headers`` is None for a plain ``MSG``; ``status`` is the status code
    of the header block (503: no responders), None when it has none.
    """

    subject: str
    sid: int
    reply: str | None
    payload: bytes
    headers: dict[str, str] | None = None
    status: int | None = None
    description: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Ping:
    """``PING``: the server checks the connection; answer with :func:`pong`."""


@dataclass(frozen=True, slots=True)
class Pong:
    """``PONG``: the answer to the client's oldest unanswered ``PING``."""


@dataclass(frozen=True, slots=True)
class Ok:
    """``+OK`` (verbose mode only, which this client does not ask for)."""


@dataclass(frozen=True, slots=True)
class Err:
    """``-ERR``: ``message`` without its quotes (the server closes after most)."""

    message: str


ServerMessage = Info | Msg | Ping | Pong | Ok | Err

PING_MESSAGE, PONG_MESSAGE, OK_MESSAGE = Ping(), Pong(), Ok()


class Parser:
    """An incremental parser of the server's stream.

    :meth:`feed` takes any slice of bytes and returns the messages it
    completed; a partial line or payload waits for the next slice.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        # The MSG/HMSG whose payload is awaited: (subject, sid, reply,
        # header bytes, total bytes).
        self._pending: tuple[str, int, str | None, int, int] | None = None

    def feed(self, data: bytes) -> list[ServerMessage]:
        """The messages completed by ``data``; :class:`ProtocolError` if broken."""
        buffer = self._buffer
        buffer += data
        out: list[ServerMessage] = []
        start = 0
        while True:
            if self._pending is not None:
                subject, sid, reply, header_size, total = self._pending
                end = start + total
                if len(buffer) < end + 2:
                    break
                if buffer[end : end + 2] != CRLF:
                    raise ProtocolError("a message payload is not followed by CRLF")
                body = bytes(buffer[start:end])
                start = end + 2
                self._pending = None
                out.append(_message(subject, sid, reply, body, header_size))
                continue
            eol = buffer.find(CRLF, start)
            if eol < 0:
                if len(buffer) - start > MAX_CONTROL_LINE:
                    raise ProtocolError("control line too long")
                break
            line = bytes(buffer[start:eol])
            start = eol + 2
            message = self._line(line)
            if message is not None:
                out.append(message)
        del buffer[:start]
        return out

    def _line(self, line: bytes) -> ServerMessage | None:
        op, _, rest = line.partition(b" ")
        op = op.upper()
        if op == b"MSG":
            args = rest.split()
            if len(args) not in (3, 4):
                raise ProtocolError(f"malformed MSG line: {line[:200]!r}")
            reply = args[2].decode() if len(args) == 4 else None
            self._pending = (args[0].decode(), int(args[1]), reply, 0, int(args[-1]))
            return None
        if op == b"HMSG":
            args = rest.split()
            if len(args) not in (4, 5):
                raise ProtocolError(f"malformed HMSG line: {line[:200]!r}")
            reply = args[2].decode() if len(args) == 5 else None
            header_size, total = int(args[-2]), int(args[-1])
            if not 0 <= header_size <= total:
                raise ProtocolError(f"malformed HMSG sizes: {line[:200]!r}")
            self._pending = (args[0].decode(), int(args[1]), reply, header_size, total)
            return None
        if op == b"PING":
            return PING_MESSAGE
        if op == b"PONG":
            return PONG_MESSAGE
        if op == b"+OK":
            return OK_MESSAGE
        if op == b"-ERR":
            return Err(rest.strip().strip(b"'").decode(errors="replace"))
        if op == b"INFO":
            try:
                options = orjson.loads(rest)
            except orjson.JSONDecodeError as error:
                raise ProtocolError(f"INFO is not JSON: {error}") from None
            if not isinstance(options, dict):
                raise ProtocolError("INFO is not a JSON object")
            return Info(options)
        raise ProtocolError(f"unknown operation: {line[:200]!r}")


def _message(
    subject: str, sid: int, reply: str | None, body: bytes, header_size: int
) -> Msg:
    if not header_size:
        return Msg(subject, sid, reply, body)
    headers, status, description = parse_headers(body[:header_size])
    return Msg(subject, sid, reply, body[header_size:], headers, status, description)


def parse_headers(block: bytes) -> tuple[dict[str, str], int | None, str]:
    """A header block: its headers, status code (or None) and description.

    A key given twice keeps its last value (this client never sends one
    twice, and the server's own headers are single).
    """
    lines = block.decode(errors="replace").split("\r\n")
    first = lines[0]
    if not first.startswith("NATS/1.0"):
        raise ProtocolError(f"header block without NATS/1.0: {first[:80]!r}")
    status: int | None = None
    description = ""
    head = first[len("NATS/1.0") :].strip()
    if head:
        code, _, description = head.partition(" ")
        if code.isdigit():
            status = int(code)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip()] = value.strip()
    return headers, status, description.strip()


def encode_headers(headers: dict[str, str]) -> bytes:
    """The ``NATS/1.0`` block of ``headers`` (keys and values without CRLF)."""
    parts = [HEADER_LINE]
    for key, value in headers.items():
        if any(c in key + value for c in "\r\n") or ":" in key:
            raise ValueError(f"header {key!r} cannot be sent")
        parts.append(f"{key}: {value}".encode())
    return CRLF.join(parts) + CRLF + CRLF


def connect(options: dict[str, Any]) -> bytes:
    """``CONNECT`` with ``options`` (verbose, headers, auth_token, ...)."""
    return b"CONNECT " + orjson.dumps(options) + CRLF


def pub(subject: str, payload: bytes, reply: str | None = None) -> bytes:
    """``PUB``: ``payload`` on ``subject``, answers to ``reply`` if given."""
    head = (
        f"PUB {subject} {reply} {len(payload)}"
        if reply
        else (f"PUB {subject} {len(payload)}")
    )
    return b"".join((head.encode(), CRLF, payload, CRLF))


def hpub(
    subject: str, headers: dict[str, str], payload: bytes, reply: str | None = None
) -> bytes:
    """``HPUB``: ``payload`` with a header block."""
    block = encode_headers(headers)
    total = len(block) + len(payload)
    head = (
        f"HPUB {subject} {reply} {len(block)} {total}"
        if reply
        else f"HPUB {subject} {len(block)} {total}"
    )
    return b"".join((head.encode(), CRLF, block, payload, CRLF))


def sub(subject: str, sid: int, queue: str | None = None) -> bytes:
    """``SUB``: deliver ``subject`` as ``sid``, in queue group ``queue`` if given."""
    line = f"SUB {subject} {queue} {sid}" if queue else f"SUB {subject} {sid}"
    return line.encode() + CRLF


def unsub(sid: int, max_messages: int | None = None) -> bytes:
    """``UNSUB``: stop ``sid`` now, or after ``max_messages`` more."""
    line = f"UNSUB {sid} {max_messages}" if max_messages else f"UNSUB {sid}"
    return line.encode() + CRLF


PING = b"PING" + CRLF
PONG = b"PONG" + CRLF

_FORBIDDEN_IN_SUBJECT = frozenset(" \t\r\n")


def check_subject(subject: str, wildcards: bool = False) -> None:
    """:class:`ValueError` unless ``subject`` is a well-formed NATS subject.

    Tokens are separated by dots, non-empty, without whitespace; ``*`` and
    ``>`` are wildcards, allowed (as whole tokens, ``>`` last) only where a
    subscription is made.
    """
    tokens = subject.split(".")
    for position, token in enumerate(tokens):
        if not token or _FORBIDDEN_IN_SUBJECT.intersection(token):
            raise ValueError(f"not a NATS subject: {subject!r}")
        if token in ("*", ">") and wildcards:
            if token == ">" and position != len(tokens) - 1:
                raise ValueError(f"'>' must be the last token: {subject!r}")
        elif "*" in token or ">" in token:
            raise ValueError(f"wildcard in a NATS subject: {subject!r}")
