"""A backend server (Redis, NATS) as a child process, for the failure tests.

:class:`ServerProcess` holds what every such server shares: a free
loopback port, a temporary directory for its files and log, a start that
returns once the server answers, and the faults the tests inject: stop
(SIGTERM), kill (SIGKILL, a crash), pause (SIGSTOP, a server that no
longer answers), resume and restart on the same port. Subclasses say how
the server is started and how it shows it is ready. Every wait is bounded.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from rtgateway.testing.process import free_port


class ServerProcess:
    """One server child process on 127.0.0.1; subclasses name and start it."""

    #: The server's name in errors ("redis-server").
    name = "server"

    def __init__(self, binary: str, log_name: str) -> None:
        self.binary = binary
        self.port = free_port()
        self._directory = tempfile.TemporaryDirectory(prefix=f"rtgw-{self.name}-")
        self.directory = Path(self._directory.name)
        self.log_path = self.directory / log_name
        self.process: subprocess.Popen[bytes] | None = None

    def arguments(self) -> list[str]:
        """The command line that starts the server."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the server answers on its port."""
        raise NotImplementedError

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and return once it is :meth:`ready`."""
        self.process = subprocess.Popen(
            self.arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()}")
            if self.ready():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{self.name} did not answer:\n{self.log()}")

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

    def restart(self, timeout: float = 10.0) -> Self:
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
