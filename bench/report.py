"""Results: repeated runs summarised, compared with a reference, printed, saved.

Every scenario returns the same shape, so one printer and one JSON layout
serve them all: a list of cases, each measured on several *targets* (the
gateway and the baseline server, or the codecs compared), each target run
``--runs`` times. A case names one target its *reference*; every other
target's median is divided by the reference's median, so a ratio is always
of two figures measured in the same run under the same machine noise.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum of one figure over the runs."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def case_result(
    name: str,
    figures: Mapping[str, str],
    runs: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    reference: str | None = "baseline",
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One case: its runs per target, their summaries and the ratios.

    ``figures`` maps each figure's key to the label printed for it, in
    print order; a target's runs need not have every figure (the baseline
    has no heartbeat CPU, for instance). ``ratio[target][figure]`` is the
    target's median over the reference's, for every other target.
    """
    summary = {
        target: {
            key: summarize([run[key] for run in target_runs])
            for key in figures
            if target_runs and all(key in run for run in target_runs)
        }
        for target, target_runs in runs.items()
    }
    ratio: dict[str, dict[str, float]] = {}
    base = summary.get(reference, {}) if reference else {}
    for target, figures_of_target in summary.items():
        if target == reference:
            continue
        ratio[target] = {
            key: value["median"] / base[key]["median"]
            for key, value in figures_of_target.items()
            if key in base and base[key]["median"]
        }
    return {
        "name": name,
        "params": dict(params or {}),
        "figures": dict(figures),
        "reference": reference,
        "runs": {target: list(target_runs) for target, target_runs in runs.items()},
        "summary": summary,
        "ratio": ratio,
    }


def every_run(cases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The figures of every run of every target of every case."""
    return [
        run
        for case in cases
        for target_runs in case["runs"].values()
        for run in target_runs
    ]


def number(value: float) -> str:
    """A figure as a person reads it: thousands separated, 3 digits or so."""
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def render(result: Mapping[str, Any]) -> str:
    """The result as an aligned plain-text table, with its notes below."""
    header = ["case", "figure", "target", "median", "min", "max", "ratio"]
    rows: list[list[str]] = []
    for case in result["cases"]:
        first_of_case = True
        for key, label in case["figures"].items():
            first_of_figure = True
            for target, summary in case["summary"].items():
                if key not in summary:
                    continue
                ratio = case["ratio"].get(target, {}).get(key)
                rows.append(
                    [
                        case["name"] if first_of_case else "",
                        label if first_of_figure else "",
                        target,
                        number(summary[key]["median"]),
                        number(summary[key]["min"]),
                        number(summary[key]["max"]),
                        f"{ratio:.2f}" if ratio is not None else "",
                    ]
                )
                first_of_case = first_of_figure = False
        rows.append([])
    lines = [
        f"{result['scenario']}: median, min and max of {result['runs']} run(s); "
        "ratio = target median / reference median",
        _table(header, rows, right_aligned={3, 4, 5, 6}),
    ]
    lines.extend(f"note: {note}" for note in result.get("notes", ()))
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]], right_aligned: set[int]) -> str:
    widths = [
        max(len(header[i]), *(len(row[i]) for row in rows if row))
        for i in range(len(header))
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in right_aligned else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(row) if row else "" for row in rows)
    return "\n".join(out).rstrip()


def write_json(path: Path, result: Mapping[str, Any]) -> Path:
    """Save ``result`` as indented JSON, creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
