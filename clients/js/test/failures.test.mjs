/**
 * What goes wrong around a connection: endpoints that refuse, a token
 * provider or URL that fails, a gateway that stops answering (SIGSTOP) in
 * the middle of a close or a resume. The client backs off, settles every
 * promise it handed out and never hangs in a phase. Gateways: URLS[0] plain,
 * URLS[1] closing connections idle for a second (4002).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { client, until, sleep, GATEWAYS, URLS } from "./env.mjs";

/** A ws:// URL on a loopback port nothing listens on. */
async function refusedUrl() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `ws://127.0.0.1:${port}/ws`;
}

/** A client that gives up after `attempts` reconnects; its statuses and errors. */
function failing(options, attempts = 3) {
  const made = client("alice", { ...options, reconnect: { initialMs: 40, maxMs: 160, maxAttempts: attempts } });
  const statuses = [];
  const errors = [];
  made.on("client.status", (s) => statuses.push(s));
  made.on("client.error", (e) => errors.push(e));
  return { made, statuses, errors };
}

/** The reconnects waited a full-jitter delay each, at most the ceiling of their attempt. */
function backedOff(statuses, attempts) {
  const waits = statuses.filter((s) => s.state === "reconnecting");
  assert.equal(waits.length, attempts, JSON.stringify(statuses));
  for (const wait of waits) {
    assert.ok(wait.retryInMs > 0, `attempt ${wait.attempt} waited ${wait.retryInMs} ms`);
    assert.ok(wait.retryInMs <= Math.min(160, 40 * 2 ** (wait.attempt - 1)), JSON.stringify(wait));
  }
  assert.equal(statuses.at(-1).state, "closed");
}

test("an endpoint that refuses is retried after the backoff, from a list or a url function", async () => {
  const url = await refusedUrl();
  for (const option of [url, () => url]) {
    const { made, statuses } = failing({ url: option });
    await assert.rejects(made.connect(), /gave up after 3 reconnect attempts/);
    backedOff(statuses, 3);
    assert.equal(statuses.filter((s) => s.state === "connecting").length, 4);
  }
});

test("a token provider that fails is asked again after the backoff, its failures reported", async () => {
  let asked = 0;
  const { made, statuses, errors } = failing({
    token: () => {
      asked++;
      throw new Error("the auth service is down");
    },
  });
  await assert.rejects(made.connect(), /gave up/);
  backedOff(statuses, 3);
  assert.equal(asked, 4);
  assert.equal(errors.length, 4);
  assert.match(String(errors[0].error), /the auth service is down/);
});

test("a URL that does not parse backs off like a refusal; connect() on a closed client rejects", async () => {
  const { made, statuses, errors } = failing({ url: "not a url" }, 1);
  await assert.rejects(made.connect(), /gave up/);
  backedOff(statuses, 1);
  assert.equal(errors.length, 2);
  assert.equal(made.state, "closed");
  await assert.rejects(made.connect(), /the client is closed/);
  await made.close();
});

test("close() settles when the gateway never answers session.close, leaving no rejection behind", async () => {
  const unhandled = [];
  const record = (reason) => unhandled.push(reason);
  process.on("unhandledRejection", record);
  const player = client("bob", { url: URLS[0] });
  await player.connect();
  const { pid } = Object.values(GATEWAYS).find((g) => g.url === URLS[0]);
  process.kill(pid, "SIGSTOP");
  try {
    await player.close();
    await sleep(20);
  } finally {
    process.kill(pid, "SIGCONT");
    process.off("unhandledRejection", record);
  }
  assert.equal(player.state, "closed");
  assert.equal(player.stats().lastCloseCode, 1000);
  assert.deepEqual(unhandled, []);
});

test("a session.resume unanswered within callTimeoutMs gives a fresh session, not a hang", async () => {
  // URLS[1] closes a connection idle for a second: with no pings the
  // client is dropped (4002) and resumes. The gateway is stopped as the
  // second welcome arrives, before the resume reaches it.
  const player = client("carol", { url: URLS[1], pingIntervalMs: 0, callTimeoutMs: 500 });
  const { pid } = Object.values(GATEWAYS).find((g) => g.url === URLS[1]);
  const statuses = [];
  player.on("client.status", (s) => statuses.push(s.state));
  let welcomes = 0;
  let stopped = false;
  player.on("client.welcome", () => {
    if (++welcomes === 2) {
      process.kill(pid, "SIGSTOP");
      stopped = true;
    }
  });
  try {
    await player.connect();
    await until(() => stopped, "the drop (4002) and the second welcome");
    await until(() => player.state === "open", "open again after the resume timed out", 3000);
  } finally {
    process.kill(pid, "SIGCONT");
  }
  assert.equal(player.stats().lastCloseCode, 4002);
  assert.deepEqual(statuses.slice(-3), ["reconnecting", "connecting", "connected"]);
  assert.equal(player.stats().resumes, 0);
  assert.equal(player.stats().resumeAttempts, 1);
  await player.close();
});

test("without prediction the own entity is drawn as last acknowledged; one standing still is drawn", async () => {
  const still = client("erin", { url: URLS[0] });
  await still.connect();
  await still.join("arena", { x: 5, y: 5, name: "erin" });
  const player = client("dan", { url: URLS[0] });
  await player.connect();
  await player.join("arena", { x: 1, y: 1, name: "dan" });
  await until(() => player.mirror.has(player.entity), "the own entity in the snapshot");
  // erin never moves: only the snapshot after the join response tells of her.
  await until(() => player.rendered().has("player.erin"), "erin drawn");
  assert.deepEqual(player.rendered().get("player.erin"), { x: 5, y: 5, hp: 100, name: "erin" });
  player.update({ name: "dan the second", hp: 90 });
  await until(() => player.unacked.length === 0, "the update acknowledged");
  const own = player.rendered().get(player.entity);
  assert.equal(own.name, "dan the second");
  assert.equal(own.hp, 90);
  assert.equal(own.x, 1);
  assert.equal(player.mirror.get(player.entity).v, player.lastAck.v);
  await player.close();
  await still.close();
});
