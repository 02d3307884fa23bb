"""Hostile frames: each is refused with ParseError (or InvalidRequest), nothing else.

These pin down that no frame a client can send reaches the layers above as
anything but the JSON data model, and that none costs unbounded memory,
recursion or time.
"""

from __future__ import annotations

import time
import tracemalloc

import cbor2
import pytest

from rtgateway.wire.codecs import CBOR, JSON, MAX_DEPTH
from rtgateway.wire.errors import InvalidRequest, ParseError
from rtgateway.wire.jsonrpc import decode_incoming

DEEP = 100_000
HUGE = "ffffffffffffffff"


def refused(codec, data: bytes) -> ParseError:
    with pytest.raises(ParseError) as caught:
        codec.decode(data)
    assert caught.value.code == -32700
    return caught.value


def cbor(hex_data: str) -> bytes:
    return bytes.fromhex(hex_data.replace(" ", ""))


# -- nesting ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"[" * DEEP + b"]" * DEEP,
        b"[" * DEEP,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        b'[{"a":' * (DEEP // 2),
    ],
    ids=["arrays", "unclosed", "objects", "mixed"],
)
def test_json_deep_nesting(data):
    """100,000 levels of JSON nesting are a parse error, not a RecursionError."""
    refused(JSON, data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x81" * DEEP + b"\x00",
        b"\x81" * DEEP,
        b"\xa1\x61\x61" * DEEP + b"\x00",
        b"\x9f" * DEEP + b"\xff" * DEEP,
        b"\xbf\x61\x61" * DEEP,
    ],
    ids=["arrays", "unclosed", "maps", "indefinite-arrays", "indefinite-maps"],
)
def test_cbor_deep_nesting(data):
    """100,000 levels of CBOR nesting are a parse error, not a crash."""
    refused(CBOR, data)


@pytest.mark.parametrize(
    ("codec", "open_", "close", "leaf"),
    [
        (JSON, b"[", b"]", b"0"),
        (JSON, b'{"k":', b"}", b"0"),
        (CBOR, b"\x81", b"", b"\x00"),
        (CBOR, b"\xa1\x61k", b"", b"\x00"),
        (CBOR, b"\x9f", b"\xff", b""),
    ],
    ids=["json-array", "json-object", "cbor-array", "cbor-map", "cbor-indefinite"],
)
def test_max_depth_is_the_same_in_both_encodings(codec, open_, close, leaf):
    """MAX_DEPTH levels decode; one more is a parse error, in either encoding."""
    assert codec.decode(open_ * MAX_DEPTH + leaf + close * MAX_DEPTH) is not None
    depth = MAX_DEPTH + 1
    error = refused(codec, open_ * depth + leaf + close * depth)
    assert str(MAX_DEPTH) in error.__notes__[0]


def test_json_brackets_in_strings_do_not_count_as_depth():
    """Many brackets inside strings, or side by side, are not nesting."""
    wide = b"[" + b",".join([b"[]"] * (4 * MAX_DEPTH)) + b"]"
    assert len(JSON.decode(wide)) == 4 * MAX_DEPTH
    text = b'["' + b"[{" * (4 * MAX_DEPTH) + b'"]'
    assert JSON.decode(text) == ["[{" * (4 * MAX_DEPTH)]


# -- numbers ------------------------------------------------------------------


DIGITS = b"1" * 10_000


HUGE_NUMBERS = {
    "int": DIGITS,
    "negative": b"-" + DIGITS,
    "in-array": b"[" + DIGITS + b"]",
    "as-id": b'{"jsonrpc":"2.0","method":"m","id":' + DIGITS + b"}",
    "fraction": DIGITS + b".5",
    "exponent": DIGITS + b"e10",
    "1e400": b"1e400",
    "-1e400": b"-1e400",
    "1e99999": b"1e99999",
}


@pytest.mark.parametrize("data", HUGE_NUMBERS.values(), ids=HUGE_NUMBERS.keys())
def test_json_huge_numbers(data):
    """Numbers beyond a double's range (10,000 digits too) are parse errors."""
    refused(JSON, data)


def test_cbor_bignum_of_ten_thousand_digits():
    """A CBOR bignum is a tag, so even 10,000 digits are refused without math."""
    magnitude = b"\xff" * 4153  # 2**33224 - 1: 10,002 decimal digits
    data = b"\xc2\x59" + len(magnitude).to_bytes(2, "big") + magnitude
    refused(CBOR, data)


