"""Scenario ``soak``: a steady mix of everything for many minutes; does the
gateway hold still?

One gateway on the memory backend (``--cluster``: two sharing one Redis)
carries, for ``--minutes`` (default 10), the traffic of
:mod:`bench.soak_load` at a modest rate that leaves the machine idle most
of the time: about 290 connections, 20 new ones a second each living 4 s
(half end their session, half drop the connection and leave it detached
until the resume window ends), 2 resumes a second (drop, 1 s away, back on
the next gateway with ``session.resume``), 20 reliable publications a
second checked at 140 receivers, 10 presence changes a second, 30 players
walking in a 20 Hz state zone at 10 inputs a second, one of them leaving
and joining again every second. The resume window is 30 s
(``--resume-window-s``), so that detached sessions expire all along.

Every minute (``--minute-s``) the gateway is read from outside: resident
memory and open files from ``/proc``, delayed calls
(``rtgateway_reactor_delayed_calls``) and connections from ``/metrics``,
CPU from ``/proc``; the load reports what it did and what went wrong:
failed calls, unexpected closes, and the completeness of the publications
acknowledged in the minute (each owed once to every receiver; missing and
repeated deliveries counted). A line per minute is printed as it comes.
The gateway is also read before the load starts and after it stopped and
the resume window ran out: what a gateway holds for nobody is a leak.

The table summarises each run (``--runs``, default 1 here: a soak is long):
the RSS slope is a least-squares fit over the minutes after the first (the
allocator's warm-up), and again over the last half of the minutes, where a
gateway that only warmed up levels off and a leak keeps climbing; the
figures per minute are in the JSON results (``minutes``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from bench import soak_load, topics
from bench.gateway import BenchCluster, BenchGateway
from bench.loadgen import LoadGenerators, plans
from bench.procstat import cpu_seconds, open_files, rss_bytes
from bench.report import case_result, number

SUMMARY = (
    "a long steady mix (churn, resumes, reliable publications, presence, a "
    "state zone): RSS slope, open files, delayed calls, errors and delivery "
    "completeness per minute"
)
DEFAULT_MINUTES = 10
TINY_MINUTES = 2
MINUTE_S = 60.0
TINY_MINUTE_S = 5.0
RESUME_WINDOW_S = 30.0
TINY_RESUME_WINDOW_S = 3.0
#: After the resume window, time for the expiries to run and be reaped.
EXPIRY_MARGIN_S = 5.0
SETUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 150.0
MIB = 2**20

GATEWAY_FIGURES = {
    "rss_before_mb": "RSS before load MB",
    "rss_first_mb": "RSS minute 1 MB",
    "rss_last_mb": "RSS last minute MB",
    "rss_slope_mb_per_min": "RSS slope MB/min",
    "rss_late_slope_mb_per_min": "RSS slope, last half, MB/min",
    "rss_after_mb": "RSS after load MB",
    "fds_before": "open files before load",
    "fds_max": "open files, most in a minute",
    "fds_after": "open files after load",
    "delayed_before": "delayed calls before load",
    "delayed_max": "delayed calls, most in a minute",
    "delayed_after": "delayed calls after load",
    "connections": "connections (median minute)",
    "cpu_cores": "gateway CPU cores (median minute)",
}
LOAD_FIGURES = {
    "churn_opened": "connections churned",
    "resumes": "sessions resumed",
    "published": "publications acknowledged",
    "owed": "deliveries owed",
    "complete_pct": "delivered exactly once %",
    "missing": "deliveries missing",
    "repeated": "deliveries repeated",
    "failed_calls": "failed calls",
    "unexpected_closes": "unexpected closes",
    "connect_failures": "failed connects",
    "presence_sets": "presence changes",
    "rejoins": "zone leaves and joins",
    "state_inputs": "state inputs",
}
#: Counts the load reports at each mark, summed over the soak.
COUNTS = (
    *(key for key in LOAD_FIGURES if key != "complete_pct"),
    "presence_changes",
    "state_messages",
    "stray_events",
    "churn_closed",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--minutes",
        type=int,
        default=None,
        help=f"minutes of load (default {DEFAULT_MINUTES}; --tiny {TINY_MINUTES})",
    )
    parser.add_argument(
        "--minute-s",
        type=float,
        default=None,
        help=f"seconds per reported minute (default {MINUTE_S:g}; --tiny "
        f"{TINY_MINUTE_S:g})",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="two gateways sharing one Redis"
    )
    parser.add_argument(
        "--churn-per-s",
        type=float,
        default=None,
        help="new connections a second (default "
        f"{soak_load.DEFAULTS['churn_per_s']:g})",
    )
    parser.add_argument(
        "--resume-window-s",
        type=float,
        default=None,
        help=f"the gateways' [session] resume_window_s (default {RESUME_WINDOW_S:g}; "
        f"--tiny {TINY_RESUME_WINDOW_S:g})",
    )
    parser.set_defaults(runs=1)


def overrides(resume_window_s: float) -> dict[str, dict[str, Any]]:
    """The bench namespace, the soak's zone and the resume window."""
    sections = topics.overrides()
    sections[f"zones.{soak_load.ZONE}"] = soak_load.zone_table()
    sections["session"] = {"resume_window_s": resume_window_s}
    return sections


