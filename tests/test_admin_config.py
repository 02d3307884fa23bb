"""The [admin] section: its defaults and the checks on its bounds."""

from __future__ import annotations

import pytest

from rtgateway.config import AdminConfig, ConfigError
from rtgateway.testing import make_config


def test_defaults():
    """Admin methods on, 8 traces of 100 frames/s cut at 4 KiB, 5 minutes of stats."""
    admin = make_config().admin
    assert admin == AdminConfig()
    assert (admin.enabled, admin.trace_max_sessions, admin.trace_rate) == (
        True,
        8,
        100.0,
    )
    assert admin.trace_max_frame_bytes == 4096
    assert (admin.stats_interval_s, admin.stats_samples) == (1.0, 300)
    assert admin.zone_max_entities == 1000


@pytest.mark.parametrize(
    "key",
    [
        "trace_max_sessions",
        "trace_rate",
        "trace_max_frame_bytes",
        "connections_page_size",
        "connections_page_max",
        "cluster_timeout_s",
        "stats_interval_s",
        "stats_samples",
        "zone_max_entities",
    ],
)
def test_every_bound_must_be_positive(key):
    """A bound of 0 is refused, naming the key."""
    with pytest.raises(ConfigError, match=rf"admin\.{key}: must be greater than 0"):
        make_config({"admin": {key: 0}})


def test_page_size_within_page_max():
    """The default page cannot be larger than the largest page allowed."""
    with pytest.raises(ConfigError, match=r"admin\.connections_page_size: must not"):
        make_config(
            {"admin": {"connections_page_size": 50, "connections_page_max": 10}}
        )