@pytest.mark.parametrize(
    "data", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"[NaN]", b'{"a":-inf}']
)
def test_json_non_finite_literals(data):
    """NaN and Infinity are not JSON."""
    refused(JSON, data)


NON_FINITE_FLOATS = {
    "half-nan": "f97e00",
    "half-inf": "f97c00",
    "half-neg-inf": "f9fc00",
    "half-nan-payload": "f97e01",
    "half-neg-nan": "f9fe00",
    "single-nan": "fa7fc00000",
    "single-inf": "fa7f800000",
    "single-neg-inf": "faff800000",
    "double-nan": "fb7ff8000000000000",
    "double-inf": "fb7ff0000000000000",
    "double-neg-inf": "fbfff0000000000000",
    "in-array": "82 01 f97e00",
    "in-map": "a1 6161 fa7f800000",
}


@pytest.mark.parametrize(
    "data", NON_FINITE_FLOATS.values(), ids=NON_FINITE_FLOATS.keys()
)
def test_cbor_non_finite_floats(data):
    """NaN and infinities of every float width are refused, as in JSON."""
    refused(CBOR, cbor(data))


# -- CBOR tags ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        "d81c81d81d00",
        "d81ca16161d81d00",
        "d81c80",
        "d81d00",
        "82 d81c80 d81d00",
    ],
    ids=["self-array", "self-map", "shareable-only", "reference-only", "repeat"],
)
def test_cbor_shared_references(data):
    """Tags 28/29 (shared values, cycles) are refused before anything is shared."""
    refused(CBOR, cbor(data))


TAGGED = {
    "0-datetime": "c0 74 323031332d30332d32315432303a30343a30305a",
    "1-epoch": "c1 1a514b67b0",
    "2-bignum": "c2 49 010000000000000000",
    "3-negative-bignum": "c3 49 010000000000000000",
    "2-small-bignum": "c2 41 01",
    "4-decimal": "c4 82 21 196ab3",
    "5-bigfloat": "c5 82 20 03",
    "21-base64url": "d5 41 00",
    "24-embedded-cbor": "d8 18 41 00",
    "25-stringref": "d8 19 00",
    "30-rational": "d8 1e 82 01 03",
    "32-uri": "d8 20 63 613a62",
    "35-regex": "d8 23 63 612b62",
    "36-mime": "d8 24 61 61",
    "37-uuid": "d8 25 50 00112233445566778899aabbccddeeff",
    "256-stringref-namespace": "d9 0100 80",
    "258-set": "d9 0102 81 01",
    "260-ip-address": "d9 0104 44 c0a80001",
    "261-ip-network": "d9 0105 a1 44c0a80000 18 18",
    "1000-unknown": "d9 03e8 00",
    "55799-self-described": "d9 d9f7 a0",
    "largest-tag": "db " + HUGE + " 00",
    "tag-in-map-value": "a1 6161 c1 00",
    "tag-as-map-key": "a1 c1 00 01",
    "tag-in-batch": "82 a0 c1 00",
}


@pytest.mark.parametrize("data", TAGGED.values(), ids=TAGGED.keys())
def test_cbor_tags(data):
    """Every CBOR tag is refused, whether cbor2 knows it or not."""
    refused(CBOR, cbor(data))


@pytest.mark.parametrize("tag", range(0, 300))
def test_cbor_every_small_tag_number(tag):
    """No tag number is decoded natively, including the ones cbor2 special-cases."""
    refused(CBOR, cbor2.dumps(cbor2.CBORTag(tag, 0)))


# -- CBOR values outside the JSON model ---------------------------------------


SIMPLE_VALUES = {
    "undefined": "f7",
    "simple-16": "f0",
    "simple-19": "f3",
    "simple-32": "f820",
    "simple-255": "f8ff",
    "undefined-in-array": "82 01 f7",
    "simple-in-map": "a1 6161 f0",
    "reserved-28": "fc",
    "reserved-29": "fd",
    "reserved-30": "fe",
    "badly-encoded-0": "f800",
    "badly-encoded-24": "f818",
}


@pytest.mark.parametrize("data", SIMPLE_VALUES.values(), ids=SIMPLE_VALUES.keys())
def test_cbor_undefined_and_simple_values(data):
    """undefined and simple values other than false/true/null are refused."""
    refused(CBOR, cbor(data))


@pytest.mark.parametrize(
    "data",
    ["40", "41 78", "5f 41 78 ff", "81 40", "a1 6161 41 78"],
    ids=["empty", "one", "indefinite", "in-array", "in-map"],
)
def test_cbor_byte_strings(data):
    """Byte strings have no JSON equivalent and are refused."""
    refused(CBOR, cbor(data))


