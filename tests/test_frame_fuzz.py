"""Frame-level fuzzing of one gateway connection, in memory (hypothesis).

A rule-based state machine writes WebSocket frames it builds itself to one
connection's server side, in random interleavings and random splits: data
frames whole and fragmented, continuation frames out of place, reserved
bits and opcodes, unmasked frames, non-minimal and absurd payload lengths,
control frames oversized or fragmented, text that is not UTF-8, pings and
pongs, closes with and without (valid and invalid) codes, JSON-RPC and CBOR
messages valid and not, the wrong frame type for the codec, partial frames
and bytes that are no frames at all. While that goes on, a neighbour on the
same gateway keeps calling ``sys.ping``.

Where the stream is still in step (every frame so far was whole), the
machine knows what RFC 6455 and PROTOCOL.md make of the next frame and
checks it: the exact close code, the response to a request, the pong to a
ping. Whatever was sent, after every step:

- nothing was logged as an error or a failure (a traceback);
- every close code the gateway sent is one the protocol docs list;
- the gateway never sent the client a frame its WebSocket stack refuses;
- every error response carries a JSON-RPC code the protocol lists;
- what the connection buffers (the unparsed input, the fragments of a
  message) stays within ``max_message_bytes``;
- a closing connection is gone within ``close_timeout_s``;
- the neighbour's pings are answered and it stays open.
"""

from __future__ import annotations

import functools
import itertools
import struct

import cbor2
import orjson
import txaio
from autobahn.websocket.protocol import WebSocketProtocol
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from twisted.logger import LogLevel, globalLogPublisher

from rtgateway.testing import MemoryGateway, make_config
from rtgateway.wire import closecodes

MAX_MESSAGE = 2048
CLOSE_TIMEOUT_S = 1.0
LIMITS = {
    "max_message_bytes": MAX_MESSAGE,
    # Rate limiting has tests of its own; here it would only turn the
    # requests whose answers are checked into -32002.
    "rate_per_second": 100_000.0,
    "rate_burst": 100_000,
    "send_buffer_bytes": 65536,
    "close_timeout_s": CLOSE_TIMEOUT_S,
}
HEARTBEAT = {"interval_s": 15.0, "timeout_s": 10.0, "idle_timeout_s": 40.0}

#: Close codes the gateway may send: PROTOCOL.md section 4, and the two
#: WebSocket-level ones docs/protocol.rst adds (1002 protocol error, 1007
#: text that is not UTF-8).
SENT_CLOSE_CODES = {
    closecodes.NORMAL,
    closecodes.GOING_AWAY,
    1002,
    closecodes.UNSUPPORTED_DATA,
    1007,
    closecodes.MESSAGE_TOO_BIG,
    closecodes.PROTOCOL_VIOLATION,
    closecodes.TOKEN_EXPIRED,
    closecodes.IDLE_TIMEOUT,
    closecodes.SESSION_TAKEN_OVER,
    closecodes.SLOW_CONSUMER,
    closecodes.KICKED,
}
#: JSON-RPC error codes of PROTOCOL.md section 3.
ERROR_CODES = {-32700, -32600, -32601, -32602, -32603} | set(range(-32006, -32000))

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RESERVED_OPCODES = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]
#: Close codes a client may send (RFC 6455 7.4, Autobahn's list).
VALID_CLIENT_CODES = sorted(WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED)
INVALID_CLIENT_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]


# -- frames ---------------------------------------------------------------------


