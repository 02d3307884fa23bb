"""The machine and software a result was measured on, recorded with it.

A figure without its machine cannot be compared with another; every JSON
result and docs/benchmarks.rst carry this description.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.procstat import open_files_limit

_PACKAGES = ("Twisted", "autobahn", "websockets", "uvloop", "orjson", "cbor2")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _revision() -> str | None:
    """The commit of the gateway measured, ``-dirty`` with local changes."""
    try:
        completed = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None


def describe() -> dict[str, object]:
    """Cores, CPU model, memory, limits, kernel, Python, library versions and
    the gateway's commit."""
    return {
        "revision": _revision(),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "open_files_limit": open_files_limit(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in _PACKAGES},
    }


def one_line(machine: dict[str, object]) -> str:
    """The description as one line, for the head of a printed table."""
    packages = ", ".join(
        f"{name} {version}"
        for name, version in machine["packages"].items()
        if version is not None
    )
    return (
        f"rtgateway {machine['revision']} on {machine['cores']} cores "
        f"({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"{machine['python']}; {packages}"
    )
