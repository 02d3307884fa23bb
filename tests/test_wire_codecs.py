"""Codecs: subprotocol choice, round trips, frame types and encode errors."""

from __future__ import annotations

import datetime
import subprocess
import sys

import cbor2
import pytest

from rtgateway.wire.codecs import (
    CBOR,
    CODECS,
    JSON,
    MAX_DEPTH,
    CBORCodec,
    JSONCodec,
    choose_codec,
)
from rtgateway.wire.errors import ParseError

BOTH = pytest.mark.parametrize("codec", [JSON, CBOR], ids=["json", "cbor"])


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_json_codec_attributes():
    """JSON travels in text frames under rtgw.v1.json."""
    assert (JSONCodec.NAME, JSONCodec.SUBPROTOCOL, JSONCodec.BINARY) == (
        "json",
        "rtgw.v1.json",
        False,
    )
    assert isinstance(JSON, JSONCodec)


def test_cbor_codec_attributes():
    """CBOR travels in binary frames under rtgw.v1.cbor."""
    assert (CBORCodec.NAME, CBORCodec.SUBPROTOCOL, CBORCodec.BINARY) == (
        "cbor",
        "rtgw.v1.cbor",
        True,
    )
    assert isinstance(CBOR, CBORCodec)


def test_registry_is_keyed_by_subprotocol():
    """CODECS maps each supported subprotocol to its codec instance."""
    assert CODECS == {"rtgw.v1.json": JSON, "rtgw.v1.cbor": CBOR}


@pytest.mark.parametrize("offered", [[], ()], ids=["list", "tuple"])
def test_choose_codec_without_offer_is_json(offered):
    """A client that offers no subprotocol speaks JSON."""
    assert choose_codec(offered) is JSON


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["rtgw.v1.cbor", "rtgw.v1.json"], CBOR),
        (["rtgw.v1.json", "rtgw.v1.cbor"], JSON),
        (["rtgw.v1.cbor"], CBOR),
        (["rtgw.v1.json"], JSON),
    ],
)
def test_choose_codec_follows_client_order(offered, chosen):
    """The first supported subprotocol in the client's order wins."""
    assert choose_codec(offered) is chosen


def test_choose_codec_skips_unknown_subprotocols():
    """Unknown subprotocols before a supported one are passed over."""
    assert choose_codec(["wamp.2.json", "rtgw.v2.cbor", "rtgw.v1.cbor"]) is CBOR


@pytest.mark.parametrize(
    "offered",
    [["wamp.2.json"], ["rtgw.v2.json", "mqtt"], ["RTGW.V1.JSON"], ["rtgw.v1.json "]],
)
def test_choose_codec_with_only_unknown_is_none(offered):
    """Only unknown (or not exactly matching) subprotocols: no codec, HTTP 400."""
    assert choose_codec(offered) is None


ROUND_TRIP_VALUES = [
    {"jsonrpc": "2.0", "method": "sys.ping", "params": {}, "id": 1},
    {"jsonrpc": "2.0", "result": {"server_time_ms": 1732550400123}, "id": "a"},
    [1, -1, 0, 2**63, 2**64 - 1, -(2**63)],
    [0.5, -0.0, 1e308, 5e-324, -2.5e-7, 1.0],
    ["", "héllo", "日本語", "\U0001f3ae", "\u2028", "\x00"],
    {"": None, "true": True, "false": False, "nested": {"a": [[], {}, [{}]]}},
    _nested(MAX_DEPTH),
    None,
    "text",
    42,
]


@BOTH
@pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
def test_round_trip(codec, value):
    """Every JSON-model value decodes back to an equal value."""
    assert codec.decode(codec.encode(value)) == value


@BOTH
def test_round_trip_keeps_number_types(codec):
    """Integers stay integers and floats stay floats, even integral ones."""
    decoded = codec.decode(codec.encode([1, 1.0, 2**53 + 1]))
    assert [type(n) for n in decoded] == [int, float, int]
    assert decoded[2] == 2**53 + 1


def test_json_encoding_is_compact_utf8():
    """JSON is written without spaces and without escaping non-ASCII."""
    assert JSON.encode({"a": ["é", 1]}) == '{"a":["é",1]}'.encode()


