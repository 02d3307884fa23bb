"""What a trace shows of one frame: redacted, cut, never its own pushes."""

from __future__ import annotations

import orjson

from rtgateway.gateway.trace import describe, redact
from rtgateway.wire.codecs import CBOR, JSON


def test_every_credential_member_is_redacted_at_any_depth():
    """token, access_token and resume_token are replaced wherever they sit."""
    welcome = {
        "method": "session.welcome",
        "params": {"session_id": "s1", "resume_token": "secret-1"},
    }
    batch = [{"params": {"nested": [{"access_token": "secret-2"}]}}, welcome]
    shown = redact(batch)
    assert "secret" not in repr(shown)
    assert shown[1]["params"] == {"session_id": "s1", "resume_token": "[redacted]"}
    assert shown[0]["params"]["nested"] == [{"access_token": "[redacted]"}]


def test_a_string_shaped_like_a_jwt_is_redacted():
    """A JWT in any string value is hidden, other strings are kept."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    assert redact({"say": f"my token is {jwt}", "ok": "hello"}) == {
        "say": "[redacted]",
        "ok": "hello",
    }


def test_describe_shows_method_size_time_and_the_document():
    """A frame within the bound is shown whole, as its decoded document."""
    payload = orjson.dumps({"jsonrpc": "2.0", "method": "sys.ping", "id": 3})
    record = describe(JSON, "in", payload, 1234, 4096)
    assert record == {
        "direction": "in",
        "method": "sys.ping",
        "size": len(payload),
        "time_ms": 1234,
        "frame": {"jsonrpc": "2.0", "method": "sys.ping", "id": 3},
    }


def test_describe_cuts_long_frames_at_a_character_boundary():
    """Past the bound the JSON text is cut, never inside a UTF-8 character."""
    payload = orjson.dumps({"method": "chat", "params": {"text": "é" * 100}})
    record = describe(JSON, "in", payload, 0, 41)
    assert record is not None and record["truncated"] is True
    assert len(record["frame"].encode()) <= 41
    assert record["frame"].startswith('{"method":"chat"')


def test_describe_never_shows_the_traces_own_pushes():
    """admin.frame and admin.trace_ended going out are not traced (no loops)."""
    push = orjson.dumps({"jsonrpc": "2.0", "method": "admin.frame", "params": {}})
    assert describe(JSON, "out", push, 0, 4096) is None
    assert describe(JSON, "in", push, 0, 4096) is not None


def test_undecodable_frames_show_nothing_of_their_bytes():
    """Garbage cannot be redacted, so none of it is shown."""
    record = describe(JSON, "in", b'{"token": "secret', 0, 4096)
    assert record is not None
    assert record["frame"] is None and record["undecodable"] is True


def test_cbor_frames_are_shown_as_json():
    """A CBOR frame is shown as the same document, in JSON."""
    payload = CBOR.encode({"method": "m", "params": {"n": 1, "resume_token": "t"}})
    record = describe(CBOR, "in", payload, 0, 4096)
    assert record is not None
    assert record["frame"] == {
        "method": "m",
        "params": {"n": 1, "resume_token": "[redacted]"},
    }


def test_describe_bounds_and_redacts_the_method():
    """A method is no way past the bound or the redaction: cut, JWTs hidden."""
    huge = orjson.dumps({"jsonrpc": "2.0", "method": "m" * 60_000, "id": 1})
    record = describe(JSON, "in", huge, 0, 4096)
    assert record is not None and record["method"] == "m" * 128
    assert len(orjson.dumps(record)) < 4096 + 512
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0." + "c" * 200
    leaky = orjson.dumps({"jsonrpc": "2.0", "method": jwt, "id": 2})
    record = describe(JSON, "in", leaky, 0, 4096)
    assert record is not None and record["method"] == "[redacted]"
    assert jwt not in orjson.dumps(record).decode()
