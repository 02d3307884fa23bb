"""The two encodings of the protocol, and the choice between them.

Both decoders accept exactly the JSON data model (objects with text keys,
arrays, text, integers, finite floats, true, false, null) nested at most
:data:`MAX_DEPTH` levels, and fail with :class:`ParseError` only, so that the
layers above never meet a CBOR tag, a byte string, a NaN, or a library
exception. The error keeps the specification's message, which is what the
client sees; why the frame was refused is a note on the exception, for the
server's log, and never quotes the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from io import BytesIO
from typing import Any, ClassVar, Protocol

import cbor2
import orjson

from rtgateway.wire.errors import ParseError

#: Deepest container nesting a document may have, in both encodings. Well
#: below the 254 levels orjson can serialise, so that whatever a client sends
#: can travel back inside an event or a response; also serde_json's default.
MAX_DEPTH = 128

_SCALARS = frozenset({str, bool, type(None)})
#: The integers JSON peers can exchange: orjson writes i64 and u64, no more.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_FOREIGN_NAMES = {
    bytes: "byte strings",
    type(cbor2.undefined): "undefined",
    cbor2.CBORSimpleValue: "simple values",
}


class Codec(Protocol):
    """One encoding of the protocol, bound to one WebSocket subprotocol."""

    NAME: ClassVar[str]
    SUBPROTOCOL: ClassVar[str]
    BINARY: ClassVar[bool]

    def encode(self, value: Any) -> bytes:
        """Serialise a server value; TypeError or ValueError if it cannot be."""
        ...

    def decode(self, data: bytes) -> Any:
        """Parse one frame into a JSON-model value; ParseError otherwise."""
        ...


class JSONCodec:
    """UTF-8 JSON in text frames (orjson: strict UTF-8, no NaN, no BOM)."""

    __slots__ = ()

    NAME: ClassVar[str] = "json"
    SUBPROTOCOL: ClassVar[str] = "rtgw.v1.json"
    BINARY: ClassVar[bool] = False

    def encode(self, value: Any) -> bytes:
        """Raises ``orjson.JSONEncodeError`` (a TypeError) for what orjson cannot
        write: other types, non-text keys, integers beyond 64 bits, lone
        surrogates, cycles, nesting deeper than 254. Like JavaScript's
        ``JSON.stringify``, orjson writes NaN and infinities as ``null``.
        """
        return orjson.dumps(value)

    def decode(self, data: bytes) -> Any:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise _parse_error(f"invalid JSON: {error.msg}") from None
        # orjson only stops at 1024 levels. A document nested deeper than
        # MAX_DEPTH holds more brackets than that, so counting them (at C
        # speed) spares small and flat documents the walk.
        if len(data) > MAX_DEPTH and data.count(b"[") + data.count(b"{") > MAX_DEPTH:
            _check_model(value)
        return value


class CBORCodec:
    """CBOR (RFC 8949) of the JSON data model in binary frames.

    cbor2 decodes far more than JSON: tags (datetimes, bignums, regexes,
    shared references that build cycles), byte strings, ``undefined``,
    simple values, non-text keys, NaN, and it ignores trailing bytes. Every
    tag is refused while decoding; the rest is refused by a walk over the
    result. Declared lengths are not trusted: cbor2 reads long items in
    chunks, so a header claiming 2**64 bytes fails at the end of the frame.
    """

    __slots__ = ()

    NAME: ClassVar[str] = "cbor"
    SUBPROTOCOL: ClassVar[str] = "rtgw.v1.cbor"
    BINARY: ClassVar[bool] = True

    def encode(self, value: Any) -> bytes:
        """Raises TypeError for what cbor2 cannot write (other types, naive
        datetimes) and ValueError for values it refuses (cycles, lone
        surrogates). cbor2's own error classes derive from neither, whatever
        its type stubs say, so they are re-raised as these.

        The value must be of the JSON data model: cbor2 writes sets,
        datetimes, bytes and integers beyond 64 bits as tags or byte strings
        that no peer of this protocol accepts, and NaN as a float. cbor2
        also recurses in C without a depth check, so a value nested
        thousands of levels deep overflows the C stack; values built from
        decoded documents are bounded by :data:`MAX_DEPTH`.
        """
        try:
            return cbor2.dumps(value)
        except cbor2.CBOREncodeValueError as error:
            raise ValueError(f"cannot encode as CBOR: {error}") from error
        except cbor2.CBOREncodeError as error:
            raise TypeError(f"cannot encode as CBOR: {error}") from error

    def decode(self, data: bytes) -> Any:
        stream = BytesIO(data)
        decoder = cbor2.CBORDecoder(
            stream,
            semantic_decoders=_EVERY_TAG,
            max_depth=MAX_DEPTH,
            # Only text and byte keys get hashed, so no key can be chosen to
            # collide (integers hash to themselves).
            strict_hashable_types=True,
        )
        try:
            value = decoder.decode()
        except cbor2.CBORDecodeError as error:
            raise _parse_error(f"invalid CBOR: {error}") from None
        if stream.tell() != len(data):
            raise _parse_error("bytes after the end of the CBOR item")
        _check_model(value)
        return value


def _refuse_tag(value: Any, immutable: bool) -> Any:
    raise ValueError("CBOR tags are outside the JSON data model")


class _RefuseEveryTag(dict[int, Any]):
    """cbor2's semantic decoders, overridden for every tag number.

    Overriding cbor2's own decoders (not only ``tag_hook``, which sees only
    unknown tags) is what stops datetimes, bignums and the shared
    references of tags 28/29 before they are built.
    """

    def __missing__(self, tag: int) -> Any:
        return _refuse_tag


_EVERY_TAG = _RefuseEveryTag()


def _check_model(value: Any) -> None:
    """Raise ParseError unless value is of the JSON data model within MAX_DEPTH.

    Iterative, one level of the tree at a time: Python's recursion limit
    never comes into play, and the level number is the depth.
    """
    level = [value]
    depth = 0
    while level:
        depth += 1
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind in _SCALARS:
                continue
            if kind is dict or kind is list:
                if depth > MAX_DEPTH:
                    raise _parse_error(f"nested deeper than {MAX_DEPTH} levels")
                if kind is list:
                    below.extend(item)
                    continue
                for key in item:
                    if type(key) is not str:
                        raise _parse_error("map keys must be text strings")
                below.extend(item.values())
            elif kind is int:
                if not _INT_MIN <= item <= _INT_MAX:
                    raise _parse_error("integers must fit in 64 bits")
            elif kind is float:
                if not math.isfinite(item):
                    raise _parse_error("NaN and infinity are not JSON numbers")
            else:
                name = _FOREIGN_NAMES.get(kind, kind.__name__)
                raise _parse_error(f"{name} are not in the JSON data model")
        level = below


def _parse_error(reason: str) -> ParseError:
    error = ParseError()
    error.add_note(reason)
    return error


JSON = JSONCodec()
CBOR = CBORCodec()

#: Supported codecs by WebSocket subprotocol.
CODECS: dict[str, Codec] = {codec.SUBPROTOCOL: codec for codec in (JSON, CBOR)}


def choose_codec(offered: Sequence[str]) -> Codec | None:
    """The codec for the subprotocols a client offered, in the client's order.

    A client that offers none speaks JSON; one that offers only unknown
    subprotocols gets None, which the upgrade refuses with HTTP 400.
    """
    if not offered:
        return JSON
    for subprotocol in offered:
        codec = CODECS.get(subprotocol)
        if codec is not None:
            return codec
    return None
