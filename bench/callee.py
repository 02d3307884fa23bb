"""A backend service for the ``services`` scenario: the callee of a routed
procedure, as small as a service can be.

It connects to one gateway with a ``service`` token, registers one
procedure with ``rpc.register`` and answers every call with an empty
result, in the order the calls came (the load generator matches responses
by position). So what the scenario measures is the gateway's routing (the
call to the callee, its response back to the player, the bus between two
gateways), plus one JSON decode and encode here.

Run as ``python -m bench.callee URL TOKEN PROCEDURE``; it prints ``ready``
once the registration is answered, and exits when its standard input
closes (its parent went away) or after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import subprocess
import sys
from typing import Any

import orjson

#: How long ``start`` waits for ``ready``.
START_TIMEOUT_S = 30.0


async def serve(url: str, token: str, procedure: str, lifetime_s: float) -> None:
    """Register ``procedure`` and answer its calls until told to stop."""
    from websockets.asyncio.client import connect

    async with connect(
        url,
        subprotocols=["rtgw.v1.json"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
        compression=None,
    ) as ws:
        await ws.recv()  # session.welcome
        await ws.send(
            orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "rpc.register",
                    "params": {"procedure": procedure},
                    "id": 0,
                }
            ).decode()
        )
        while True:
            answer = orjson.loads(await ws.recv())
            if answer.get("id") == 0 and "method" not in answer:
                if "error" in answer:
                    raise RuntimeError(f"rpc.register failed: {answer['error']}")
                break
        print("ready", flush=True)
        stop = asyncio.get_running_loop().create_future()
        _stop_when_stdin_closes(stop)
        answering = asyncio.ensure_future(_answer(ws))
        await asyncio.wait(
            [answering, stop], timeout=lifetime_s, return_when="FIRST_COMPLETED"
        )
        answering.cancel()


async def _answer(ws: Any) -> None:
    async for message in ws:
        call = orjson.loads(message)
        if "method" in call and "id" in call:
            await ws.send(
                orjson.dumps(
                    {"jsonrpc": "2.0", "result": {}, "id": call["id"]}
                ).decode()  # a text frame, as the JSON subprotocol wants
            )


def _stop_when_stdin_closes(stop: asyncio.Future[None]) -> None:
    loop = asyncio.get_running_loop()

    def readable() -> None:
        if not sys.stdin.buffer.read1(4096):
            loop.remove_reader(sys.stdin.fileno())
            if not stop.done():
                stop.set_result(None)

    loop.add_reader(sys.stdin.fileno(), readable)


class Callee:
    """The callee process of one benchmark case; a context manager."""

    def __init__(self, url: str, token: str, procedure: str, lifetime_s: float) -> None:
        self._command = [
            sys.executable,
            "-m",
            "bench.callee",
            url,
            token,
            procedure,
            "--lifetime",
            str(lifetime_s),
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Callee:
        self._process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._process.stdout is not None
        line = _readline(self._process, START_TIMEOUT_S)
        if line.strip() != b"ready":
            self.__exit__()
            raise RuntimeError(f"the callee did not start: {line!r}")
        return self

    def __exit__(self, *_: object) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _readline(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first line the process prints, or b'' if it prints none in time."""
    import select

    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline() if ready else b""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.callee")
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("procedure")
    parser.add_argument("--lifetime", type=float, default=600.0)
    options = parser.parse_args()
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(
            serve(options.url, options.token, options.procedure, options.lifetime)
        )
    else:
        asyncio.run(
            serve(options.url, options.token, options.procedure, options.lifetime)
        )


if __name__ == "__main__":
    main()
