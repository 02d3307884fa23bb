"""Tests for the ``[zones.<name>]`` configuration: ZoneSchemas, checked."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from rtgateway.config import Config, ConfigError, load_config, parse_config
from rtgateway.config.zones import parse_zones
from rtgateway.state.schema import FieldSpec, ZoneSchema

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "rtgateway.toml"
DOCS = ROOT / "docs" / "configuration.rst"

#: One field of each kind the position and type checks need.
FIELDS = {
    "x": {"type": "number"},
    "y": {"type": "number"},
    "name": {"type": "string"},
    "hp": {"type": "integer"},
    "aim": {"type": "vector"},
}
POSITION = {"position": ["x", "y"]}


def parse(zones: Any) -> Config:
    return parse_config(
        {"auth": {"secret": "s" * 32}, "zones": zones},
        source="x.toml",
        base_dir=Path("/nonexistent"),
        environ={},
    )


def arena(fields: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """A zone table with FIELDS, some of them replaced, and ``keys``."""
    table = {"fields": {**copy.deepcopy(FIELDS), **(fields or {})}}
    return {**table, **keys}


def field_of(spec: dict[str, Any], name: str = "f") -> FieldSpec:
    return parse({"arena": {"fields": {name: spec}}}).zones["arena"].fields[name]


# -- values


def test_defaults() -> None:
    """An empty zone table and a field with only a type get the documented defaults."""
    config = parse({"arena": {}, "hall": {"fields": {"x": {"type": "number"}}}})
    zone = config.zones["arena"]
    assert zone == ZoneSchema(name="arena")
    assert (zone.fast_hz, zone.slow_hz, zone.max_entities) == (60, 10, 5000)
    assert (zone.snapshot_interval_s, zone.check_interval_ticks) == (0, 0)
    assert zone.position == () and zone.fields == {}
    assert zone.max_speed is None and zone.speed_burst_s == 1.0
    assert (zone.lag_slow_s, zone.lag_close_s) == (0.5, 10.0)
    assert zone.bounds_min is None and zone.bounds_max is None
    assert (zone.aoi_radius, zone.aoi_leave_margin) == (0, None)
    assert zone.timestamps is False
    assert config.zones["hall"].fields["x"] == FieldSpec(name="x", type="number")


def test_no_zones() -> None:
    """Without [zones.*] tables there are no zones, loaded or built by hand."""
    assert parse({}).zones == {}
    assert Config(source="").zones == {}


def test_every_key_parsed() -> None:
    """Every zone key and every field key reaches the ZoneSchema and FieldSpecs."""
    table = {
        "fast_hz": 30,
        "slow_hz": 5,
        "snapshot_interval_s": 2.5,
        "check_interval_ticks": 10,
        "position": ["x", "y", "z"],
        "max_speed": 12,
        "speed_burst_s": 0.5,
        "bounds": {"min": [-10, -10, 0], "max": [10, 10, 5.5]},
        "aoi_radius": 20,
        "aoi_leave_margin": 3,
        "max_entities": 100,
        "lag_slow_s": 0.25,
        "lag_close_s": 3,
        "timestamps": True,
        "fields": {
            "x": {"type": "number", "quantum": 0.01, "lane": "fast", "default": 1},
            "y": {"type": "number", "min": -5, "max": 5, "default": 2.5},
            "z": {"type": "number"},
            "hp": {"type": "integer", "lane": "slow", "min": 0, "max": 100},
            "name": {"type": "string", "max_length": 16, "default": "anon"},
            "ready": {"type": "boolean", "default": False},
            "aim": {
                "type": "vector",
                "quantum": 0.5,
                "min": -1,
                "max": 1,
                "max_length": 2,
                "default": [0.25, -1],
            },
        },
    }
    zone = parse({"arena": table}).zones["arena"]
    specs = {
        "x": FieldSpec("x", "number", quantum=0.01, default=1.0),
        "y": FieldSpec("y", "number", default=2.5, min=-5.0, max=5.0),
        "z": FieldSpec("z", "number"),
        "hp": FieldSpec("hp", "integer", lane="slow", min=0, max=100),
        "name": FieldSpec("name", "string", default="anon", max_length=16),
        "ready": FieldSpec("ready", "boolean", default=False),
        "aim": FieldSpec(
            "aim",
            "vector",
            quantum=0.5,
            default=[0.0, -1.0],
            min=-1,
            max=1,
            max_length=2,
        ),
    }
    assert zone == ZoneSchema(
        name="arena",
        fields=MappingProxyType(specs),
        fast_hz=30,
        slow_hz=5,
        snapshot_interval_s=2.5,
        check_interval_ticks=10,
        position=("x", "y", "z"),
        max_speed=12.0,
        bounds_min=(-10.0, -10.0, 0.0),
        bounds_max=(10.0, 10.0, 5.5),
        aoi_radius=20.0,
        aoi_leave_margin=3.0,
        max_entities=100,
        speed_burst_s=0.5,
        lag_slow_s=0.25,
        lag_close_s=3.0,
        timestamps=True,
    )
    assert list(zone.fields) == ["x", "y", "z", "hp", "name", "ready", "aim"]
    assert zone.slow_every == 6 and zone.leave_margin == 3


def test_values_are_typed() -> None:
    """Integer keys hold ints, number keys floats, whichever way TOML spelled them."""
    zone = parse(
        {"arena": arena(fast_hz=60.0, max_speed=10, aoi_radius=5, **POSITION)}
    ).zones["arena"]
    assert type(zone.fast_hz) is int and type(zone.max_speed) is float
    assert type(zone.aoi_radius) is float
    hp = field_of({"type": "integer", "min": 0.0, "max": 10, "default": 5.0})
    assert (type(hp.min), type(hp.max), type(hp.default)) == (int, int, int)


def test_zones_are_read_only() -> None:
    """The zones and their fields are read-only mappings of frozen values."""
    zone = parse({"arena": arena()}).zones["arena"]
    config = parse({"arena": arena()})
    with pytest.raises(TypeError):
        config.zones["other"] = zone  # type: ignore[index]
    with pytest.raises(TypeError):
        zone.fields["x"] = zone.fields["y"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        zone.fast_hz = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("quantum", "raw", "expected"),
    [
        (0.01, 12.3456, "12.35"),
        (0.01, 12.34, "12.34"),
        (0.25, 1.3, "1.25"),
        (0.5, 0.74, "0.5"),
        (1, 2.6, "3"),
        (5, 12, "10"),
        (0.01, -0.001, "0.0"),
        (0.1, 0.3, "0.3"),
    ],
)
def test_default_quantized(quantum: float, raw: float, expected: str) -> None:
    """A number field's default is quantized to the shortest decimal of its quantum."""
    default = field_of({"type": "number", "quantum": quantum, "default": raw}).default
    assert repr(default) == expected
    assert type(default) is (int if "." not in expected else float)


