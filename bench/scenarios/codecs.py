"""Scenario ``codecs``: encoding and decoding typical messages, in process.

Every message the gateway handles is decoded once and answered with one
encode, so the codec's cost is a floor under the per-message figures of
``rpc``. This measures orjson (the gateway's JSON library), the standard
library's json and cbor2 on the messages the protocol carries most, and
also the gateway's own codec objects (:mod:`rtgateway.wire.codecs`), whose
decoders add the checks that keep hostile input out (depth, tags, the JSON
data model): the difference between ``cbor2`` and ``rtgw-cbor`` is what
those checks cost. No server and no load process: a micro-benchmark.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import orjson

from bench.report import case_result
from rtgateway.wire.codecs import CBOR, JSON

SUMMARY = "encode/decode of typical messages: orjson, json, cbor2, rtgateway codecs"
DEFAULT_DURATION = 0.3

#: The messages the gateway sees most: a call, its answer, a game event and
#: a state delta with ten moving entities.
MESSAGES: dict[str, Any] = {
    "sys.ping request": {
        "jsonrpc": "2.0",
        "method": "sys.ping",
        "params": {},
        "id": 42,
    },
    "sys.ping response": {
        "jsonrpc": "2.0",
        "result": {"server_time_ms": 1795641481608},
        "id": 42,
    },
    "game event": {
        "jsonrpc": "2.0",
        "method": "match.hit",
        "params": {
            "topic": "match.m-1042",
            "data": {
                "attacker": "p123",
                "target": "p456",
                "damage": 12,
                "position": [1034.5, 22.25, -7.0],
                "weapon": "rifle",
            },
            "ts_ms": 1795641481608,
            "offset": 1234,
            "epoch": "e-7f3a",
            "from": "p123",
        },
    },
    "state.delta, 10 entities": {
        "jsonrpc": "2.0",
        "method": "state.delta",
        "params": {
            "zone": "arena-1",
            "tick": 9001,
            "base_tick": 9000,
            "changed": {
                f"player.p{i}": {
                    "v": 300 + i,
                    "fields": {"pos": [120 + i, 4500 - i, 0], "rot": 17 * i},
                }
                for i in range(10)
            },
            "removed": [],
        },
    },
}


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


#: name -> (encode, decode); orjson is the reference the others are divided by.
CODECS: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "orjson": (orjson.dumps, orjson.loads),
    "json": (_stdlib_dumps, json.loads),
    "cbor2": (cbor2.dumps, cbor2.loads),
    "rtgw-json": (JSON.encode, JSON.decode),
    "rtgw-cbor": (CBOR.encode, CBOR.decode),
}

FIGURES = {
    "encode_ns": "encode ns",
    "decode_ns": "decode ns",
    "size_bytes": "size bytes",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones (``--duration``: seconds per timing)."""


def _ns_per_call(
    function: Callable[[Any], Any], argument: Any, seconds: float
) -> float:
    """Nanoseconds per call, timed over about ``seconds`` (bounded count)."""
    timer = timeit.Timer(lambda: function(argument))
    estimate = timer.timeit(100) / 100  # also warms the caches
    number = max(1, min(10_000_000, int(seconds / max(estimate, 1e-9))))
    return timer.timeit(number) / number * 1e9


def measure(message: Any, encode: Callable, decode: Callable, seconds: float):
    """Encode and decode cost of one message with one codec, and its size."""
    payload = encode(message)
    if decode(payload) != message:
        raise RuntimeError("a codec did not round-trip a benchmark message")
    return {
        "encode_ns": _ns_per_call(encode, message, seconds),
        "decode_ns": _ns_per_call(decode, payload, seconds),
        "size_bytes": float(len(payload)),
    }


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every message with every codec, ``--runs`` times."""
    seconds = options.duration or (0.01 if options.tiny else DEFAULT_DURATION)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {codec: [] for codec in CODECS} for name in MESSAGES
    }
    for number in range(options.runs):
        print(f"run {number + 1}/{options.runs}", flush=True)
        for name, message in MESSAGES.items():
            for codec, (encode, decode) in CODECS.items():
                runs[name][codec].append(measure(message, encode, decode, seconds))
    return {
        "cases": [
            case_result(name, FIGURES, runs[name], reference="orjson")
            for name in MESSAGES
        ],
        "notes": [
            f"about {seconds:g} s per timing, in this one process; "
            "ratio = codec / orjson",
            "rtgw-json and rtgw-cbor are the gateway's codec objects: decode "
            "includes its data-model and depth checks",
        ],
    }
