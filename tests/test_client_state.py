"""The client's zone view: mirror, automatic state.sync, interpolation, prediction."""

from __future__ import annotations

import itertools
import random

import pytest

from rtgateway.client.interpolation import Interpolator
from rtgateway.client.prediction import Predictor
from rtgateway.client.testing import CoreHarness
from rtgateway.state.viewhash import hash_entities


def push(method, **params):
    return {"jsonrpc": "2.0", "method": method, "params": params}


def joined_harness():
    harness = CoreHarness(ping_interval_s=0).start()
    harness.open()
    harness.core.join("arena", {"x": 0})
    harness.reply(
        "state.join",
        {
            "zone": "arena",
            "tick": 10,
            "entity": "player.alice",
            "tick_hz": {"fast": 20, "slow": 10},
        },
    )
    harness.feed(
        push(
            "state.snapshot",
            zone="arena",
            tick=10,
            entities={
                "player.alice": {"v": 1, "fields": {"x": 0}},
                "player.bob": {"v": 3, "fields": {"x": 5.0, "hp": 100}},
            },
        )
    )
    return harness


def delta(tick, base, changed=None, removed=(), ack=None):
    params = {
        "zone": "arena",
        "tick": tick,
        "base_tick": base,
        "changed": changed or {},
        "removed": list(removed),
    }
    if ack is not None:
        params["ack"] = ack
    return push("state.delta", **params)


def test_join_takes_rates_and_the_default_delay_of_three_fast_ticks():
    """The render delay defaults to three fast-tick intervals of the zone."""
    harness = joined_harness()
    assert harness.core.view.interpolator.delay_s == pytest.approx(3 / 20)
    assert harness.core.view.mirror.own == "player.alice"


def test_broken_chain_calls_state_sync_once_and_counts():
    """A delta off the mirror's tick: one state.sync until the snapshot comes."""
    harness = joined_harness()
    harness.feed(delta(12, 11, {"player.bob": {"v": 4, "fields": {"x": 6}}}))
    harness.feed(delta(13, 12, {"player.bob": {"v": 5, "fields": {"x": 7}}}))
    assert len(harness.requests("state.sync")) == 1
    harness.reply("state.sync", {"tick": 13})
    harness.feed(
        push(
            "state.snapshot",
            zone="arena",
            tick=13,
            entities={"player.bob": {"v": 5, "fields": {"x": 7, "hp": 100}}},
        )
    )
    harness.feed(delta(14, 13, {"player.bob": {"v": 6, "fields": {"x": 8}}}))
    assert harness.core.view.mirror.entities["player.bob"] == (6, {"x": 8, "hp": 100})
    stats = harness.core.stats()
    assert stats["chain_breaks"] == 1 and stats["desyncs"] == 1


def test_check_hash_is_verified_and_a_mismatch_syncs():
    """state.check equal to the mirror's own hash: fine; different: state.sync."""
    harness = joined_harness()
    harness.feed(delta(11, 10, {"player.bob": {"v": 4, "fields": {"x": 6}}}))
    good = hash_entities({"player.bob": (4, {"x": 6, "hp": 100})})
    harness.feed(push("state.check", zone="arena", tick=11, hash=good))
    assert harness.requests("state.sync") == []
    harness.feed(push("state.check", zone="arena", tick=11, hash="0" * 16))
    assert len(harness.requests("state.sync")) == 1
    stats = harness.core.stats()
    assert (stats["checks"], stats["check_mismatches"], stats["desyncs"]) == (2, 1, 1)


def test_a_refused_state_sync_is_asked_again_at_the_next_mismatch():
    """No snapshot comes after a refused state.sync: the next check syncs again."""
    harness = joined_harness()
    harness.feed(push("state.check", zone="arena", tick=10, hash="0" * 16))
    harness.fail("state.sync", -32002, "rate limited")
    harness.feed(push("state.check", zone="arena", tick=10, hash="0" * 16))
    assert len(harness.requests("state.sync")) == 2
    assert harness.core.stats()["check_mismatches"] == 2


