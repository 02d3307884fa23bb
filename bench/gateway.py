"""The gateway under test: a real ``twistd -n rtgateway`` process, tuned to
measure the gateway's work rather than its limits.

The rate limit, abuse detector and connection caps exist to protect a
gateway from clients; a benchmark that hit them would measure refusals.
They are raised out of reach here, and nothing else is changed: heartbeats,
logging and metrics stay at their defaults, as an operator would run them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.baseline import LISTEN_BACKLOG, REPO_ROOT
from rtgateway.testing.process import GatewayProcess, write_config

#: Limits that never bind under benchmark load.
BENCH_LIMITS: dict[str, Any] = {
    "rate_per_second": 10**9,
    "rate_burst": 10**9,
    "abuse_rejections": 10**9,
    "max_connections": 10**6,
    "max_connections_per_ip": 10**6,
}


class BenchGateway(GatewayProcess):
    """A gateway process on a chosen reactor, with the benchmark's limits.

    :class:`GatewayProcess` always runs the ``twistd`` script, which cannot
    install uvloop; this starts ``python -m bench.twistd REACTOR`` instead,
    which is twistd after installing the reactor.
    """

    def __init__(
        self,
        directory: Path,
        *,
        reactor: str = "epoll",
        overrides: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        sections = {"limits": dict(BENCH_LIMITS)}
        for section, keys in (overrides or {}).items():
            sections.setdefault(section, {}).update(keys)
        super().__init__(
            directory,
            sections,
            name=f"gw-{reactor}",
            env={"PYTHONPATH": str(REPO_ROOT)},
        )
        self.reactor = reactor
        self.sections["gateway"]["listen"] += f":backlog={LISTEN_BACKLOG}"
        write_config(self.config_path, self.sections)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def secret(self) -> str:
        """The configured JWT secret: load processes mint their tokens with it."""
        return self.sections["auth"]["secret"]

    def start(self, timeout: float = 30.0) -> BenchGateway:
        """Start the process and return once ``/healthz`` answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.twistd",
                    self.reactor,
                    "-n",
                    "--pidfile=",
                    "rtgateway",
                    "--config",
                    str(self.config_path),
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self._env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited at start:\n{self.log()}")
            try:
                self.get("/healthz")
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not become healthy:\n{self.log()}")
