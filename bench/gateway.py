"""The gateway under test: a real ``twistd -n rtgateway`` process, tuned to
measure the gateway's work rather than its limits.

The rate limit, abuse detector and connection caps exist to protect a
gateway from clients; a benchmark that hit them would measure refusals.
They are raised out of reach here, and nothing else is changed: heartbeats,
logging and metrics stay at their defaults, as an operator would run them.

:class:`BenchCluster` is the target of the scenarios that compare one
gateway with a cluster: one gateway on the memory backend, or several
sharing one real ``redis-server``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.baseline import LISTEN_BACKLOG, REPO_ROOT
from bench.procstat import cpu_seconds
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
        name: str | None = None,
    ) -> None:
        sections = {"limits": dict(BENCH_LIMITS)}
        for section, keys in (overrides or {}).items():
            sections.setdefault(section, {}).update(keys)
        super().__init__(
            directory,
            sections,
            name=name or f"gw-{reactor}",
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

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once ``/readyz`` says 200 (on Redis: once it is reached)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready in {timeout} s:\n{self.log()}")

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


class BenchCluster:
    """One gateway on the memory backend, or ``gateways`` sharing one Redis.

    Every gateway gets the same ``overrides`` (and, on Redis, the server's
    URL); ``urls`` lists them in order, so load plans can spread their
    connections over them. ``bus = "nats"`` starts a nats-server too and
    makes it the bus between the gateways. :meth:`cpu_seconds` reads every
    process of the cluster (gateways, redis-server, nats-server) for CPU
    accounting.
    """

    def __init__(
        self,
        directory: Path,
        *,
        backend: str = "memory",
        gateways: int = 1,
        reactor: str = "epoll",
        overrides: dict[str, dict[str, Any]] | None = None,
        bus: str = "redis",
    ) -> None:
        if backend not in ("memory", "redis"):
            raise ValueError(f"unknown backend {backend!r}")
        if bus not in ("redis", "nats") or (bus == "nats" and backend != "redis"):
            raise ValueError(f"bus {bus!r} on backend {backend!r}")
        self.bus = bus
        self.nats: Any = None
        if backend == "memory" and gateways != 1:
            raise ValueError("memory backends are not shared between processes")
        self.backend = backend
        self._directory = directory
        self._reactor = reactor
        self._overrides = overrides or {}
        self._count = gateways
        self.redis: Any = None
        self.gateways: list[BenchGateway] = []

    def start(self) -> BenchCluster:
        """Start Redis (if any) and the gateways; stop all if one fails."""
        overrides = {k: dict(v) for k, v in self._overrides.items()}
        try:
            if self.backend == "redis":
                from rtgateway.testing.redis import RedisServer

                self.redis = RedisServer().start()
                overrides.setdefault("backend", {}).update(
                    {"kind": "redis", "redis_url": self.redis.url}
                )
            if self.bus == "nats":
                from rtgateway.testing.nats import NatsServer

                self.nats = NatsServer().start()
                overrides["backend"].update(bus="nats", nats_url=[self.nats.url])
            for index in range(self._count):
                gateway = BenchGateway(
                    self._directory,
                    reactor=self._reactor,
                    overrides=overrides,
                    name=f"gw{index + 1}-{self.backend}-{os.getpid()}-{id(self)}",
                )
                self.gateways.append(gateway)
                gateway.start()
                gateway.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        if self.redis is not None:
            self.redis.close()
            self.redis = None
        if self.nats is not None:
            self.nats.close()
            self.nats = None

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(gateway.url for gateway in self.gateways)

    @property
    def secret(self) -> str:
        return self.gateways[0].secret

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far: ``gateways`` (summed), ``redis`` and ``nats``."""
        used = {"gateways": sum(cpu_seconds(g.pid) for g in self.gateways)}
        if self.redis is not None:
            used["redis"] = cpu_seconds(self.redis.process.pid)
        if self.nats is not None:
            used["nats"] = cpu_seconds(self.nats.process.pid)
        return used

    def __enter__(self) -> BenchCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
