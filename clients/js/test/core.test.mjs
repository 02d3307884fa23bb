/** Connection, calls, typed errors, handler isolation, the bounded queue and stats. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { RpcError, HIGH, LOW, NORMAL } from "../rtgateway.js";
import { client, until, sleep } from "./env.mjs";

test("connect, call, and a typed error with its code and data", async () => {
  const alice = client("alice");
  const statuses = [];
  alice.on("client.status", (s) => statuses.push(s.state));
  const welcome = await alice.connect();
  assert.equal(welcome.player_id, "alice");
  assert.equal(welcome.protocol, 1);
  const pong = await alice.call("sys.ping", {});
  assert.equal(typeof pong.server_time_ms, "number");

  await assert.rejects(alice.call("no.such", {}), (error) => {
    assert.ok(error instanceof RpcError);
    assert.equal(error.code, -32601);
    assert.equal(error.local, false);
    return true;
  });
  await assert.rejects(alice.call("pubsub.publish", { topic: "chat.x", type: "chat.line" }), (error) => {
    assert.equal(error.code, -32602);
    assert.ok(Array.isArray(error.data.errors));
    return true;
  });
  await alice.close();
  assert.deepEqual(statuses, ["connecting", "connected", "closed"]);
  assert.equal(alice.state, "closed");
});

test("a throwing handler is isolated and reported on error", async () => {
  const bob = client("bob");
  const seen = [];
  const errors = [];
  bob.on("client.error", (e) => errors.push(e));
  bob.on("chat.line", () => {
    throw new Error("a buggy handler");
  });
  bob.on("chat.line", async () => {
    throw new Error("a buggy async handler");
  });
  bob.on("chat.line", (params) => seen.push(params.data.n));
  await bob.connect();
  await bob.subscribe("chat.isolation");
  for (let n = 1; n <= 3; n++) {
    await bob.call("pubsub.publish", { topic: "chat.isolation", type: "chat.line", data: { n } });
  }
  await until(() => seen.length === 3 && errors.length === 6, "three events and six handler errors");
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(errors[0].event, "chat.line");
  assert.match(errors[0].error.message, /buggy/);
  assert.equal(bob.stats().handlerErrors, 6);
  assert.equal((await bob.call("sys.ping", {})).server_time_ms > 0, true);
  await bob.close();
});

test("the queue is bounded: overflow drops the lowest priority, oldest first, with -32005", async () => {
  const carol = client("carol", { queueSize: 3 });
  const outcomes = [];
  const track = (name, promise) =>
    promise.then(
      () => outcomes.push(`${name} ok`),
      (error) => outcomes.push(`${name} ${error.code}${error.local ? " local" : ""}`),
    );
  // Not connected yet: everything waits in the queue.
  const low1 = track("low1", carol.call("sys.ping", {}, { priority: LOW }));
  const low2 = track("low2", carol.call("sys.ping", {}, { priority: LOW }));
  const normal = track("normal", carol.call("sys.ping", {}, { priority: NORMAL }));
  const high = track("high", carol.call("sys.ping", {}, { priority: HIGH }));
  await sleep(0);
  assert.deepEqual(outcomes, ["low1 -32005 local"]);
  assert.equal(carol.stats().queued, 3);
  assert.equal(carol.stats().dropped, 1);
  await carol.connect();
  await Promise.all([low1, low2, normal, high]);
  assert.deepEqual(outcomes, ["low1 -32005 local", "high ok", "normal ok", "low2 ok"]);
  assert.equal(carol.stats().queued, 0);
  await carol.close();
});

test("a queued call times out locally with -32006", async () => {
  const dan = client("dan");
  await assert.rejects(dan.call("sys.ping", {}, { timeoutMs: 50 }), (error) => error.code === -32006 && error.local);
  assert.equal(dan.stats().queued, 0);
  await dan.close();
});

test("stats report rates over a sliding window, RTT and counters", async () => {
  const erin = client("erin", { pingIntervalMs: 200 });
  await erin.connect();
  const started = Date.now();
  while (Date.now() - started < 2200) {
    await erin.call("sys.ping", {});
    await sleep(20);
  }
  const stats = erin.stats();
  for (const field of [
    "state",
    "rttMs",
    "messagesInPerS",
    "messagesOutPerS",
    "bytesInPerS",
    "bytesOutPerS",
    "desyncs",
    "corrections",
    "reconnects",
    "resumes",
    "queued",
    "dropped",
  ]) {
    assert.ok(field in stats, `stats has ${field}`);
  }
  assert.equal(stats.state, "open");
  assert.ok(stats.rttMs > 0 && stats.rttMs < 1000, `rtt ${stats.rttMs}`);
  // About 50 calls and a few pings a second, over a 5 s window of which 2 s ran.
  assert.ok(stats.messagesOutPerS > 5, `out ${stats.messagesOutPerS}/s`);
  assert.ok(stats.messagesInPerS > 5, `in ${stats.messagesInPerS}/s`);
  assert.ok(stats.bytesOutPerS > stats.messagesOutPerS * 20, `bytes out ${stats.bytesOutPerS}/s`);
  assert.ok(stats.bytesInPerS > stats.messagesInPerS * 20, `bytes in ${stats.bytesInPerS}/s`);
  assert.equal(stats.reconnects, 0);
  assert.equal(stats.desyncs, 0);
  await erin.close();
});