NON_TEXT_KEYS = {
    "int": "a1 01 01",
    "negative": "a1 20 01",
    "bytes": "a1 41 78 01",
    "array": "a1 80 01",
    "map": "a1 a0 01",
    "true": "a1 f5 01",
    "null": "a1 f6 01",
    "float": "a1 f93c00 01",
    "indefinite-map": "bf 01 01 ff",
    "second-key": "a2 6161 01 02 01",
}


@pytest.mark.parametrize("data", NON_TEXT_KEYS.values(), ids=NON_TEXT_KEYS.keys())
def test_cbor_non_text_map_keys(data):
    """Map keys must be text strings, as JSON object names are."""
    refused(CBOR, cbor(data))


def test_cbor_colliding_integer_keys_are_refused_before_hashing():
    """Integer keys that all hash alike are refused at the first, not inserted.

    Inserted, these 20,000 keys would take seconds (quadratic probing);
    the bound below is loose on purpose.
    """
    modulus = 2**61 - 1  # hash(k * modulus) == 0 for every k
    count = 20_000
    body = b"".join(cbor2.dumps(k * modulus) + b"\x00" for k in range(1, count + 1))
    data = b"\xb9" + count.to_bytes(2, "big") + body
    started = time.perf_counter()
    refused(CBOR, data)
    assert time.perf_counter() - started < 1.0


# -- text encoding ------------------------------------------------------------


BAD_UTF8 = {
    "ff": b"\xff",
    "bad-continuation": b"\xc3\x28",
    "overlong": b"\xc0\x80",
    "truncated": b"\xe2\x82",
    "surrogate": b"\xed\xa0\x80",
}


@pytest.mark.parametrize("data", BAD_UTF8.values(), ids=BAD_UTF8.keys())
@pytest.mark.parametrize("where", ["value", "key"])
def test_json_invalid_utf8(data, where):
    """Bytes that are not UTF-8 are refused, in values and keys alike."""
    refused(JSON, b'"' + data + b'"' if where == "value" else b'{"' + data + b'":1}')


CBOR_BAD_UTF8 = {
    "ff": "61 ff",
    "bad-continuation": "62 c328",
    "overlong": "62 c080",
    "truncated": "62 e282",
    "surrogate": "63 eda080",
    "in-key": "a1 61ff 01",
    "indefinite": "7f 61ff ff",
    "split-across-chunks": "7f 61c3 61a9 ff",
}


@pytest.mark.parametrize("data", CBOR_BAD_UTF8.values(), ids=CBOR_BAD_UTF8.keys())
def test_cbor_invalid_utf8(data):
    """Text strings must be UTF-8, chunk by chunk for indefinite ones."""
    refused(CBOR, cbor(data))


@pytest.mark.parametrize(
    "data",
    [rb'"\ud800"', rb'"\udc00"', rb'"\udc00\ud800"', rb'"\ud800x"', rb'{"\ud800":1}'],
    ids=["high", "low", "reversed", "unpaired", "in-key"],
)
def test_json_lone_surrogate_escapes(data):
    """Escapes of lone surrogates cannot become text and are refused."""
    refused(JSON, data)


def test_json_surrogate_pair_escape_is_fine():
    """A proper surrogate pair escape decodes to its character."""
    assert JSON.decode(rb'"\ud83c\udfae"') == "\U0001f3ae"


@pytest.mark.parametrize("data", [b"\xef\xbb\xbf{}", b"\xef\xbb\xbf[1]"])
def test_json_byte_order_mark(data):
    """A UTF-8 BOM is not allowed before a JSON text (RFC 8259, section 8.1)."""
    refused(JSON, data)


@pytest.mark.parametrize("codec", [JSON, CBOR], ids=["json", "cbor"])
def test_one_megabyte_string_decodes(codec):
    """Size is the gateway's limit, not the codec's: a 1 MB string decodes."""
    text = "x" * (1 << 20)
    assert codec.decode(codec.encode({"s": text})) == {"s": text}


# -- framing ------------------------------------------------------------------


JSON_NOT_ONE_TEXT = {
    "garbage": b"{} x",
    "two-texts": b"{}{}",
    "extra-bracket": b"[1]]",
    "nul": b'{"a":1}\x00',
    "two-numbers": b"1 2",
    "empty": b"",
    "space": b" ",
    "newline": b"\n",
}