def test_vector_default_quantized_item_by_item() -> None:
    """Each item of a vector's default is quantized; the default is a list."""
    spec = field_of({"type": "vector", "quantum": 0.01, "default": [0.123, -0.004, 2]})
    assert spec.default == [0.12, 0.0, 2.0]
    assert repr(spec.default) == "[0.12, 0.0, 2.0]"


def test_quantized_default_stays_within_min_and_max() -> None:
    """Quantizing a default never takes it past the field's min or max."""
    spec = field_of(
        {"type": "number", "quantum": 0.1, "min": 0.05, "max": 1, "default": 0.05}
    )
    assert spec.default == 0.1


def test_default_without_quantum_is_kept() -> None:
    """Without a quantum a number's default is kept as given, as a float."""
    assert field_of({"type": "number", "default": 1.23456789}).default == 1.23456789
    assert repr(field_of({"type": "number", "default": 3}).default) == "3.0"


def test_position_default_within_bounds_is_accepted() -> None:
    """A position field's default on the edge of the bounds is accepted."""
    zone = parse(
        {
            "arena": arena(
                {"x": {"type": "number", "default": 0}},
                bounds={"min": [0, 0], "max": [1, 1]},
                **POSITION,
            )
        }
    ).zones["arena"]
    assert zone.fields["x"].default == 0


def test_empty_position_means_none() -> None:
    """An explicit empty position is the default: no position."""
    assert parse({"arena": arena(position=[])}).zones["arena"].position == ()


# -- refusals