def test_cbor_encoding_is_cbor2s():
    """CBOR is cbor2's default encoding: shortest lengths, floats as doubles."""
    value = {"a": [1.5, 100000, "x"]}
    assert CBOR.encode(value) == cbor2.dumps(value)
    assert CBOR.encode(1.5) == bytes.fromhex("fb3ff8000000000000")


@pytest.mark.parametrize(
    ("data", "value"),
    [
        ("9f0102ff", [1, 2]),
        ("bf616101ff", {"a": 1}),
        ("7f61616162ff", "ab"),
        ("f93c00", 1.0),
        ("fa3fc00000", 1.5),
        ("fb3ff8000000000000", 1.5),
        ("1bffffffffffffffff", 2**64 - 1),
        ("3b7fffffffffffffff", -(2**63)),
    ],
)
def test_cbor_decodes_what_other_encoders_write(data, value):
    """Indefinite lengths, every float width and 64-bit integers are accepted."""
    assert CBOR.decode(bytes.fromhex(data)) == value


@BOTH
def test_duplicate_keys_keep_the_last_value(codec):
    """A repeated map key keeps its last value in both encodings, as orjson does."""
    data = b'{"a":1,"a":2}' if codec is JSON else bytes.fromhex("a2616101616102")
    assert codec.decode(data) == {"a": 2}


@BOTH
def test_parse_error_keeps_the_spec_message_and_notes_why(codec):
    """The client sees the spec's "Parse error"; the reason is a note, not the input."""
    secret = "s3cr3t-token"
    data = b'{"t":"' + secret.encode() + b'",' if codec is JSON else b"\x82\x6c"
    with pytest.raises(ParseError) as caught:
        codec.decode(data + secret.encode())
    error = caught.value
    assert error.code == -32700
    assert error.to_error_object() == {"code": -32700, "message": "Parse error"}
    (reason,) = error.__notes__
    assert reason.startswith(f"invalid {codec.NAME.upper()}: ")
    assert secret not in reason
    assert len(reason) < 120


def _cycle() -> list:
    value: list = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    "value",
    [
        b"bytes",
        {1: "non-text key"},
        2**64,
        -(2**63) - 1,
        "\ud800",
        object(),
        _cycle(),
        _nested(255),
    ],
    ids=["bytes", "int-key", "big", "small", "surrogate", "object", "cycle", "deep"],
)
def test_json_encode_refuses_with_type_error(value):
    """orjson's refusals are JSONEncodeError, a TypeError the gateway catches."""
    with pytest.raises(TypeError):
        JSON.encode(value)


def test_json_encode_writes_non_finite_floats_as_null():
    """NaN and infinities become null in JSON, as orjson and JavaScript write them."""
    values = [float("nan"), float("inf"), float("-inf")]
    assert JSON.encode(values) == b"[null,null,null]"


def test_json_encode_nests_up_to_254_levels():
    """orjson serialises at most 254 levels, above the decoders' MAX_DEPTH."""
    assert JSON.encode(_nested(254)) == b"[" * 254 + b"]" * 254


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (object(), TypeError),
        (_cycle(), ValueError),
        (datetime.datetime(2024, 1, 1), TypeError),
        ("\udc00", ValueError),
    ],
    ids=["object", "cycle", "naive-datetime", "surrogate"],
)
def test_cbor_encode_refuses_with_type_or_value_error(value, error):
    """cbor2's refusals, its own CBOREncodeError included, surface as these."""
    with pytest.raises(error):
        CBOR.encode(value)


def test_wire_imports_nothing_else():
    """The wire package imports no Twisted and no other part of rtgateway."""
    code = (
        "import sys, rtgateway.wire.codecs, rtgateway.wire.jsonrpc\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    project = {m for m in out if m.startswith("rtgateway")}
    assert project <= {
        "rtgateway",
        "rtgateway.wire",
        "rtgateway.wire.codecs",
        "rtgateway.wire.errors",
        "rtgateway.wire.jsonrpc",
    }
    assert not [m for m in out if m.split(".")[0] in {"twisted", "autobahn", "txaio"}]
