"""What a process has used, read from /proc: CPU time, resident memory, files;
and the open-files limit every benchmark process works under.

Read from outside the process, so measuring a server costs the server
nothing and needs no cooperation from it.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; the fields after it are fixed.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def process_cpu_seconds() -> float:
    """User + system CPU seconds this process has used so far."""
    times = os.times()
    return times.user + times.system


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_files(pid: int) -> int:
    """File descriptors process ``pid`` holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def open_files_limit() -> int:
    """The open-files limit this process and the ones it starts have."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_files_limit() -> None:
    """Lift the soft open-files limit to the hard one, for every process the
    benchmark starts: a common soft limit of 1,024 would fail long before
    the connection counts measured here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        # An unlimited hard limit cannot be the soft one; keep what there is.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pin(pid: int, cpus: set[int]) -> None:
    """Run every thread of process ``pid`` on ``cpus`` only (threads it
    starts later inherit the set)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), cpus)


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(the server's CPUs, the load's): the first usable CPU, and the rest;
    None on a machine with only one."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    return {usable[0]}, set(usable[1:])


#: The columns of a CPU's line in /proc/stat, in order.
_CORE_COLUMNS = (
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
)


def core_ticks() -> dict[int, dict[str, int]]:
    """Per CPU, the clock ticks spent so far in each state of /proc/stat."""
    cores = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name != "cpu":
            values = [int(v) for v in rest.split()[: len(_CORE_COLUMNS)]]
            cores[int(name[3:])] = dict(zip(_CORE_COLUMNS, values, strict=False))
    return cores


def core_usage(
    before: dict[int, dict[str, int]], after: dict[int, dict[str, int]], cpus: set[int]
) -> dict[str, float]:
    """Over ``cpus`` between two :func:`core_ticks`: the share of the time
    they were busy (user, system, interrupts), idle, and stolen by the
    hypervisor (a virtual machine's CPUs may not get all their time)."""
    spent = {column: 0 for column in _CORE_COLUMNS}
    for cpu in cpus:
        for column in _CORE_COLUMNS:
            spent[column] += after[cpu][column] - before[cpu][column]
    total = sum(spent.values()) or 1
    busy = sum(spent[c] for c in ("user", "nice", "system", "irq", "softirq"))
    return {
        "busy": busy / total,
        "interrupts": (spent["irq"] + spent["softirq"]) / total,
        "idle": (spent["idle"] + spent["iowait"]) / total,
        "steal": spent["steal"] / total,
    }