BOUNDS = {"bounds": {"min": [0, 0], "max": [10, 10]}}
REFUSALS = [
    # the zone table
    ({"a.b": {}}, "zones.a.b", "a zone name is 1 to 64"),
    ({"x" * 65: {}}, "zones." + "x" * 65, "a zone name is 1 to 64"),
    ({"arena": 3}, "zones.arena", "expected a table, got an integer (3)"),
    ({"arena": arena(fast_hx=60)}, "zones.arena.fast_hx", '(did you mean "fast_hz"?)'),
    ({"arena": {"feilds": {}}}, "zones.arena.feilds", '(did you mean "fields"?)'),
    ({"arena": arena(fast_hz=0)}, "zones.arena.fast_hz", "must be from 1 to 240"),
    ({"arena": arena(fast_hz=241)}, "zones.arena.fast_hz", "got 241"),
    ({"arena": arena(fast_hz=2.5)}, "zones.arena.fast_hz", "expected an integer"),
    ({"arena": arena(slow_hz=0)}, "zones.arena.slow_hz", "must be greater than 0"),
    (
        {"arena": arena(slow_hz=7)},
        "zones.arena.slow_hz",
        "fast_hz (60) must be a multiple of slow_hz (7)",
    ),
    ({"arena": arena(slow_hz=120)}, "zones.arena.slow_hz", "multiple"),
    (
        {"arena": arena(snapshot_interval_s=-1)},
        "zones.arena.snapshot_interval_s",
        "must be 0 or more",
    ),
    (
        {"arena": arena(check_interval_ticks=-1)},
        "zones.arena.check_interval_ticks",
        "must be 0 or more",
    ),
    (
        {"arena": arena(check_interval_ticks=1.5)},
        "zones.arena.check_interval_ticks",
        "expected an integer",
    ),
    ({"arena": arena(max_entities=0)}, "zones.arena.max_entities", "greater than 0"),
    ({"arena": arena(timestamps="yes")}, "zones.arena.timestamps", "a boolean"),
    # position
    ({"arena": arena(position=["x"])}, "zones.arena.position", "two or three"),
    (
        {"arena": arena(position=["x", "y", "x", "y"])},
        "zones.arena.position",
        "expected two or three field names, got 4",
    ),
    ({"arena": arena(position="x")}, "zones.arena.position", "expected a list"),
    ({"arena": arena(position=[1, 2])}, "zones.arena.position[0]", "a string"),
    (
        {"arena": arena(position=["x", "yy"])},
        "zones.arena.position[1]",
        'no field "yy" in zones.arena.fields (did you mean "y"?)',
    ),
    (
        {"arena": arena(position=["x", "name"])},
        "zones.arena.position[1]",
        'field "name" is a string, not a number',
    ),
    (
        {"arena": arena(position=["x", "aim"])},
        "zones.arena.position[1]",
        "not a number",
    ),
    ({"arena": arena(position=["x", "x"])}, "zones.arena.position[1]", "twice"),
    # rules on the position
    ({"arena": arena(max_speed=10)}, "zones.arena.max_speed", "needs position"),
    (
        {"arena": arena(max_speed=0, **POSITION)},
        "zones.arena.max_speed",
        "greater than 0",
    ),
    ({"arena": arena(speed_burst_s=0)}, "zones.arena.speed_burst_s", "greater than 0"),
    ({"arena": arena(lag_slow_s=0)}, "zones.arena.lag_slow_s", "greater than 0"),
    ({"arena": arena(lag_close_s=-1)}, "zones.arena.lag_close_s", "greater than 0"),
    ({"arena": arena(**BOUNDS)}, "zones.arena.bounds", "needs position"),
    ({"arena": arena(bounds=3, **POSITION)}, "zones.arena.bounds", "expected a table"),
    (
        {"arena": arena(bounds={"min": [0, 0], "mx": [1, 1]}, **POSITION)},
        "zones.arena.bounds.mx",
        '(did you mean "max"?)',
    ),
    (
        {"arena": arena(bounds={"min": [0, 0]}, **POSITION)},
        "zones.arena.bounds.max",
        "missing: a list of 2 numbers, one per position field",
    ),
    (
        {"arena": arena(bounds={"min": [0], "max": [1, 1]}, **POSITION)},
        "zones.arena.bounds.min",
        "expected 2 numbers, one per position field, got 1",
    ),
    (
        {"arena": arena(bounds={"min": [0, "a"], "max": [1, 1]}, **POSITION)},
        "zones.arena.bounds.min[1]",
        "expected a number",
    ),
    (
        {"arena": arena(bounds={"min": [0, 5], "max": [1, 5]}, **POSITION)},
        "zones.arena.bounds.max[1]",
        "must be greater than bounds.min[1] (5), got 5",
    ),
    (
        {
            "arena": arena(
                {"x": {"type": "number", "default": 11}}, **BOUNDS, **POSITION
            )
        },
        "zones.arena.fields.x.default",
        "must be within zones.arena.bounds (0 to 10), got 11",
    ),
    ({"arena": arena(aoi_radius=-1)}, "zones.arena.aoi_radius", "0 or more"),
    ({"arena": arena(aoi_radius=5)}, "zones.arena.aoi_radius", "needs position"),
    (
        {"arena": arena(aoi_leave_margin=-1)},
        "zones.arena.aoi_leave_margin",
        "0 or more",
    ),
    # fields
    ({"arena": {"fields": 3}}, "zones.arena.fields", "expected a table of fields"),
    (
        {"arena": arena({"1x": {"type": "number"}})},
        "zones.arena.fields.1x",
        "a field name is",
    ),
    (
        {"arena": arena({"x-y": {"type": "number"}})},
        "zones.arena.fields.x-y",
        "a field name is",
    ),
    (
        {"arena": arena({"x" * 65: {"type": "number"}})},
        "zones.arena.fields." + "x" * 65,
        "a field name is",
    ),
    ({"arena": arena({"x": "number"})}, "zones.arena.fields.x", "expected a table"),
    ({"arena": arena({"x": {}})}, "zones.arena.fields.x.type", "missing: one of"),
    (
        {"arena": arena({"x": {"type": "float"}})},
        "zones.arena.fields.x.type",
        'expected one of "number", "integer", "string", "boolean", "vector"',
    ),
    (
        {"arena": arena({"x": {"type": "number", "quantom": 1}})},
        "zones.arena.fields.x.quantom",
        '(did you mean "quantum"?)',
    ),
    (
        {"arena": arena({"x": {"type": "number", "quantum": 0}})},
        "zones.arena.fields.x.quantum",
        "must be greater than 0",
    ),
    (
        {"arena": arena({"hp": {"type": "integer", "quantum": 1}})},
        "zones.arena.fields.hp.quantum",
        "only number and vector fields take it, not integer fields",
    ),
    (
        {"arena": arena({"x": {"type": "number", "lane": "medium"}})},
        "zones.arena.fields.x.lane",
        'expected one of "fast", "slow"',
    ),
    (
        {"arena": arena({"name": {"type": "string", "min": 0}})},
        "zones.arena.fields.name.min",
        "only number, integer and vector fields take it",
    ),
    (
        {"arena": arena({"ok": {"type": "boolean", "max": 1}})},
        "zones.arena.fields.ok.max",
        "not boolean fields",
    ),
    (
        {"arena": arena({"x": {"type": "number", "max_length": 3}})},
        "zones.arena.fields.x.max_length",
        "only string and vector fields take it",
    ),
    (
        {"arena": arena({"name": {"type": "string", "max_length": 0}})},
        "zones.arena.fields.name.max_length",
        "must be greater than 0",
    ),
    (
        {"arena": arena({"x": {"type": "number", "min": "0"}})},
        "zones.arena.fields.x.min",
        "expected a number",
    ),
    (
        {"arena": arena({"x": {"type": "number", "min": 5, "max": 1}})},
        "zones.arena.fields.x.max",
        "must be at least min (5), got 1",
    ),
    (
        {"arena": arena({"hp": {"type": "integer", "min": 0.5}})},
        "zones.arena.fields.hp.min",
        "expected an integer",
    ),
    # defaults
    (
        {"arena": arena({"x": {"type": "number", "default": "0"}})},
        "zones.arena.fields.x.default",
        'expected a number, got a string ("0")',
    ),
    (
        {"arena": arena({"x": {"type": "number", "default": True}})},
        "zones.arena.fields.x.default",
        "expected a number",
    ),
    (
        {"arena": arena({"hp": {"type": "integer", "default": 1.5}})},
        "zones.arena.fields.hp.default",
        "expected an integer",
    ),
    (
        {"arena": arena({"name": {"type": "string", "default": 3}})},
        "zones.arena.fields.name.default",
        "expected a string",
    ),
    (
        {"arena": arena({"ok": {"type": "boolean", "default": 1}})},
        "zones.arena.fields.ok.default",
        "expected a boolean",
    ),
    (
        {"arena": arena({"aim": {"type": "vector", "default": 3}})},
        "zones.arena.fields.aim.default",
        "expected a list of numbers",
    ),
    (
        {"arena": arena({"aim": {"type": "vector", "default": [1, "a"]}})},
        "zones.arena.fields.aim.default[1]",
        "expected a number",
    ),
    (
        {"arena": arena({"hp": {"type": "integer", "max": 100, "default": 101}})},
        "zones.arena.fields.hp.default",
        "must be at most max (100), got 101",
    ),
    (
        {"arena": arena({"x": {"type": "number", "min": 0, "default": -0.5}})},
        "zones.arena.fields.x.default",
        "must be at least min (0), got -0.5",
    ),
    (
        {"arena": arena({"aim": {"type": "vector", "max": 1, "default": [0, 2]}})},
        "zones.arena.fields.aim.default[1]",
        "must be at most max (1), got 2",
    ),
    (
        {
            "arena": arena(
                {"name": {"type": "string", "max_length": 3, "default": "abcd"}}
            )
        },
        "zones.arena.fields.name.default",
        "must be at most 3 characters, got 4",
    ),
    (
        {"arena": arena({"name": {"type": "string", "default": "a" * 257}})},
        "zones.arena.fields.name.default",
        "must be at most 256 characters",
    ),
    (
        {"arena": arena({"aim": {"type": "vector", "default": [0, 0, 0, 0, 0]}})},
        "zones.arena.fields.aim.default",
        "must have at most 4 items, got 5",
    ),
]


