/**
 * What the Python side (tests/browser/test_js_client.py) hands the node
 * tests: the URLs of real gateways, tokens it minted, and each gateway's
 * URL and process id for the tests that stop one.
 */
import { afterEach } from "node:test";
import { Client } from "../rtgateway.js";

const opened = [];

// A test that fails half-way still closes its clients, or their timers
// would keep node running until the Python side gives up.
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
});

function json(name, fallback) {
  const value = process.env[name];
  if (value === undefined) {
    if (fallback !== undefined) return fallback;
    throw new Error(`${name} is not set: run these tests through tests/browser/test_js_client.py`);
  }
  return JSON.parse(value);
}

/** {player: jwt} */
export const TOKENS = json("RTGW_TOKENS");
/** every gateway URL, in the order of the Python side */
export const URLS = json("RTGW_URLS");
/** {gateway_id: {url, pid}} */
export const GATEWAYS = json("RTGW_GATEWAYS", {});

/** A client for `player` with fast reconnects; `options` override. */
export function client(player, options = {}) {
  if (!(player in TOKENS)) throw new Error(`no token minted for ${player}`);
  const made = new Client({
    url: URLS[0],
    token: () => TOKENS[player],
    reconnect: { initialMs: 50, maxMs: 500 },
    ...options,
  });
  opened.push(made);
  return made;
}

/** Poll `predicate` every 10 ms until true; fail after `timeoutMs`. */
export async function until(predicate, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
