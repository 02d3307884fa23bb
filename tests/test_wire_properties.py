"""Properties of the wire layer over generated input (hypothesis)."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtgateway.wire.codecs import CBOR, JSON
from rtgateway.wire.errors import InvalidRequest, ParseError
from rtgateway.wire.jsonrpc import (
    NO_ID,
    Incoming,
    InvalidEntry,
    Request,
    decode_incoming,
    parse_document,
)

# One test draws both codecs: pytest-twisted cannot wrap a parametrized @given.
codecs = st.sampled_from([JSON, CBOR])
SOME = settings(max_examples=100, deadline=None)
FEW = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

text = st.text(st.characters(codec="utf-8"), max_size=12)
# The integers both encodings carry natively (orjson stops at -2**63).
integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | integers | floats | text


def nested(leaves: int):
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5)
        ),
        max_leaves=leaves,
    )


json_values = nested(25)
small_values = nested(6)
ids = st.none() | text | integers | floats | st.just(NO_ID)
params = (
    st.none()
    | st.lists(small_values, max_size=3)
    | st.dictionaries(text, small_values, max_size=3)
)
extra_members = st.dictionaries(
    text.filter(lambda k: k not in {"jsonrpc", "method", "params", "id"}),
    small_values,
    max_size=2,
)


@st.composite
def requests(draw) -> tuple[dict, Request]:
    """A valid request document and the Request it must parse to."""
    request = Request(draw(text.filter(bool)), draw(params), draw(ids))
    document = {**draw(extra_members), "jsonrpc": "2.0", "method": request.method}
    if request.params is not None:
        document["params"] = request.params
    if request.id is not NO_ID:
        document["id"] = request.id
    return document, request


def mutated(codec):
    """Valid frames with a few bytes flipped, cut or inserted: near misses."""

    @st.composite
    def build(draw) -> bytes:
        frame = bytearray(codec.encode(draw(json_values)))
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(frame)))
            action = draw(st.sampled_from(["flip", "cut", "insert"]))
            if action == "flip" and at < len(frame):
                frame[at] = draw(st.integers(0, 255))
            elif action == "cut":
                del frame[at : at + draw(st.integers(1, 4))]
            else:
                frame[at:at] = draw(st.binary(min_size=1, max_size=4))
        return bytes(frame)

    return build()


@SOME
@given(codec=codecs, data=st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_protocol_errors(codec, data):
    """Random frames never raise anything but ParseError or InvalidRequest."""
    with contextlib.suppress(ParseError, InvalidRequest):
        decode_incoming(codec, data, max_batch=8)


@SOME
@given(codec=codecs, data=st.data())
def test_near_miss_frames_raise_only_protocol_errors(codec, data):
    """Corrupted valid frames never raise anything but ParseError or InvalidRequest."""
    with contextlib.suppress(ParseError, InvalidRequest):
        decode_incoming(codec, data.draw(mutated(codec)), max_batch=8)


@SOME
@given(value=json_values)
def test_any_json_value_parses_or_raises_invalid_request(value):
    """parse_document turns any JSON value into entries, or raises InvalidRequest."""
    try:
        incoming = parse_document(value, max_batch=8)
    except InvalidRequest:
        assert type(value) is not dict
        return
    assert incoming.is_batch == (type(value) is list)
    for entry in incoming.entries:
        assert isinstance(entry, Request | InvalidEntry)
        if isinstance(entry, InvalidEntry):
            assert entry.id is None or type(entry.id) in (str, int, float)


@SOME
@given(case=requests())
def test_valid_requests_parse_back(case):
    """A valid request document parses to the Request it was built from."""
    document, request = case
    assert parse_document(document, max_batch=1) == Incoming((request,), False)


@FEW
@given(cases=st.lists(requests(), min_size=1, max_size=5))
def test_valid_batches_parse_back_in_order(cases):
    """A batch of valid requests parses to those requests, in order."""
    documents = [document for document, _ in cases]
    expected = tuple(request for _, request in cases)
    assert parse_document(documents, max_batch=8) == Incoming(expected, True)


@FEW
@given(codec=codecs, case=requests())
def test_valid_requests_survive_the_wire(codec, case):
    """Encoded by a peer and decoded here, a request parses to the same Request."""
    document, request = case
    incoming = decode_incoming(codec, codec.encode(document), max_batch=1)
    assert incoming == Incoming((request,), False)


@SOME
@given(codec=codecs, value=json_values)
def test_json_model_values_round_trip(codec, value):
    """encode then decode gives back an equal value, in both encodings."""
    assert codec.decode(codec.encode(value)) == value
