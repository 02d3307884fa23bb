"""Real gateway processes for integration tests and benchmarks.

:class:`GatewayProcess` writes a TOML configuration, starts
``twistd -n rtgateway --config ...`` exactly as an operator would, waits for
``/healthz`` and stops the process with the signal a test asks for. Every
wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rtgateway.testing.memory import TEST_SECRET

TWISTD = str(Path(sys.executable).with_name("twistd"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value: Any) -> str:
    """TOML for the scalars and lists a gateway configuration uses."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write ``sections`` (section -> key -> value) as a TOML file."""
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines.extend(
            f"{json.dumps(key)} = {toml_value(value)}" for key, value in keys.items()
        )
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class GatewayProcess:
    """One ``twistd -n rtgateway`` child process on a free loopback port."""

    def __init__(
        self,
        directory: Path,
        overrides: dict[str, dict[str, Any]] | None = None,
        *,
        name: str = "gw",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        sections: dict[str, dict[str, Any]] = {
            "gateway": {
                "id": name,
                "listen": f"tcp:port={self.port}:interface=127.0.0.1",
            },
            "auth": {"secret": TEST_SECRET},
        }
        for section, keys in (overrides or {}).items():
            sections.setdefault(section, {}).update(keys)
        self.sections = sections
        self.config_path = write_config(directory / f"{name}.toml", sections)
        self.log_path = directory / f"{name}.log"
        self._env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return (
            f"ws://127.0.0.1:{self.port}{self.sections['gateway'].get('path', '/ws')}"
        )

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        """Start the process and return once ``/readyz`` says it is ready."""
        env = {**os.environ, **(self._env or {})}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    TWISTD,
                    "-n",
                    "--pidfile=",
                    "rtgateway",
                    "--config",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited at start:\n{self.log()}")
            try:
                if self.get("/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not become healthy:\n{self.log()}")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET an HTTP path of the gateway: (status, body)."""
        try:
            with urllib.request.urlopen(self.http + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample from ``/metrics`` (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        _, body = self.get("/metrics")
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if (
                    sample.name == name
                    and (labels or {}).items() <= sample.labels.items()
                ):
                    return sample.value
        return 0.0

    @property
    def started(self) -> subprocess.Popen[bytes]:
        """The gateway's process; RuntimeError before :meth:`start`."""
        if self.process is None:
            raise RuntimeError("the gateway process was not started")
        return self.process

    def rss_bytes(self) -> int:
        """The process's resident memory, from /proc."""
        status = Path(f"/proc/{self.started.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def signal(self, signum: int) -> None:
        self.started.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        return self.started.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL what does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )


class GatewayFleet:
    """The gateway processes one test starts, all stopped when it ends.

    :meth:`stop` fails when a gateway's log holds a traceback: an uncaught
    error in any gateway is a bug even where the test's own checks passed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[GatewayProcess] = []

    def start(
        self, sections: dict[str, dict[str, Any]] | None = None, name: str = "gw"
    ) -> GatewayProcess:
        """A started gateway of these config sections, named ``name``."""
        process = GatewayProcess(self.directory, sections, name=name).start()
        self.started.append(process)
        return process

    def stop(self) -> None:
        """Stop every gateway; raise AssertionError for a traceback in a log."""
        started, self.started = self.started, []
        for process in started:
            process.stop()
        for process in started:
            log = process.log()
            if "Traceback" in log:
                raise AssertionError(f"a traceback in {process.log_path}:\n{log}")
