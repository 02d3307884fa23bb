/** The state mirror, state.check verification, a forced desync, prediction and correction. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { stateHash, canonicalJson } from "../rtgateway.js";
import { client, until, sleep } from "./env.mjs";

test("canonicalJson is RFC 8785", () => {
  assert.equal(canonicalJson({ b: 1, a: [1.5, "x", null, true], "\u20ac": 1e21, é: -0 }), '{"a":[1.5,"x",null,true],"b":1,"é":0,"€":1e+21}');
  assert.equal(canonicalJson({ x: 12.34, y: 0.1 + 0.2, z: 100 }), '{"x":12.34,"y":0.30000000000000004,"z":100}');
  assert.equal(canonicalJson({ "\ud83d\ude00": 1, "\ufb01": 2 }), '{"\ud83d\ude00":1,"\ufb01":2}');
});

test("the mirror follows snapshot and deltas, equal to the server, every check passing; a forced desync is repaired", async () => {
  const ivy = client("ivy");
  const jack = client("jack");
  await ivy.connect();
  await jack.connect();
  const joined = await ivy.join("arena", { x: 0, y: 0, name: "ivy" });
  assert.equal(joined.entity, "player.ivy");
  assert.equal(ivy.entity, "player.ivy");
  await jack.join("arena", { x: 5, y: 5, name: "jack" });
  await until(() => jack.mirror.has("player.ivy") && ivy.mirror.has("player.jack"), "both entities in both mirrors");
  // The move allowance grows at max_speed from the join on: let it fill.
  await sleep(300);
  assert.equal(ivy.stats().corrections, 0);

  // Moves within max_speed (20 per second): 0.3 every 30 ms is 10 per second;
  // an unquantized value is stored and sent rounded to the quantum 0.01.
  let x = 0;
  const seenX = [];
  for (let n = 0; n < 30; n++) {
    x = Math.round((x + 0.3) * 100) / 100;
    ivy.update({ x: x + 0.001234, y: 0 });
    await sleep(30);
    const drawn = jack.rendered().get("player.ivy");
    if (drawn) seenX.push(drawn.x);
  }
  await until(() => jack.mirror.get("player.ivy").fields.x === x, `ivy at x=${x} in jack's mirror`);
  assert.deepEqual(jack.mirror.get("player.ivy").fields, { x, y: 0, hp: 100, name: "ivy" });
  // Interpolated: drawn behind the newest position, never ahead of it, and moving.
  assert.ok(seenX.length > 10);
  assert.ok(seenX.every((v) => v >= 0 && v <= x + 1e-9), `drawn x within [0, ${x}]`);
  assert.ok(seenX[seenX.length - 1] > seenX[0]);

  // Quiet: the gateway's hash of jack's view equals the hash of his mirror.
  await sleep(200);
  const server = await jack.call("state.hash", {});
  assert.equal(server.tick, jack.tick);
  assert.equal(server.hash, await stateHash(jack.mirror, jack.entity));

  await until(() => jack.stats().checks >= 5, "five state.check");
  assert.equal(jack.stats().desyncs, 0);
  assert.equal(ivy.stats().desyncs, 0);

  // Corrupt the mirror: the next check differs, state.sync brings a snapshot.
  const desyncs = [];
  jack.on("client.desync", (d) => desyncs.push(d));
  const checks = jack.stats().checks;
  jack.mirror.get("player.ivy").fields.x = 999;
  await until(() => jack.stats().desyncs === 1 && jack.mirror.get("player.ivy").fields.x === x, "desync detected and repaired");
  assert.equal(jack.stats().checkMismatches, 1);
  assert.equal(jack.stats().syncs, 1);
  assert.equal(desyncs.length, 1);
  assert.notEqual(desyncs[0].expected, desyncs[0].actual);
  await until(() => jack.stats().checks >= checks + 4, "checks after the repair");
  assert.equal(jack.stats().desyncs, 1, "no further desync once repaired");

  await ivy.close();
  await jack.close();
});

test("prediction applies inputs at once; a move faster than max_speed is corrected and reconciled", async () => {
  const hank = client("hank");
  await hank.connect();
  await hank.join("arena", { x: 0, y: 0, name: "hank" });
  await until(() => hank.mirror.has("player.hank"), "own entity in the snapshot");
  // The move allowance grows at max_speed from the join on: let it fill.
  await sleep(300);
  const move = (fields, command) => ({ ...fields, x: Math.round((fields.x + command.dx) * 100) / 100 });
  hank.predictWith(move);
  for (let n = 0; n < 10; n++) {
    const predicted = hank.input({ dx: 0.25 });
    assert.equal(predicted.x, Math.round((n + 1) * 25) / 100);
    await sleep(30);
  }
  await until(() => hank.predictor.pending.length === 0, "every input acknowledged");
  assert.equal(hank.stats().corrections, 0);
  assert.equal(hank.rendered().get("player.hank").x, 2.5);

  // 500 units at once, at 20 per second: shortened along the same direction.
  const jumped = hank.input({ dx: 500 });
  assert.equal(jumped.x, 502.5);
  hank.input({ dx: 0.25 });
  await until(() => hank.stats().corrections === 1, "a correction");
  await until(() => hank.predictor.pending.length === 0, "the inputs after it acknowledged");
  const corrected = hank.lastAck;
  assert.ok(corrected.v > 0);
  const predicted = hank.predictor.predicted.x;
  assert.ok(predicted < 100 && predicted > 2.5, `reconciled x ${predicted}`);
  assert.equal(hank.rendered().get("player.hank").x, predicted);
  // The server holds what the prediction was rebuilt to: a fresh snapshot says so.
  const snapshots = [];
  hank.on("state.snapshot", (params) => snapshots.push(params));
  await hank.call("state.sync", {});
  await until(() => snapshots.length === 1, "the snapshot after state.sync");
  assert.equal(snapshots[0].entities["player.hank"].fields.x, predicted);
  await hank.close();
});
