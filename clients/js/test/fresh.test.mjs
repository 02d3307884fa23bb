/**
 * Two gateways that share nothing (memory backends): after its gateway is
 * killed the client reaches the other, whose session.resume answers -32003;
 * the client keeps the fresh session, subscribes again and says "connected",
 * and joins no zone it had left.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, until, GATEWAYS, URLS } from "./env.mjs";

test("a refused resume (-32003) starts a fresh session and subscribes again", async () => {
  const player = client("dan", { url: URLS });
  const statuses = [];
  player.on("client.status", (s) => statuses.push(s.state));
  const seen = [];
  player.on("chat.line", (params) => seen.push(params.data.n));
  const welcome = await player.connect();
  await player.subscribe("chat.fresh");
  // A zone joined and left is not joined again by the fresh session.
  await player.join("arena", { x: 1, y: 1, name: "dan" });
  await until(() => player.mirror.has("player.dan"), "the snapshot of the join");
  await player.leave();
  assert.equal(player.zone, null);
  assert.equal(player.mirror.size, 0);
  const other = Object.keys(GATEWAYS).find((id) => id !== welcome.gateway_id);
  process.kill(GATEWAYS[welcome.gateway_id].pid, "SIGKILL");
  await until(() => player.welcome.gateway_id === other && player.state === "open", "open on the other gateway", 20000);
  assert.equal(statuses.filter((s) => s === "connected").length, 2, statuses.join());
  assert.ok(!statuses.includes("resumed"));
  assert.equal(player.stats().resumes, 0);
  assert.equal(player.stats().resumeAttempts, 1);
  const publisher = client("erin", { url: GATEWAYS[other].url });
  await publisher.connect();
  // The subscription is there again: events published on the new gateway arrive.
  await until(async () => {
    await publisher.call("pubsub.publish", { topic: "chat.fresh", type: "chat.line", data: { n: seen.length + 1 } });
    return seen.length > 0;
  }, "an event on the new session");
  await assert.rejects(player.call("state.hash", {}), (error) => error.code === -32003);
  assert.equal(player.zone, null);
  await player.close();
  await publisher.close();
});
