/**
 * Two gateways sharing Redis. The client is given both URLs (any gateway of
 * a cluster resumes any session); its gateway is SIGKILLed mid-stream and it
 * resumes on the other with the positions of its reliable topic: every
 * event once, in order.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, until, sleep, GATEWAYS, URLS } from "./env.mjs";

test("SIGKILL of the gateway: resumed on the other, nothing lost, no duplicates", async () => {
  const subscriber = client("alice", { url: URLS });
  const statuses = [];
  subscriber.on("client.status", (s) => statuses.push(s.state));
  const seen = [];
  subscriber.on("chat.line", (params) => seen.push(params.data.n));
  const welcome = await subscriber.connect();
  const victim = welcome.gateway_id;
  const survivor = Object.keys(GATEWAYS).find((id) => id !== victim);
  const publisher = client("bob", { url: GATEWAYS[survivor].url });
  await publisher.connect();
  await subscriber.subscribe("chat.kill");
  for (let n = 1; n <= 200; n++) {
    await publisher.call("pubsub.publish", { topic: "chat.kill", type: "chat.line", data: { n } });
    if (n === 60) process.kill(GATEWAYS[victim].pid, "SIGKILL");
    await sleep(2);
  }
  await until(() => seen.length >= 200, "200 events", 20000);
  await sleep(200);
  assert.deepEqual(seen, Array.from({ length: 200 }, (_, i) => i + 1));
  assert.equal(subscriber.welcome.gateway_id, survivor);
  assert.equal(subscriber.stats().resumes, 1);
  assert.ok(statuses.includes("resumed"), statuses.join());
  assert.equal(statuses.filter((s) => s === "connected").length, 1, "no fresh session after the first");
  await subscriber.close();
  await publisher.close();
});
