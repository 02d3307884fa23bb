"""The gateway's cheaper paths behave exactly like the ones they replace.

Each test pins down a behaviour that a performance change could have broken:
frames are unmasked right at every size and split, Autobahn's ``message``
event and options still work, the metrics are exact and exposed as
prometheus_client would, the upgrade leaves no garbage cycle, and the HMAC
secret is not prepared again for every token.
"""

from __future__ import annotations

import gc
import os
import re
import struct

import orjson
import pytest
from autobahn.twisted.websocket import WebSocketServerProtocol
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)
from twisted.web.http import HTTPChannel

from rtgateway.gateway import frames
from rtgateway.gateway.frames import ping_frame, unmask
from rtgateway.metrics import LATENCY_BUCKETS, FastCounter, FastHistogram


def xor(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    return bytes(b ^ mask[(offset + i) % 4] for i, b in enumerate(data))


def masked_frame(
    payload: bytes, opcode: int = 0x1, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One client frame, masked as RFC 6455 requires."""
    mask = mask or os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + mask + xor(payload, mask)


def server_side(gateway):
    (connection,) = gateway.gateway.factory.connections
    return connection


def echo_gateway(make_memory_gateway):
    gateway = make_memory_gateway({"limits": {"max_message_bytes": 200_000}})
    gateway.gateway.router.register(
        "test.echo", lambda caller, params: params, params={"type": "object"}
    )
    return gateway


def request(text: str, id: int = 1) -> bytes:
    return orjson.dumps(
        {"jsonrpc": "2.0", "method": "test.echo", "params": {"t": text}, "id": id}
    )


@pytest.mark.parametrize(
    "size", [0, 1, 3, 4, 5, 125, 126, 1023, 1024, 1025, 65536, 70001]
)
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 6])
def test_unmask_is_the_rfc_xor_at_every_size_and_offset(size, offset):
    """Small payloads (in Python) and large ones (native) unmask alike."""
    data = os.urandom(size)
    mask = os.urandom(4)
    assert unmask(data, mask, offset) == xor(data, mask, offset)


def test_unmask_without_autobahns_native_masker(monkeypatch):
    """Where Autobahn has no native masker, every size is unmasked in Python."""
    monkeypatch.setattr(frames, "NATIVE_UNMASK_FROM", None)
    data, mask = os.urandom(70001), os.urandom(4)
    assert frames.unmask(data, mask, 3) == xor(data, mask, 3)


def test_ping_frame_is_a_final_ping_of_at_most_125_bytes():
    """The heartbeat's ping frame is built as RFC 6455 says."""
    assert ping_frame(b"12345678") == b"\x89\x0812345678"
    with pytest.raises(ValueError):
        ping_frame(b"x" * 126)


@pytest.mark.parametrize("size", [10, 125, 126, 1000, 1100, 65535, 65536, 150_000])
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_messages_of_every_size_arrive_intact_in_any_split(
    make_memory_gateway, size, chunk
):
    """A frame unmasks right whether it comes whole or a few bytes at a time."""
    gateway = echo_gateway(make_memory_gateway)
    client = gateway.open()
    connection = server_side(gateway)
    text = "x" * max(0, size - len(request("")))
    wire = masked_frame(request(text))
    if chunk is None or len(wire) > 20_000:
        connection.dataReceived(wire)
    else:
        for start in range(0, len(wire), chunk):
            connection.dataReceived(wire[start : start + chunk])
    gateway.flush()
    assert client.received[-1] == {"jsonrpc": "2.0", "result": {"t": text}, "id": 1}


def test_fragmented_message_and_control_frames_between_fragments(make_memory_gateway):
    """Continuation frames join, and a ping between them is answered unmasked."""
    gateway = echo_gateway(make_memory_gateway)
    client = gateway.open()
    pongs = []
    client.onPong = pongs.append
    connection = server_side(gateway)
    payload = request("ü" * 700, id=7)
    connection.dataReceived(masked_frame(payload[:333], fin=False))
    connection.dataReceived(masked_frame(b"are you there", opcode=0x9))
    connection.dataReceived(masked_frame(payload[333:1111], opcode=0x0, fin=False))
    connection.dataReceived(masked_frame(payload[1111:], opcode=0x0))
    gateway.flush()
    assert pongs == [b"are you there"]
    assert client.received[-1]["result"] == {"t": "ü" * 700}


def test_close_frame_reason_is_unmasked(make_memory_gateway):
    """A client's close frame (code and reason) is read through the new unmasking."""
    gateway = echo_gateway(make_memory_gateway)
    client = gateway.open()
    connection = server_side(gateway)
    connection.dataReceived(masked_frame(struct.pack("!H", 4321) + b"bye", 0x8))
    gateway.flush()
    assert connection.remoteCloseCode == 4321
    assert connection.remoteCloseReason == "bye"
    assert client.closed


def test_invalid_utf8_is_still_refused_1007(make_memory_gateway):
    """Text frames are still validated as UTF-8 after unmasking."""
    gateway = echo_gateway(make_memory_gateway)
    client = gateway.open()
    server_side(gateway).dataReceived(masked_frame(b'{"a": "\xff"}'))
    gateway.flush()
    assert client.close_code == 1007  # invalid frame payload data


def test_message_listeners_still_get_every_message(memory_gateway):
    """Autobahn's ``on("message")`` event fires as before when someone listens."""
    client = memory_gateway.open()
    connection = server_side(memory_gateway)
    heard = []
    connection.on("message", lambda payload, is_binary: heard.append(payload))
    response = memory_gateway.call(client, "sys.ping", {})
    assert "result" in response
    assert len(heard) == 1 and b"sys.ping" in heard[0]


def test_autobahn_options_still_come_from_the_factory(memory_gateway):
    """Every Autobahn option is copied from the factory, masking excepted."""
    memory_gateway.open()
    connection = server_side(memory_gateway)
    factory = memory_gateway.gateway.factory
    names = WebSocketServerProtocol.CONFIG_ATTRS
    assert names, "Autobahn's list of options is where it was"
    for name in names:
        if name != "applyMask":
            assert getattr(connection, name) == getattr(factory, name), name
    assert connection.applyMask is False and factory.applyMask is True


def test_options_live_on_the_factorys_protocol_class(memory_gateway):
    """Options are held once per factory, not in every connection's __dict__."""
    factory = memory_gateway.gateway.factory
    memory_gateway.open("alice")
    first = server_side(memory_gateway)
    assert not set(WebSocketServerProtocol.CONFIG_ATTRS) & set(vars(first))
    factory.setProtocolOptions(maxFramePayloadSize=1234)
    memory_gateway.open("bob")
    (second,) = factory.connections - {first}
    assert second.maxFramePayloadSize == 1234
    assert first.maxFramePayloadSize == memory_gateway.config.limits.max_message_bytes


def test_upgrade_leaves_no_reference_cycle(memory_gateway):
    """The HTTP channel and request go once the upgrade is done, without gc."""

    def live_channels():
        # type() rather than isinstance(): gc also lists weak proxies, and
        # isinstance() on one whose referent has died raises ReferenceError.
        return [o for o in gc.get_objects() if issubclass(type(o), HTTPChannel)]

    def new_channels():
        return [o for o in live_channels() if id(o) not in before]

    before = {id(o) for o in live_channels()}
    client = memory_gateway.connect("alice")
    assert len(new_channels()) == 1
    # The test kit's pump keeps the protocol it was first given (the HTTP
    # channel's); a real transport lets go of it at the hand-over.
    memory_gateway.pumps[-1].server = None
    gc.disable()
    try:
        memory_gateway.flush()
        assert client.opened
        assert new_channels() == []
    finally:
        gc.enable()


def test_hmac_secret_is_not_prepared_again_per_token(memory_gateway, monkeypatch):
    """PyJWT's per-token key checks (PEM, SSH, DER, JSON) run once, at startup."""
    from jwt.algorithms import HMACAlgorithm

    calls = []
    original = HMACAlgorithm.prepare_key

    def counting(self, key):
        calls.append(key)
        return original(self, key)

    tokens = [memory_gateway.token(name) for name in ("alice", "bob", "carol")]
    monkeypatch.setattr(HMACAlgorithm, "prepare_key", counting)
    for token in tokens:
        assert memory_gateway.open(None, token=token).opened
    assert calls == []


def test_hmac_key_other_than_the_prepared_one_is_still_checked():
    """Only the very secret prepared at startup skips PyJWT's key checks."""
    import hashlib

    from jwt.exceptions import InvalidKeyError

    from rtgateway.auth import _PreparedHMAC

    prepared = b"a-secret-of-at-least-32-bytes-long!!"
    algorithm = _PreparedHMAC(hashlib.sha256, prepared)
    assert algorithm.prepare_key(prepared) is prepared
    with pytest.raises(InvalidKeyError):
        algorithm.prepare_key(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
        )


def exposition(registry) -> list[str]:
    """Both text formats, with creation times made comparable."""
    texts = [generate_latest(registry), generate_openmetrics(registry)]
    return [
        re.sub(r"_created(\{[^}]*\})? \S+", r"_created\1 T", t.decode()) for t in texts
    ]


def test_fast_metrics_expose_exactly_what_prometheus_client_would():
    """Names, types, labels, buckets and values match prometheus_client's own."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    doc = "A counter."
    fast = FastCounter("t_messages", doc, ["method"], registry=ours)
    slow = Counter("t_messages", doc, ["method"], registry=theirs)
    fast_plain = FastCounter("t_bytes", "Bytes.", registry=ours)
    slow_plain = Counter("t_bytes", "Bytes.", registry=theirs)
    fast_hist = FastHistogram(
        "t_latency_seconds", "L.", ["method"], buckets=LATENCY_BUCKETS, registry=ours
    )
    slow_hist = Histogram(
        "t_latency_seconds", "L.", ["method"], buckets=LATENCY_BUCKETS, registry=theirs
    )
    assert exposition(ours) == exposition(theirs)
    for method, count in (("a", 3), ("b", 1), ("c", 0)):
        fast.labels(method)
        slow.labels(method)
        for _ in range(count):
            fast.labels(method).inc()
            slow.labels(method).inc()
    fast_plain.inc(1234)
    slow_plain.inc(1234)
    # Every bound exactly, just above each, zero, and past the last bucket.
    samples = [0.0, 3.0, 1e-9] + [b for b in LATENCY_BUCKETS]
    samples += [b * 1.000001 for b in LATENCY_BUCKETS]
    for i, value in enumerate(samples):
        label = "x" if i % 3 else "y"
        fast_hist.labels(label).observe(value)
        slow_hist.labels(label).observe(value)
    fast_hist.labels("unused")
    slow_hist.labels("unused")
    assert exposition(ours) == exposition(theirs)


def test_gateway_metrics_are_exact_over_many_messages(make_memory_gateway):
    """Counts, bytes, errors and latency observations add up to what was sent."""
    gateway = make_memory_gateway({"limits": {"rate_burst": 10_000}})
    client = gateway.open()
    registry = gateway.gateway.metrics.registry
    value = registry.get_sample_value
    bytes_in_before = value("rtgateway_bytes_in_total")
    sent = 0
    for i in range(250):
        payload = orjson.dumps(
            {"jsonrpc": "2.0", "method": "sys.ping", "params": {}, "id": i}
        )
        sent += len(payload)
        client.sendMessage(payload, False)
    for i in range(40):
        payload = orjson.dumps({"jsonrpc": "2.0", "method": "no.such", "id": i})
        sent += len(payload)
        client.sendMessage(payload, False)
    gateway.flush()
    assert value("rtgateway_messages_in_total", {"method": "sys.ping"}) == 250
    assert value("rtgateway_messages_out_total", {"method": "sys.ping"}) == 250
    assert value("rtgateway_messages_in_total", {"method": "unknown"}) == 40
    assert value("rtgateway_errors_total", {"code": "-32601"}) == 40
    assert value("rtgateway_bytes_in_total") - bytes_in_before == sent
    latency = {"method": "sys.ping"}
    assert value("rtgateway_call_latency_seconds_count", latency) == 250
    assert (
        value("rtgateway_call_latency_seconds_bucket", {**latency, "le": "+Inf"}) == 250
    )
    connection = server_side(gateway)
    assert value("rtgateway_bytes_out_total") == connection.bytes_out


def test_gateway_settles_the_gc_only_in_a_process_of_its_own():
    """Under twistd the gateway tunes the gc once started; in a test, never."""
    from twisted.application.service import Application
    from twisted.internet.task import Clock

    from rtgateway.app import GC_THRESHOLDS, Gateway
    from rtgateway.backends.memory import MemoryBackends
    from rtgateway.testing import make_config

    thresholds = gc.get_threshold()
    frozen = gc.get_freeze_count()
    clock = Clock()
    plain = Gateway(make_config(), clock, listen=False, backends=MemoryBackends(clock))
    plain.startService()
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == frozen
    plain.stopService()
    owned = Gateway(make_config(), clock, listen=False, backends=MemoryBackends(clock))
    owned.setServiceParent(Application("rtgateway"))
    assert gc.get_freeze_count() == frozen
    try:
        owned.startService()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > frozen + 1000
    finally:
        owned.stopService()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