@pytest.mark.parametrize(
    "data", JSON_NOT_ONE_TEXT.values(), ids=JSON_NOT_ONE_TEXT.keys()
)
def test_json_trailing_content_and_empty(data):
    """A frame holds exactly one JSON text."""
    refused(JSON, data)


CBOR_NOT_ONE_ITEM = {
    "two-ints": b"\x01\x02",
    "map-then-int": b"\xa0\x00",
    "array-then-break": b"\x80\xff",
    "two-nulls": b"\xf6\xf6",
    "long-tail": b"\xa0" + b"\x00" * 5000,
    "empty": b"",
}


@pytest.mark.parametrize(
    "data", CBOR_NOT_ONE_ITEM.values(), ids=CBOR_NOT_ONE_ITEM.keys()
)
def test_cbor_trailing_bytes_and_empty(data):
    """A frame holds exactly one CBOR item, nothing after it."""
    refused(CBOR, data)


def test_cbor_trailing_byte_after_a_long_item():
    """Trailing bytes are noticed after an item longer than cbor2's read size."""
    item = cbor2.dumps("x" * 10_000)
    assert CBOR.decode(item) == "x" * 10_000
    refused(CBOR, item + b"\x00")


MALFORMED = {
    "open-array": "9f 01",
    "open-map": "bf 6161",
    "open-text": "7f 6161",
    "open-bytes": "5f",
    "short-array": "82 01",
    "short-int": "1b ffff",
    "short-text": "78",
    "lone-break": "ff",
    "reserved-info": "1c",
    "indefinite-int": "1f",
    "indefinite-negative": "3f",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_cbor_truncated_and_malformed(data):
    """Truncated items and reserved encodings are parse errors."""
    refused(CBOR, cbor(data))


LENIENT_JSON = {
    "single-quotes": b"{'a':1}",
    "trailing-comma": b"[1,]",
    "bare-key": b"{a:1}",
    "hex": b"0x10",
    "leading-zero": b"01",
    "plus": b"+1",
    "no-int-part": b".5",
    "no-fraction": b"1.",
    "comment": b"// x\n1",
    "control-char": b'"\x00"',
    "no-comma": b"[1 2]",
}


@pytest.mark.parametrize("data", LENIENT_JSON.values(), ids=LENIENT_JSON.keys())
def test_json_strictness(data):
    """Only RFC 8259 JSON is accepted, none of the lenient extensions."""
    refused(JSON, data)


# -- declared lengths ---------------------------------------------------------


HUGE_LENGTHS = {
    "array-2**64": "9b" + HUGE,
    "map-2**64": "bb" + HUGE,
    "text-2**64": "7b" + HUGE,
    "bytes-2**64": "5b" + HUGE,
    "array-2**63": "9b7fffffffffffffff",
    "array-2**32": "9affffffff 00 00 00",
    "map-2**32": "baffffffff 6161 00",
    "text-2**32": "7affffffff 616263",
    "bytes-2**32": "5affffffff 616263",
    "text-chunk-2**64": "7f 7b" + HUGE + " ff",
    "nested": "81 9b" + HUGE,
}


@pytest.mark.parametrize("data", HUGE_LENGTHS.values(), ids=HUGE_LENGTHS.keys())
def test_cbor_huge_declared_lengths(data):
    """A length that the frame cannot hold fails without allocating for it."""
    tracemalloc.start()
    try:
        refused(CBOR, cbor(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_cbor_64_bit_integer_argument_is_just_a_number():
    """0x1b with eight 0xff bytes is the integer 2**64-1, not a length."""
    assert CBOR.decode(cbor("1b" + HUGE)) == 2**64 - 1


# -- document level -------------------------------------------------------------


@pytest.mark.parametrize("codec", [JSON, CBOR], ids=["json", "cbor"])
def test_hostile_frames_through_decode_incoming(codec):
    """decode_incoming raises only ParseError or InvalidRequest for hostile frames."""
    frames = [
        codec.encode([]),
        codec.encode(1),
        codec.encode([{}] * 11),
        b"\xff" * 3,
        b"[" * DEEP if codec is JSON else b"\x81" * DEEP,
    ]
    for data in frames:
        with pytest.raises((ParseError, InvalidRequest)):
            decode_incoming(codec, data, max_batch=10)


def test_cbor_integers_beyond_64_bits_are_refused():
    """CBOR may carry -2**64; JSON peers cannot, so it is a parse error."""
    with pytest.raises(ParseError):
        CBOR.decode(bytes.fromhex("3bffffffffffffffff"))