def xor(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x37\xfa\x21\x3d",
    length_form: int | None = None,
    declared: int | None = None,
) -> bytes:
    """One frame as a client would write it (or should not).

    ``length_form`` forces the 7-bit, 16-bit or 64-bit length field (16 and
    64 on a short payload are the non-minimal encodings RFC 6455 forbids);
    ``declared`` writes a length other than the payload's.
    """
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload) if declared is None else declared
    form = length_form or (7 if size < 126 else 16 if size < 65536 else 64)
    mask_bit = 0x80 if mask is not None else 0
    if form == 7:
        header = bytes((first, mask_bit | size))
    elif form == 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if mask is None:
        return header + payload
    return header + mask + xor(payload, mask)


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in pieces at the given offsets (the server reads each apart)."""
    offsets = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(offsets)]


def sending(rule_function):
    """A rule that writes to the connection: on a new one if it was closed."""

    @functools.wraps(rule_function)
    def send(self, **kwargs):
        self.ensure_connection()
        return rule_function(self, **kwargs)

    return send


# -- messages -------------------------------------------------------------------

ids = st.one_of(
    st.integers(-(2**53), 2**53), st.text(max_size=12).map(lambda s: "é" + s)
)
kinds = st.sampled_from(["ping", "notification", "batch", "unknown", "invalid", "junk"])
cuts = st.lists(st.integers(0, 4096), max_size=4)
#: The router's methods but session.close (it ends the session by design).
METHODS = [
    "admin.kick",
    "presence.get",
    "presence.set",
    "presence.unwatch",
    "presence.watch",
    "presence.zone",
    "pubsub.publish",
    "pubsub.subscribe",
    "pubsub.unsubscribe",
    "session.refresh",
    "session.resume",
    "state.hash",
    "state.join",
    "state.leave",
    "state.sync",
    "state.update",
    "sys.ping",
    "world.remove",
    "world.set",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: Params near what the methods take, so that validation goes deeper.
params = st.one_of(
    values,
    st.fixed_dictionaries(
        {},
        optional={
            "topic": st.sampled_from(["chat.a", "presence.bob", "x", ""]),
            "type": st.text(max_size=10),
            "data": values,
            "players": st.lists(st.sampled_from(["bob", "neighbour", "", "é"])),
            "zone": st.sampled_from(["lobby", "", "no-such-zone"]),
            "entity": st.text(max_size=10),
            "fields": st.dictionaries(st.sampled_from(["x", "y", "hp"]), values),
            "input_seq": st.integers(-5, 5),
            "resume_token": st.text(max_size=30),
            "token": st.text(max_size=30),
            "status": st.sampled_from(["online", "away", "busy", "invisible", "x"]),
            "since": values,
            "positions": values,
        },
    ),
)


class FrameFuzz(RuleBasedStateMachine):
    """One connection fed hostile frames, one neighbour pinging beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self._observe)
        self._txaio_loop = txaio.config.loop
        self.gateway = MemoryGateway(
            make_config({"limits": LIMITS, "heartbeat": HEARTBEAT})
        )
        # Autobahn's closing-handshake timer runs on txaio: on the clock too.
        txaio.config.loop = self.gateway.clock
        self.neighbour = self.gateway.open("neighbour")
        self.codec = "json"
        self.victim = None

    def _observe(self, event: dict) -> None:
        level = event.get("log_level")
        if event.get("log_failure") is not None or level in (
            LogLevel.error,
            LogLevel.critical,
        ):
            self.logged.append(event)

    def teardown(self) -> None:
        self.gateway.stop()
        self.gateway.flush()
        txaio.config.loop = self._txaio_loop
        globalLogPublisher.removeObserver(self._observe)

    # -- the connection under fire ------------------------------------------

    @initialize(codec=st.sampled_from(["json", "cbor"]))
    def connect(self, codec: str) -> None:
        self.codec = codec
        self._open()

    def _open(self) -> None:
        self.victim = self.gateway.open("mallory", protocols=[f"rtgw.v1.{self.codec}"])
        self.victim.answer_pings = True
        self.pongs: list[bytes] = []
        self.victim.onPong = self.pongs.append
        (self.server,) = (
            c
            for c in self.gateway.gateway.factory.connections
            if c.principal.player_id == "mallory"
        )
        self.sent_codes: list[int] = []
        send_close = self.server.sendCloseFrame

        def recording(code=None, reasonUtf8=None, isReply=False):
            if code is not None:
                self.sent_codes.append(code)
            return send_close(code=code, reasonUtf8=reasonUtf8, isReply=isReply)

        self.server.sendCloseFrame = recording
        #: Every frame so far arrived whole: the next one can be predicted.
        self.in_step = True
        #: A fragmented message under way: (kind, id, pieces still to send,
        #: how many messages the client had received before it).
        self.fragments: tuple[str, object, list[bytes], int] | None = None
        #: The close code the frames sent so far call for.
        self.expected_close: int | None = None
        assert self.victim.notifications("session.welcome")

    @property
    def binary(self) -> bool:
        return self.codec == "cbor"

    def encode(self, document: object) -> bytes:
        return cbor2.dumps(document) if self.binary else orjson.dumps(document)

    def ensure_connection(self) -> None:
        """Open a new connection once the last one is closed.

        One still closing keeps being written to: what a closing connection
        makes of frames is fuzzed too.
        """
        if self.server.state == WebSocketProtocol.STATE_CLOSED:
            assert self.server not in self.gateway.gateway.factory.connections
            self._open()

    @property
    def predictable(self) -> bool:
        return (
            self.in_step
            and self.expected_close is None
            and self.server.state == WebSocketProtocol.STATE_OPEN
        )

    def deliver(self, data: bytes, pieces: list[int]) -> None:
        for piece in split(data, pieces):
            self.server.dataReceived(piece)
        self.gateway.flush()

    def expect_close(self, code: int) -> None:
        """The frames just sent must have closed the connection with ``code``."""
        if self.expected_close is None:
            event(f"closed {code}")
            self.expected_close = code
            assert self.sent_codes[:1] == [code], (self.sent_codes, code)

    def message(self, kind: str, id: object) -> bytes:
        """A message of one of the ``kinds``."""
        ping = {"jsonrpc": "2.0", "method": "sys.ping", "params": {}, "id": id}
        if kind == "ping":
            return self.encode(ping)
        if kind == "notification":
            return self.encode({"jsonrpc": "2.0", "method": "sys.ping"})
        if kind == "batch":
            return self.encode([ping, {"jsonrpc": "2.0", "method": "sys.ping"}])
        if kind == "unknown":
            return self.encode({**ping, "method": "no.such.method"})
        if kind == "invalid":
            return self.encode({"jsonrpc": "1.0", "method": 7, "id": id})
        # Not a document: an unclosed object, or a CBOR map with bytes after it.
        return b"\xa0\xff" if self.binary else b'{"jsonrpc": "2.0", '

    def check_answer(self, kind: str, id: object, before: int) -> None:
        """The client got what the protocol answers a message of ``kind``."""
        event(f"answered {kind}")
        new = self.victim.received[before:]
        if kind == "notification":
            assert new == []
        elif kind == "batch":
            ((response,),) = new
            assert response["id"] == id and "result" in response
        else:
            (response,) = new
            expected = {
                "ping": None,
                "unknown": {-32601},
                "invalid": {-32600},
                "junk": {-32700},
            }[kind]
            if expected is None:
                assert response["id"] == id and "server_time_ms" in response["result"]
            else:
                assert response["error"]["code"] in expected, response
                if kind == "unknown":
                    assert response["id"] == id

    def data_frame_closes(self, code: int) -> None:
        """A new data frame closes ``code``, or 1002 inside a fragmented message."""
        self.expect_close(1002 if self.fragments is not None else code)

    # -- data messages ---------------------------------------------------------

    @property
    def data_opcode(self) -> int:
        return BINARY if self.binary else TEXT

    @rule(kind=kinds, id=ids, pieces=cuts, pad=st.integers(0, 3000))
    @sending
    def send_message(self, kind, id, pieces, pad):
        """A whole message of the codec's frame type, maybe oversized."""
        predictable = self.predictable
        if pad and kind == "ping":
            id = f"{id}{'x' * pad}"
        payload = self.message(kind, id)
        before = len(self.victim.received)
        self.deliver(frame(self.data_opcode, payload), pieces)
        if not predictable:
            return
        if self.fragments is not None or len(payload) > MAX_MESSAGE:
            self.data_frame_closes(closecodes.MESSAGE_TOO_BIG)
        else:
            self.check_answer(kind, id, before)

    @rule(
        kind=kinds, id=ids, sizes=st.lists(st.integers(0, 60), min_size=1, max_size=5)
    )
    @sending
    def start_fragments(self, kind, id, sizes):
        """The first frame of a fragmented message; continuations follow later."""
        predictable = self.predictable
        pieces, rest = [], self.message(kind, id)
        for size in sizes:
            pieces.append(rest[:size])
            rest = rest[size:]
        pieces[-1] += rest
        first = pieces.pop(0)
        before = len(self.victim.received)
        self.deliver(frame(self.data_opcode, first, fin=not pieces), [])
        if not predictable:
            return
        if self.fragments is not None:
            self.expect_close(1002)  # a new message inside a fragmented one
        elif pieces:
            self.fragments = (kind, id, pieces, before)
        else:
            self.check_answer(kind, id, before)

    @rule(payload=st.binary(max_size=300), fin=st.booleans())
    @sending
    def continue_fragments(self, payload, fin):
        """The next continuation frame: the planned piece, or one out of place."""
        predictable = self.predictable
        if self.fragments is None or not predictable:
            self.deliver(frame(CONTINUATION, payload, fin=fin), [])
            if predictable:
                self.expect_close(1002)  # a continuation outside a message
            return
        kind, id, pieces, before = self.fragments
        piece = pieces.pop(0)
        self.deliver(frame(CONTINUATION, piece, fin=not pieces), [])
        if not pieces:
            self.fragments = None
            self.check_answer(kind, id, before)

    @rule(method=st.sampled_from(METHODS), params=params, id=ids)
    @sending
    def send_call(self, method, params, id):
        """Any method with params of any shape: one answer, never -32603."""
        predictable = self.predictable
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": id}
        payload = self.encode(request)
        before = len(self.victim.received)
        self.deliver(frame(self.data_opcode, payload), [])
        if not predictable:
            return
        if self.fragments is not None or len(payload) > MAX_MESSAGE:
            self.data_frame_closes(closecodes.MESSAGE_TOO_BIG)
            return
        event(f"called {method}")
        (response,) = [
            m
            for m in self.victim.received[before:]
            if isinstance(m, dict) and "method" not in m and m.get("id") == id
        ]
        assert response.get("error", {}).get("code") != -32603, response
        assert self.server.state == WebSocketProtocol.STATE_OPEN

    @rule(size=st.integers(MAX_MESSAGE + 1, 3 * MAX_MESSAGE), parts=st.integers(1, 4))
    @sending
    def send_oversized_message(self, size, parts):
        """More than ``max_message_bytes``, in one frame or several: 1009."""
        predictable = self.predictable
        chunk = -(-size // parts)
        frames = [
            frame(
                self.data_opcode if i == 0 else CONTINUATION,
                b"a" * chunk,
                fin=i == parts - 1,
            )
            for i in range(parts)
        ]
        self.deliver(b"".join(frames), [])
        if predictable:
            self.data_frame_closes(closecodes.MESSAGE_TOO_BIG)

    @rule(text=st.text(max_size=200))
    @sending
    def send_wrong_type(self, text):
        """Binary on a JSON connection, text on a CBOR one: 1003."""
        predictable = self.predictable
        self.deliver(frame(TEXT if self.binary else BINARY, text.encode()), [])
        if predictable:
            self.data_frame_closes(closecodes.UNSUPPORTED_DATA)

    @rule(
        head=st.text(max_size=50),
        bad=st.sampled_from(BAD_UTF8),
        fragmented=st.booleans(),
    )
    @sending
    def send_bad_utf8(self, head, bad, fragmented):
        """A text message that is not UTF-8 (whole or fragmented): 1007."""
        predictable = self.predictable
        payload = head.encode() + bad + b'"}'
        if fragmented:
            data = frame(TEXT, payload[:3], fin=False) + frame(
                CONTINUATION, payload[3:]
            )
        else:
            data = frame(TEXT, payload)
        self.deliver(data, [])
        if predictable:
            self.data_frame_closes(1007)

    @rule(text=st.text(min_size=1, max_size=20))
    @sending
    def send_text_ending_mid_character(self, text):
        """A text message whose last fragment stops inside a character: 1007."""
        predictable = self.predictable
        data = frame(TEXT, text.encode() + b"\xe2\x82", fin=False)
        self.deliver(data + frame(CONTINUATION, b""), [])
        if predictable:
            self.data_frame_closes(1007)

    # -- frames RFC 6455 forbids --------------------------------------------

    @rule(opcode=st.sampled_from(RESERVED_OPCODES), payload=st.binary(max_size=130))
    @sending
    def send_reserved_opcode(self, opcode, payload):
        predictable = self.predictable
        self.deliver(frame(opcode, payload[:125] if opcode > 7 else payload), [])
        if predictable:
            self.expect_close(1002)

    @rule(rsv=st.integers(1, 7), opcode=st.sampled_from([TEXT, BINARY, PING]))
    @sending
    def send_reserved_bits(self, rsv, opcode):
        predictable = self.predictable
        self.deliver(frame(opcode, b"{}", rsv=rsv), [])
        if predictable:
            self.expect_close(1002)

    @rule(kind=kinds, id=ids, opcode=st.sampled_from([TEXT, BINARY, PING, CLOSE]))
    @sending
    def send_unmasked(self, kind, id, opcode):
        predictable = self.predictable
        payload = self.message(kind, id)
        if opcode > 7:
            payload = payload[:125] if opcode == PING else close_payload(1000)
        self.deliver(frame(opcode, payload, mask=None), [])
        if predictable:
            self.expect_close(1002)

    @rule(opcode=st.sampled_from([TEXT, BINARY, PING]), form=st.sampled_from([16, 64]))
    @sending
    def send_non_minimal_length(self, opcode, form):
        """A short payload in a longer length field than it needs: 1002."""
        predictable = self.predictable
        self.deliver(frame(opcode, b"{}", length_form=form), [])
        if predictable:
            self.expect_close(1002)

    @rule(
        declared=st.sampled_from([MAX_MESSAGE + 1, 70_000, 2**32, 2**62]),
        opcode=st.sampled_from([TEXT, BINARY]),
    )
    @sending
    def send_huge_length(self, declared, opcode):
        """A header announcing more than ``max_message_bytes``: 1009 at once."""
        predictable = self.predictable
        self.deliver(frame(opcode, b"", declared=declared), [])
        if predictable:
            self.data_frame_closes(closecodes.MESSAGE_TOO_BIG)
        # The announced payload never comes: the stream is out of step.
        self.in_step = False

    @rule(low=st.integers(0, 2**16))
    @sending
    def send_length_over_2_63(self, low):
        """A 64-bit length with its top bit set: 1002."""
        predictable = self.predictable
        self.deliver(frame(TEXT, b"", declared=2**63 + low, length_form=64), [])
        if predictable:
            self.expect_close(1002)
        self.in_step = False

    @rule(opcode=st.sampled_from([PING, PONG, CLOSE]), size=st.integers(126, 300))
    @sending
    def send_oversized_control(self, opcode, size):
        """A control frame of more than 125 bytes: 1002."""
        predictable = self.predictable
        self.deliver(frame(opcode, close_payload(1000, b"r" * (size - 2))), [])
        if predictable:
            self.expect_close(1002)

    @rule(opcode=st.sampled_from([PING, PONG, CLOSE]), payload=st.binary(max_size=20))
    @sending
    def send_fragmented_control(self, opcode, payload):
        predictable = self.predictable
        self.deliver(frame(opcode, payload, fin=False) + frame(CONTINUATION, b""), [])
        if predictable:
            self.expect_close(1002)

    # -- control frames ------------------------------------------------------

    @rule(payload=st.binary(max_size=125), pieces=cuts)
    @sending
    def send_ping(self, payload, pieces):
        """A ping (between fragments too) is answered with its payload."""
        predictable = self.predictable
        self.deliver(frame(PING, payload), pieces)
        if predictable:
            assert self.pongs[-1:] == [payload]
            assert self.server.state == WebSocketProtocol.STATE_OPEN

    @rule(payload=st.binary(max_size=125))
    @sending
    def send_pong(self, payload):
        """An unsolicited pong is ignored."""
        predictable = self.predictable
        self.deliver(frame(PONG, payload), [])
        if predictable:
            assert self.server.state == WebSocketProtocol.STATE_OPEN

    @rule(
        code=st.one_of(st.none(), st.sampled_from([*VALID_CLIENT_CODES, 3000, 4999])),
        reason=st.text(max_size=40).map(str.encode).filter(lambda r: len(r) <= 123),
    )
    @sending
    def send_close(self, code, reason):
        """A valid close is answered 1000 and the connection ends."""
        predictable = self.predictable
        self.deliver(frame(CLOSE, close_payload(code, reason if code else b"")), [])
        if predictable:
            self.expect_close(closecodes.NORMAL)
            assert self.server.state == WebSocketProtocol.STATE_CLOSED

    @rule(
        payload=st.one_of(
            st.sampled_from(INVALID_CLIENT_CODES).map(close_payload),
            st.binary(min_size=1, max_size=1),
        )
    )
    @sending
    def send_invalid_close(self, payload):
        """A close with a reserved code, or a one-byte payload: 1002."""
        predictable = self.predictable
        self.deliver(frame(CLOSE, payload), [])
        if predictable:
            self.expect_close(1002)

    @rule(bad=st.sampled_from(BAD_UTF8))
    @sending
    def send_close_with_bad_reason(self, bad):
        predictable = self.predictable
        self.deliver(frame(CLOSE, close_payload(1000, b"bye " + bad)), [])
        if predictable:
            self.expect_close(1007)

    # -- out of step -------------------------------------------------------

    @rule(kind=kinds, id=ids, keep=st.integers(1, 40))
    @sending
    def send_partial_frame(self, kind, id, keep):
        """The start of a frame whose rest never comes."""
        data = frame(TEXT, self.message(kind, id))
        self.deliver(data[: min(keep, len(data) - 1)], [])
        self.in_step = False

    @rule(data=st.binary(min_size=1, max_size=600), pieces=cuts)
    @sending
    def send_noise(self, data, pieces):
        """Bytes that need not be frames at all."""
        self.deliver(data, pieces)
        self.in_step = False

    # -- time and reconnection -----------------------------------------------

    @rule(seconds=st.floats(0.0, 20.0), answer=st.booleans())
    def let_time_pass(self, seconds, answer):
        """Heartbeats and idle timers run; the victim may stop answering pings.

        A connection whose closing handshake stalled (the client's close
        frame swallowed by a partial frame) is gone within the close timeout.
        """
        self.victim.answer_pings = answer
        closing = self.server.state == WebSocketProtocol.STATE_CLOSING
        self.gateway.advance(seconds)
        if closing and seconds > CLOSE_TIMEOUT_S:
            assert self.server.state == WebSocketProtocol.STATE_CLOSED

    # -- what always holds -----------------------------------------------------

    @invariant()
    def nothing_logged_as_an_error(self):
        assert self.logged == []

    @invariant()
    def close_codes_are_the_protocols(self):
        if self.victim is None:
            return
        assert set(self.sent_codes) <= SENT_CLOSE_CODES, self.sent_codes
        assert not self.victim.failedByMe  # the gateway's own frames were valid
        if self.victim.closed and self.victim.close_code is not None:
            assert self.victim.close_code in SENT_CLOSE_CODES | {1006}

    @invariant()
    def errors_are_the_protocols(self):
        if self.victim is None:
            return
        for message in self.victim.received:
            for entry in message if isinstance(message, list) else [message]:
                if "error" in entry:
                    assert entry["error"]["code"] in ERROR_CODES, entry
                    assert "traceback" not in repr(entry).lower()

    @invariant()
    def buffers_are_bounded(self):
        if self.victim is None or self.server.state == WebSocketProtocol.STATE_CLOSED:
            return
        header = 14
        assert len(self.server.data) <= MAX_MESSAGE + header
        fragments = getattr(self.server, "message_data", None) or []
        assert sum(len(f) for f in fragments) <= MAX_MESSAGE

    @invariant()
    def neighbour_is_unaffected(self):
        response = self.gateway.call(self.neighbour, "sys.ping", {})
        assert "server_time_ms" in response["result"]
        assert not self.neighbour.closed


FrameFuzz.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestFrameFuzz = FrameFuzz.TestCase