def test_ack_in_a_delta_reconciles_the_prediction():
    """Deltas' acks reach the predictor: corrected values win, pending replays."""
    harness = joined_harness()
    predictor = harness.core.predict_with(
        lambda fields, dx: {**fields, "x": fields["x"] + dx}
    )
    assert predictor.predicted == {"x": 0}
    for _ in range(3):
        harness.core.input(10)
    assert predictor.predicted == {"x": 30}
    harness.pump()
    sent = [m["params"] for m in harness.sent if m.get("method") == "state.update"]
    assert sent[-1] == {"fields": {"x": 30}, "input_seq": 3}
    harness.feed(delta(11, 10, ack={"input_seq": 1, "v": 2, "corrected": {"x": 4}}))
    assert predictor.predicted == {"x": 24} and predictor.corrections == 1


def test_rendered_positions_of_others_come_from_the_mirror_samples():
    """Other entities render between ticks; the own entity is not interpolated."""
    harness = joined_harness()
    harness.now = 0.05
    harness.feed(delta(11, 10, {"player.bob": {"v": 4, "fields": {"x": 6.0}}}))
    rendered = harness.core.view.rendered(0.05 + 3 / 20 - 0.025)
    assert set(rendered) == {"player.bob"}
    assert 5.0 < rendered["player.bob"]["x"] < 6.0


# -- interpolation ----------------------------------------------------------------


def run_interpolation(seed, jitter_s, drop_rate, speed=3.0, tick_hz=60):
    """Constant-speed motion sent with jitter and drops, rendered at 144 Hz."""
    rng = random.Random(seed)
    interpolator = Interpolator(delay_s=3 / tick_hz, max_extrapolation_s=0.1)
    arrivals = []
    for tick in range(0, 600):
        if tick > 0 and rng.random() < drop_rate:
            continue
        at = tick / tick_hz
        arrivals.append((at + 0.02 + rng.uniform(0, jitter_s), at, speed * at))
    arrivals.sort()
    frames, index = [], 0
    now = 0.02
    while now < 600 / tick_hz:
        while index < len(arrivals) and arrivals[index][0] <= now:
            _, at, x = arrivals[index]
            interpolator.add("bob", at, {"x": x}, arrivals[index][0])
            index += 1
        interpolator.advance(now)
        sample = interpolator.sample("bob")
        if sample is not None:
            frames.append((now, sample["x"]))
        now += 1 / 144
    return frames


@pytest.mark.parametrize("seed", range(5))
def test_interpolation_is_monotone_and_smooth_under_jitter_and_drops(seed):
    """30 ms of jitter and 20% drops: positions never go back nor jump."""
    frames = run_interpolation(seed, jitter_s=0.03, drop_rate=0.2)
    xs = [x for _, x in frames[20:]]
    steps = [b - a for a, b in itertools.pairwise(xs)]
    ideal = 3.0 / 144
    assert all(step >= -1e-9 for step in steps)
    assert max(steps) < 2.0 * ideal
    assert sum(steps) / len(steps) == pytest.approx(ideal, rel=0.1)


def test_a_faster_path_does_not_make_the_render_jump():
    """Packets 40 ms late, then on time: the render clock catches up smoothly."""
    interpolator = Interpolator(delay_s=0.05, max_extrapolation_s=0.1)
    xs, now = [], 0.0
    for frame in range(600):
        now = frame / 120
        late = 0.04 if now < 2 else 0.0
        tick = 0
        while tick / 60 + late <= now:
            interpolator.add("bob", tick / 60, {"x": tick / 60}, tick / 60 + late)
            tick += 1
        interpolator.advance(now)
        if frame > 30:
            xs.append(interpolator.sample("bob")["x"])
    steps = [b - a for a, b in itertools.pairwise(xs)]
    assert min(steps) >= 0 and max(steps) < 1.2 / 120
    assert xs[-1] == pytest.approx(now - 0.05, abs=1e-6)


def test_interpolation_lags_by_the_delay():
    """Without jitter the rendered position is the one of now - delay."""
    frames = run_interpolation(0, jitter_s=0.0, drop_rate=0.0)
    now, x = frames[-1]
    assert x == pytest.approx(3.0 * (now - 0.02 - 3 / 60), abs=1e-6)