@pytest.mark.parametrize(
    ("zones", "key", "problem"),
    REFUSALS,
    ids=[f"{key}-{index}" for index, (_, key, _) in enumerate(REFUSALS)],
)
def test_refusal_names_the_key(zones: Any, key: str, problem: str) -> None:
    """Each bad zone value stops the load with one line naming its full key."""
    with pytest.raises(ConfigError) as info:
        parse(zones)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value) == f"x.toml: {key}: {info.value.problem}"
    assert "\n" not in str(info.value)


def test_zones_must_be_a_table() -> None:
    """A top-level ``zones`` that is not a table of zones is refused."""
    with pytest.raises(ConfigError) as info:
        parse(3)
    assert (info.value.key, info.value.problem) == (
        "zones",
        "expected a table of zones",
    )


def test_error_line_from_a_file(tmp_path: Path) -> None:
    """Loading a file with a bad field key gives ``<file>: <dotted key>: <problem>``."""
    path = tmp_path / "gw.toml"
    path.write_text(
        '[auth]\nsecret = "' + "s" * 32 + '"\n'
        '[zones.arena.fields.x]\ntype = "number"\nquantum = 0\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        f"{path}: zones.arena.fields.x.quantum: must be greater than 0, got 0"
    )


def test_parse_zones_alone() -> None:
    """parse_zones turns the raw tables into a read-only map of ZoneSchemas."""
    zones = parse_zones({"arena": {}})
    assert isinstance(zones, MappingProxyType)
    assert zones["arena"].name == "arena"


