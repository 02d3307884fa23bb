"""The trace overhead benchmark runs end to end at its smallest size."""

from __future__ import annotations

import pytest
from test_bench_smoke import all_runs_error_free, assert_positive, figures, run_bench

pytestmark = pytest.mark.integration


def test_trace_compares_no_admin_untraced_and_traced(tmp_path):
    """trace: pipelined pings with no admin, untraced and traced, with ratios;
    the traced runs show frames within the rate and drop the rest."""
    document = run_bench("trace", tmp_path, "--trace-rate", "50")
    (case,) = document["cases"]
    assert set(case["summary"]) == {"no admin", "untraced", "traced"}
    assert case["reference"] == "no admin"
    assert set(case["ratio"]) == {"untraced", "traced"}
    for target in case["summary"]:
        (summary,) = figures(document, target)
        assert_positive(summary, "messages_per_s", "server_cpu_us_per_msg")
    (run,) = case["runs"]["traced"]
    assert 0 < run["frames_shown"] == run["frames_received"]
    assert run["frames_dropped"] > 0
    assert "frames_shown" not in case["runs"]["untraced"][0]
    all_runs_error_free(document)
