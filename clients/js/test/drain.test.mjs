/**
 * A gateway stopped with SIGTERM closes its connections 1001 with the
 * reason {"reconnect": true, "after_ms": N}: the client waits N ms (not its
 * own backoff) and resumes on the other gateway of the cluster.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, until, GATEWAYS, URLS } from "./env.mjs";

test("1001 advice honoured: reconnect after after_ms, resumed on the other gateway", async () => {
  const player = client("carol", { url: URLS, reconnect: { initialMs: 10, maxMs: 20 } });
  const statuses = [];
  player.on("client.status", (s) => statuses.push({ ...s, at: performance.now() }));
  const welcome = await player.connect();
  const draining = welcome.gateway_id;
  process.kill(GATEWAYS[draining].pid, "SIGTERM");
  await until(() => statuses.some((s) => s.state === "resumed"), "resumed", 20000);
  const advised = statuses.find((s) => s.state === "reconnecting");
  assert.equal(advised.code, 1001);
  const reason = JSON.parse(advised.reason);
  assert.equal(reason.reconnect, true);
  assert.equal(advised.retryInMs, reason.after_ms);
  const next = statuses.find((s) => s.state === "connecting" && s.at > advised.at);
  assert.ok(next.at - advised.at >= reason.after_ms - 1, `waited ${next.at - advised.at} ms of ${reason.after_ms}`);
  assert.notEqual(player.welcome.gateway_id, draining);
  assert.equal(player.stats().resumes, 1);
  await player.close();
});