def read_gateway(gateway: BenchGateway) -> dict[str, float]:
    """What one gateway holds now, read from outside."""
    from prometheus_client.parser import text_string_to_metric_families

    _, body = gateway.get("/metrics", timeout=30.0)
    wanted = {"rtgateway_reactor_delayed_calls", "rtgateway_connections"}
    values = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name in wanted:
                values[sample.name] = sample.value
    return {
        "rss_mb": rss_bytes(gateway.pid) / MIB,
        "fds": open_files(gateway.pid),
        "delayed": values.get("rtgateway_reactor_delayed_calls", 0.0),
        "connections": values.get("rtgateway_connections", 0.0),
        "cpu_s": cpu_seconds(gateway.pid),
    }


def slope(values: list[float]) -> float:
    """Least-squares slope of values one minute apart, past the first
    minute when there are three or more (0 for fewer than two)."""
    if len(values) >= 3:
        values = values[1:]
    if len(values) < 2:
        return 0.0
    return statistics.linear_regression(range(len(values)), values).slope


def late_slope(values: list[float]) -> float:
    """Least-squares slope over the last half of the minutes: where a
    gateway that only warmed up levels off and a leak keeps climbing."""
    half = values[len(values) // 2 :]
    if len(half) < 2:
        return 0.0
    return statistics.linear_regression(range(len(half)), half).slope


def _row_line(minute: int, row: dict[str, Any], names: list[str]) -> str:
    def each(key: str) -> str:
        return "/".join(number(g[key]) for g in row["gateways"])

    return (
        f"  minute {minute:>3}: RSS {each('rss_mb')} MB, fds {each('fds')}, "
        f"delayed calls {each('delayed')}, connections {each('connections')}, "
        f"CPU {each('cpu_cores')}; churned {row['churn_opened']}, resumed "
        f"{row['resumes']}, published {row['published']}, delivered once "
        f"{row['once']}/{row['owed']}, failed calls {row['failed_calls']}, "
        f"unexpected closes {row['unexpected_closes']}"
        + (f" ({'/'.join(names)})" if len(names) > 1 else "")
    )


def soak_once(
    options: argparse.Namespace,
    workdir: Path,
    *,
    minutes: int,
    minute_s: float,
    sizes: dict[str, Any],
) -> tuple[dict[str, list[dict[str, float]]], dict[str, float], list[dict]]:
    """One soak on fresh gateways: per gateway its figures, the load's
    totals, and the rows per minute."""
    seconds = minutes * minute_s
    with BenchCluster(
        workdir,
        backend="redis" if options.cluster else "memory",
        gateways=2 if options.cluster else 1,
        reactor=options.reactor,
        overrides=overrides(options.resume_window_s),
    ) as cluster:
        gateways = cluster.gateways
        names = [f"gw{i + 1}" for i in range(len(gateways))]
        before = [read_gateway(g) for g in gateways]
        (plan,) = plans(
            cluster.urls[0],
            encoding="json",
            connections=0,
            processes=1,
            secret=cluster.secret,
            lifetime_s=seconds + SETUP_TIMEOUT_S + STOP_TIMEOUT_S + 300.0,
            more_urls=cluster.urls[1:],
        )
        rows: list[dict[str, Any]] = []
        with LoadGenerators([plan]) as load:
            load.command("soak_setup", SETUP_TIMEOUT_S, sizes=sizes, seconds=seconds)
            load.command("soak_start", 30.0, seconds=seconds)
            began = time.monotonic()
            previous = [g["cpu_s"] for g in (read_gateway(g) for g in gateways)]
            for minute in range(1, minutes + 1):
                time.sleep(max(0.0, began + minute * minute_s - time.monotonic()))
                (mark,) = load.command("soak_mark", 60.0)
                now = [read_gateway(g) for g in gateways]
                for reading, cpu in zip(now, previous, strict=True):
                    reading["cpu_cores"] = (reading["cpu_s"] - cpu) / minute_s
                previous = [reading["cpu_s"] for reading in now]
                row = {"minute": minute, "gateways": now, **mark}
                for key in (*COUNTS, "once"):
                    row.setdefault(key, 0)
                rows.append(row)
                print(_row_line(minute, row, names), flush=True)
            (final,) = load.command("soak_stop", STOP_TIMEOUT_S)
        print(
            f"  load stopped; waiting {options.resume_window_s + EXPIRY_MARGIN_S:g} s "
            "for the resume window to end",
            flush=True,
        )
        time.sleep(options.resume_window_s + EXPIRY_MARGIN_S)
        after = [read_gateway(g) for g in gateways]
    per_gateway: dict[str, list[dict[str, float]]] = {}
    for index, name in enumerate(names):
        minute_readings = [row["gateways"][index] for row in rows]
        rss = [reading["rss_mb"] for reading in minute_readings]
        per_gateway[name] = [
            {
                "rss_before_mb": before[index]["rss_mb"],
                "rss_first_mb": rss[0],
                "rss_last_mb": rss[-1],
                "rss_slope_mb_per_min": slope(rss) * (60.0 / minute_s),
                "rss_late_slope_mb_per_min": late_slope(rss) * (60.0 / minute_s),
                "rss_after_mb": after[index]["rss_mb"],
                "fds_before": before[index]["fds"],
                "fds_max": max(r["fds"] for r in minute_readings),
                "fds_after": after[index]["fds"],
                "delayed_before": before[index]["delayed"],
                "delayed_max": max(r["delayed"] for r in minute_readings),
                "delayed_after": after[index]["delayed"],
                "connections": statistics.median(
                    r["connections"] for r in minute_readings
                ),
                "cpu_cores": statistics.median(r["cpu_cores"] for r in minute_readings),
            }
        ]
    totals = {
        key: sum(row.get(key, 0) for row in rows) + final.get(key, 0)
        for key in (*COUNTS, "once")
    }
    totals["complete_pct"] = 100.0 * totals["once"] / max(totals["owed"], 1)
    totals["unchecked"] = final.get("unchecked", 0)
    rows.append({"minute": "stop", **final})
    return per_gateway, totals, rows


def run(options: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """``--runs`` soaks, each on fresh gateways."""
    minutes = options.minutes or (TINY_MINUTES if options.tiny else DEFAULT_MINUTES)
    minute_s = options.minute_s or (TINY_MINUTE_S if options.tiny else MINUTE_S)
    if options.resume_window_s is None:
        options.resume_window_s = (
            TINY_RESUME_WINDOW_S if options.tiny else RESUME_WINDOW_S
        )
    sizes = dict(soak_load.TINY if options.tiny else soak_load.DEFAULTS)
    if options.churn_per_s is not None:
        sizes["churn_per_s"] = options.churn_per_s
    gateway_runs: dict[str, list[dict[str, float]]] = {}
    load_runs: list[dict[str, float]] = []
    every_minute = []
    for run_number in range(options.runs):
        target = "2 gateways, redis" if options.cluster else "1 gateway, memory"
        print(
            f"run {run_number + 1}/{options.runs}: {minutes} x {minute_s:g} s, "
            f"{target}",
            flush=True,
        )
        per_gateway, totals, rows = soak_once(
            options, workdir, minutes=minutes, minute_s=minute_s, sizes=sizes
        )
        for name, runs in per_gateway.items():
            gateway_runs.setdefault(name, []).extend(runs)
        load_runs.append(totals)
        every_minute.append(rows)
    params = {
        "minutes": minutes,
        "minute_s": minute_s,
        "cluster": options.cluster,
        "resume_window_s": options.resume_window_s,
        **sizes,
        "churn_lifetime_s": soak_load.CHURN_LIFETIME_S,
        "away_s": soak_load.AWAY_S,
        "input_hz": soak_load.INPUT_HZ,
    }
    cases = [
        case_result(
            "gateway", GATEWAY_FIGURES, gateway_runs, reference=None, params=params
        ),
        case_result("load", LOAD_FIGURES, {"load": load_runs}, reference=None),
    ]
    return {"cases": cases, "minutes": every_minute, "notes": _notes(load_runs)}


def _notes(load_runs: list[dict[str, float]]) -> list[str]:
    def total(key: str) -> int:
        return int(sum(run[key] for run in load_runs))

    return [
        "before: the gateway started, no load; after: the load closed and the "
        "resume window over; RSS slope: least-squares fit over the minutes "
        "after the first, in MB per minute, and over the last half of them",
        f"{total('missing')} deliveries missing and {total('repeated')} repeated "
        f"of {total('owed'):,} owed (each acknowledged publication to every "
        f"receiver and resumer); {total('stray_events')} events outside the "
        f"topic's epoch or range; {total('unchecked')} publications unchecked",
        f"{total('failed_calls')} failed calls (an error or no answer in "
        f"{soak_load.CALL_TIMEOUT_S:g} s), {total('unexpected_closes')} "
        f"connections closed by the gateway, {total('connect_failures')} "
        "connections refused",
        f"{total('presence_changes'):,} presence.changed and "
        f"{total('state_messages'):,} state messages received",
    ]