# -- the shipped configuration and the documentation

ZONE_KEYS = [
    "fast_hz", "slow_hz", "snapshot_interval_s", "check_interval_ticks",
    "position", "max_speed", "speed_burst_s", "bounds", "aoi_radius",
    "aoi_leave_margin", "max_entities", "lag_slow_s", "lag_close_s", "timestamps",
]  # fmt: skip
FIELD_KEYS = ["type", "quantum", "lane", "default", "min", "max", "max_length"]


def test_shipped_config_has_the_lobby_zone() -> None:
    """config/rtgateway.toml loads and defines the example lobby zone."""
    lobby = load_config(SHIPPED, environ={}).zones["lobby"]
    assert lobby.position == ("x", "y")
    assert lobby.max_speed == 10
    assert lobby.bounds_min is not None and lobby.bounds_max is not None
    assert lobby.aoi_radius == 0
    for name in ("x", "y"):
        assert lobby.fields[name] == FieldSpec(name, "number", quantum=0.01)
    assert (lobby.fields["name"].type, lobby.fields["name"].lane) == ("string", "slow")
    assert lobby.fields["hp"] == FieldSpec(
        "hp", "integer", lane="slow", default=100, min=0, max=100
    )
    assert (lobby.fast_hz, lobby.slow_hz, lobby.speed_burst_s) == (60, 10, 1.0)


def test_shipped_config_comments_every_zone_key() -> None:
    """Every zone and field key appears in the shipped file below a comment."""
    lines = SHIPPED.read_text().splitlines()
    start = lines.index("[zones.lobby]")
    for name in ZONE_KEYS + FIELD_KEYS:
        at = next(
            (i for i, line in enumerate(lines) if i > start and
             re.match(rf"(# )?{name} = ", line)),
            None,
        )  # fmt: skip
        assert at is not None, name
        above = lines[at - 1]
        assert above.startswith("#") or re.match(r"\w+ = ", above), name


def test_docs_describe_every_zone_key() -> None:
    """docs/configuration.rst has a zones section naming every key."""
    text = DOCS.read_text()
    zones = text[text.index("``[zones.<name>]``\n---") :]
    zones = zones[: zones.index("\nSecrets from the environment\n")]
    for name in ZONE_KEYS + FIELD_KEYS:
        assert f"``{name}``" in zones, name
    assert "fast_hz (60) must be a multiple of slow_hz (7)" in zones