def test_extrapolation_is_bounded_when_packets_stop():
    """Past the newest sample motion continues max_extrapolation_s, then goes back.

    An entity that stopped gets no more samples: it ends where the gateway
    last put it, not where its motion would have taken it.
    """
    interpolator = Interpolator(delay_s=0.05, max_extrapolation_s=0.1)
    for tick in range(10):
        interpolator.add("bob", tick / 10, {"x": float(tick)}, tick / 10)
    interpolator.advance(0.9 + 0.05 + 0.05)  # renders 0.05 past the last sample
    assert interpolator.sample("bob")["x"] == pytest.approx(9.5)
    rendered = []
    for step in range(1, 30):
        interpolator.advance(1.0 + step / 100)
        rendered.append(interpolator.sample("bob")["x"])
    assert max(rendered) == pytest.approx(10.0, abs=0.11)
    assert rendered[-1] == 9.0
    assert interpolator.held > 0 and interpolator.extrapolated > 0


def test_an_entity_a_later_tick_left_unchanged_is_not_extrapolated():
    """A delta that leaves bob out says he stood still: he is drawn where he is."""
    interpolator = Interpolator(delay_s=0.05, max_extrapolation_s=0.1)
    for tick in range(10):
        interpolator.heard(tick / 10)
        interpolator.add("bob", tick / 10, {"x": float(tick)}, tick / 10)
    interpolator.heard(1.0)  # a later tick that changed someone else
    interpolator.advance(0.9 + 0.05 + 0.05)
    assert interpolator.sample("bob")["x"] == 9.0
    assert interpolator.extrapolated == 0


# -- prediction -------------------------------------------------------------------


def test_prediction_converges_to_the_server_after_a_correction():
    """A server capping speed corrects; the prediction ends where the server is."""
    max_step = 1.5

    def move(fields, dx):
        return {**fields, "x": fields["x"] + dx}

    predictor = Predictor(move, {"x": 0.0})
    server_x, last_seq = 0.0, 0
    in_flight = []
    for frame in range(60):
        seq, fields = predictor.input(2.0 if frame < 30 else 0.0)  # too fast, then stop
        in_flight.append((seq, fields))
        if len(in_flight) > 3:  # three inputs of latency
            seq, fields = in_flight.pop(0)
            wanted = fields["x"] - server_x
            step = max(-max_step, min(max_step, wanted))
            corrected = None if step == wanted else {"x": server_x + step}
            server_x += step
            last_seq = seq
            predictor.ack(seq, corrected)
    while in_flight:
        seq, fields = in_flight.pop(0)
        wanted = fields["x"] - server_x
        step = max(-max_step, min(max_step, wanted))
        server_x += step
        predictor.ack(seq, None if step == wanted else {"x": server_x})
    assert last_seq > 0 and predictor.corrections > 0
    assert predictor.predicted["x"] == pytest.approx(server_x)
    assert not predictor.pending


def test_the_last_correction_says_what_it_replaced():
    """A debug view draws where the prediction was and where the server put it."""
    predictor = Predictor(
        lambda fields, dx: {**fields, "x": fields["x"] + dx}, {"x": 0}
    )
    seq, _ = predictor.input(10)
    predictor.input(1)
    assert predictor.last_correction is None
    predictor.ack(seq, {"x": 4})
    assert predictor.last_correction == ({"x": 11}, {"x": 5})
    predictor.ack(seq + 1)
    assert predictor.last_correction == ({"x": 11}, {"x": 5})


def test_ack_without_correction_keeps_pending_inputs_applied():
    """An ack drops what it covers and keeps the rest on the acknowledged state."""
    predictor = Predictor(lambda f, dx: {"x": f["x"] + dx}, {"x": 0})
    for dx in (1, 2, 3):
        predictor.input(dx)
    predictor.ack(2)
    assert predictor.authoritative == {"x": 3}
    assert predictor.predicted == {"x": 6}
    assert [seq for seq, _, _ in predictor.pending] == [3]
