/** The rtgw.v1.cbor subprotocol with cbor-x as the codec, against the gateway. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Encoder } from "cbor-x";
import { RpcError } from "../rtgateway.js";
import { client, until, sleep } from "./env.mjs";

// Plain CBOR maps (no record extension the gateway cannot read), decoded to
// objects, and 64-bit integers (server_time_ms, ts_ms) as numbers, not BigInt.
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true });
const codec = { name: "cbor", encode: (message) => cbor.encode(message), decode: (data) => cbor.decode(data) };

test("CBOR: calls, typed errors, reliable events and state checks", async () => {
  const frank = client("frank", { codec });
  const gina = client("gina", { codec });
  const welcome = await frank.connect();
  assert.equal(welcome.player_id, "frank");
  assert.equal(frank.ws.protocol, "rtgw.v1.cbor");
  const pong = await frank.call("sys.ping", {});
  assert.equal(typeof pong.server_time_ms, "number");
  await assert.rejects(frank.call("no.such", {}), (error) => error instanceof RpcError && error.code === -32601);

  const seen = [];
  frank.on("chat.line", (params) => seen.push(params));
  await frank.subscribe("chat.cbor");
  for (let n = 1; n <= 5; n++) {
    await frank.call("pubsub.publish", { topic: "chat.cbor", type: "chat.line", data: { n, text: "héllo" } });
  }
  await until(() => seen.length === 5, "five events");
  assert.deepEqual(
    seen.map((p) => p.data.n),
    [1, 2, 3, 4, 5],
  );
  assert.equal(seen[0].data.text, "héllo");
  assert.equal(typeof seen[0].ts_ms, "number");
  assert.equal(typeof seen[0].offset, "number");

  await gina.connect();
  await frank.join("arena", { x: 1.5, y: 2.25, name: "frank" });
  await gina.join("arena", { x: 3, y: 4, name: "gina" });
  await sleep(300); // the move allowance grows at max_speed from the join on
  for (let n = 1; n <= 10; n++) {
    frank.update({ x: 1.5 + n * 0.1, y: 2.25 });
    await sleep(30);
  }
  await until(() => gina.mirror.get("player.frank")?.fields.x === 2.5, "frank at 2.5 in gina's mirror");
  await until(() => gina.stats().checks >= 5, "five checks over CBOR");
  assert.equal(gina.stats().desyncs, 0);
  assert.equal(frank.stats().desyncs, 0);
  assert.ok(frank.stats().bytesOutPerS > 0 || frank.stats().messagesOut > 0);
});
