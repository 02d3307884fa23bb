/**
 * rtgateway.js: the browser and node client of the rtgateway protocol, version 1.
 *
 * One ES module with no dependencies and no build step, so that a page can
 * import it straight from the gateway (`/client/rtgateway.js`) and a node
 * program from the npm package. It makes the same decisions as the Python
 * client (rtgateway.client): backoff with full jitter, the gateway's 1001
 * advice, session.resume with the positions of reliable topics, a bounded
 * priority queue while disconnected, a state mirror checked against every
 * state.check, interpolation of others and prediction of the own entity.
 *
 * @module rtgateway
 */

/** Priorities, smallest first out of the queue. */
export const HIGH = 0;
export const NORMAL = 1;
export const LOW = 2;

/** JSON-RPC error codes the client itself uses for its local failures. */
const UNAVAILABLE = -32005;
const TIMEOUT = -32006;

/**
 * Close codes after which reconnecting would be wrong: closed by us, the
 * session taken over by another connection, kicked by an administrator.
 */
const FINAL_CLOSE_CODES = new Set([1000, 4003, 4010]);
/**
 * Inputs kept while they wait for their ack. More only pile up on a
 * connection that stopped acknowledging (seconds of inputs at game rate):
 * the oldest are folded into the next or dropped.
 */
const MAX_UNACKED = 1024;

/**
 * Methods that may be sent again after a lost connection: doing them twice
 * leaves the gateway as doing them once. Others fail "outcome unknown".
 */
const IDEMPOTENT = new Set([
  "sys.ping",
  "presence.set",
  "state.sync",
  "pubsub.subscribe",
  "pubsub.unsubscribe",
]);

/** Notifications whose latest value replaces any queued earlier one. */
const COALESCED = new Set(["state.update"]);

const STATE_PUSHES = new Set(["state.snapshot", "state.delta", "state.check"]);

/** The render delay, in fast ticks, when none is configured (as in Python). */
const DELAY_TICKS = 3;

/**
 * A failed call: a JSON-RPC error from the gateway, or one the client
 * raised itself (`local` true: queue overflow -32005, timeout -32006,
 * connection lost -32005, client closed -32005), so that applications
 * handle both by `code` alone.
 */
export class RpcError extends Error {
  /**
   * @param {number} code JSON-RPC error code
   * @param {string} message
   * @param {*} [data] the error's `data` member
   * @param {boolean} [local] raised by the client, not the gateway
   */
  constructor(code, message, data = undefined, local = false) {
    super(`${message} (${code})`);
    this.name = "RpcError";
    this.code = code;
    this.rpcMessage = message;
    this.data = data;
    this.local = local;
  }
}

// -- canonical JSON and the view hash -------------------------------------------------

/**
 * RFC 8785 (JSON Canonicalization Scheme) serialization of `value`.
 *
 * RFC 8785 defines numbers as ECMAScript's Number::toString and strings as
 * JSON.stringify writes them, so JSON.stringify is the serializer for
 * scalars; what it adds is members sorted by UTF-16 code units (the order
 * of JavaScript's default string comparison) and no white space. This is
 * what the gateway hashes (rtgateway/state/viewhash.py), so a mirror that
 * holds the same values hashes the same.
 *
 * @param {*} value
 * @returns {string}
 */
export function canonicalJson(value) {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`no JSON for ${value}`);
      return JSON.stringify(value);
    case "bigint":
      // A CBOR decoder without int64AsNumber gives BigInt for large integers.
      return value.toString();
    case "string":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
      const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
      entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`)
        .join(",")}}`;
    }
    default:
      throw new TypeError(`no JSON for a ${typeof value}`);
  }
}

/**
 * The canonical form of a view, `{id: {v, fields}}`, without `exclude`.
 *
 * @param {Map<string, {v: number, fields: object}>|object} entities
 * @param {string|null} [exclude] the own entity (not part of the hash)
 */
function viewCanonical(entities, exclude = null) {
  const view = {};
  const pairs = entities instanceof Map ? entities.entries() : Object.entries(entities);
  for (const [id, entry] of pairs) {
    if (id !== exclude) view[id] = { v: entry.v, fields: entry.fields };
  }
  return canonicalJson(view);
}

async function sha256Hex16(text) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error("crypto.subtle is not available (a secure context is needed)");
  const digest = new Uint8Array(await subtle.digest("SHA-256", new TextEncoder().encode(text)));
  let hex = "";
  for (let i = 0; i < 8; i++) hex += digest[i].toString(16).padStart(2, "0");
  return hex;
}

/**
 * The view hash of state.check: the first 16 hex digits of the SHA-256 of
 * the canonical `{id: {v, fields}}` of every entity but `exclude`.
 *
 * @param {Map<string, {v: number, fields: object}>|object} entities
 * @param {string|null} [exclude]
 * @returns {Promise<string>}
 */
export function stateHash(entities, exclude = null) {
  return sha256Hex16(viewCanonical(entities, exclude));
}

// -- small parts ----------------------------------------------------------------------

/**
 * Counts in one-second buckets over the last `windowS` whole seconds, so
 * stats() costs the same at 10 or 10,000 messages a second (stats.py).
 */
class Rate {
  constructor(windowS) {
    this.windowS = windowS;
    this.buckets = []; // [second, amount]
    this.total = 0;
  }

  add(nowMs, amount = 1) {
    const second = Math.floor(nowMs / 1000);
    const last = this.buckets[this.buckets.length - 1];
    if (last && last[0] === second) last[1] += amount;
    else {
      this.buckets.push([second, amount]);
      while (this.buckets.length && this.buckets[0][0] <= second - this.windowS) this.buckets.shift();
    }
    this.total += amount;
  }

  perSecond(nowMs) {
    const current = Math.floor(nowMs / 1000);
    let counted = 0;
    for (const [second, amount] of this.buckets) {
      if (second >= current - this.windowS && second < current) counted += amount;
    }
    return counted / this.windowS;
  }
}

/**
 * Where the client is on each reliable topic, and which events are new
 * (positions.py): events at or below the held position are replayed
 * duplicates and dropped, so handlers see each event once; an offset that
 * jumps, or a new epoch, is a gap the application hears about ("client.lost").
 */
class Positions {
  constructor() {
    /** topic -> {offset, epoch} or null (volatile, or nothing known yet) */
    this.topics = new Map();
    this.unanchored = new Set();
    this.duplicates = 0;
    this.gaps = 0;
  }

  subscribed(topic, result) {
    const { offset, epoch } = result ?? {};
    if (offset == null || epoch == null) {
      this.topics.set(topic, null);
      return;
    }
    const held = this.topics.get(topic);
    // A held position stays when the subscribe was sent with `since`: the
    // events after it are on their way.
    if (result.recovered === false || held == null || held.epoch !== epoch) {
      this.unanchored.delete(topic);
      this.topics.set(topic, { offset, epoch });
    }
  }

  forget(topic) {
    this.topics.delete(topic);
    this.unanchored.delete(topic);
  }

  keepOnly(topics) {
    const keep = new Set(topics);
    const dropped = [...this.topics.keys()].filter((t) => !keep.has(t));
    for (const topic of dropped) this.forget(topic);
    return dropped;
  }

  unanchor(topic) {
    if (this.topics.has(topic)) this.unanchored.add(topic);
  }

  resumePositions() {
    const out = {};
    for (const [topic, position] of this.topics) if (position) out[topic] = { ...position };
    return out;
  }

  /** "new", "duplicate" or "gap" for a topic event; moves the position on. */
  accept(params) {
    const { topic, offset, epoch } = params;
    if (typeof topic !== "string" || typeof offset !== "number" || typeof epoch !== "string") {
      return "new";
    }
    const held = this.topics.get(topic);
    if (held == null || this.unanchored.has(topic)) {
      this.unanchored.delete(topic);
      this.topics.set(topic, { offset, epoch });
      return "new";
    }
    if (epoch === held.epoch && offset <= held.offset) {
      this.duplicates++;
      return "duplicate";
    }
    this.topics.set(topic, { offset, epoch });
    if (epoch !== held.epoch || offset !== held.offset + 1) {
      this.gaps++;
      return "gap";
    }
    return "new";
  }
}

/**
 * Messages waiting for a connection, by priority then age, within one
 * bound. Unlike a queue that refuses when full, overflow drops the least
 * important entry (the lowest priority, the oldest among equals; possibly
 * the newcomer): a client that was offline keeps what matters most and the
 * caller of what was dropped hears it at once (-32005). Game inputs
 * (state.update) keep only the latest, outside the bound: an old input is
 * worthless once a newer one exists.
 */
class OutboundQueue {
  constructor(size) {
    this.size = size;
    this.items = [];
    this.latest = new Map();
    this.seq = 0;
    this.dropped = 0;
    this.coalesced = 0;
  }

  get length() {
    return this.items.length + this.latest.size;
  }

  /** Queue `item`; returns the entry dropped to make room, if any. */
  put(item) {
    if (item.notification && COALESCED.has(item.method)) {
      if (this.latest.has(item.method)) this.coalesced++;
      this.latest.set(item.method, item);
      return null;
    }
    item.order = this.seq++;
    if (this.items.length < this.size) {
      this.items.push(item);
      return null;
    }
    let victim = item;
    for (const held of this.items) {
      if (held.priority > victim.priority || (held.priority === victim.priority && held.order < victim.order)) {
        victim = held;
      }
    }
    this.dropped++;
    if (victim !== item) {
      this.items.splice(this.items.indexOf(victim), 1);
      this.items.push(item);
    }
    return victim;
  }

  /** Put back a request lost with its connection, ahead of newer ones. */
  putBack(item) {
    item.order = -this.seq++;
    this.items.push(item);
  }

  remove(item) {
    const index = this.items.indexOf(item);
    if (index >= 0) {
      this.items.splice(index, 1);
      return true;
    }
    for (const [method, held] of this.latest) {
      if (held === item) {
        this.latest.delete(method);
        return true;
      }
    }
    return false;
  }

  drain() {
    const out = this.items.sort((a, b) => a.priority - b.priority || a.order - b.order);
    this.items = [];
    out.push(...this.latest.values());
    this.latest.clear();
    return out;
  }
}

/**
 * Other entities drawn between the ticks the gateway sent (interpolation.py):
 * `delayS` in the past, linearly between the two samples around the render
 * time; past the newest sample the last motion is extrapolated for at most
 * `maxExtrapolationS`, then glides back over as long again to the last
 * position received and holds there (the gateway sends nothing for an
 * entity that stopped); an entity a later tick left unchanged is known to
 * have stopped and is not extrapolated at all. The render clock maps
 * local time to zone time from the least delayed samples and moves within
 * `slew` of real time, so motion never jumps back when the estimate improves.
 */
class Interpolator {
  constructor(delayS, maxExtrapolationS = 0.1, { slew = 0.1, snapS = 0.5, bufferS = 2.0 } = {}) {
    this.delayS = delayS;
    this.maxExtrapolationS = maxExtrapolationS;
    this.slew = slew;
    this.snapS = snapS;
    this.bufferS = bufferS;
    this.samples = new Map();
    this.offset = null;
    /** the newest zone time a state message was received for */
    this.heardAt = null;
    this.render = null;
    this.lastNow = null;
  }

  reset() {
    this.samples.clear();
    this.offset = null;
    this.heardAt = null;
  }

  /** A state message for zone time `at`: the entities it left out did not move. */
  heard(at) {
    if (this.heardAt === null || at > this.heardAt) this.heardAt = at;
  }

  add(id, at, fields, now) {
    const offset = at - now;
    if (this.offset === null || offset > this.offset) this.offset = offset;
    let samples = this.samples.get(id);
    if (!samples) this.samples.set(id, (samples = []));
    if (samples.length && at <= samples[samples.length - 1][0]) return;
    samples.push([at, { ...fields }]);
    while (samples.length > 2 && samples[1][0] < at - this.bufferS) samples.shift();
  }

  remove(id) {
    this.samples.delete(id);
  }

  advance(now) {
    if (this.offset === null) return null;
    const target = now + this.offset - this.delayS;
    if (this.render === null || this.lastNow === null) this.render = target;
    else {
      const elapsed = Math.max(0, now - this.lastNow);
      if (Math.abs(target - (this.render + elapsed)) > this.snapS) {
        this.render = Math.max(target, this.render);
      } else {
        const low = this.render + elapsed * (1 - this.slew);
        const high = this.render + elapsed * (1 + this.slew);
        this.render = Math.min(Math.max(target, low), high);
      }
    }
    this.lastNow = now;
    return this.render;
  }

  sample(id) {
    const samples = this.samples.get(id);
    if (!samples || !samples.length) return null;
    const at = this.render;
    if (at === null) return { ...samples[samples.length - 1][1] };
    let index = 0;
    while (index < samples.length && samples[index][0] <= at) index++;
    if (index === 0) return { ...samples[0][1] };
    if (index < samples.length) {
      const [t0, a] = samples[index - 1];
      const [t1, b] = samples[index];
      return lerpFields(a, b, (at - t0) / (t1 - t0));
    }
    const [t1, last] = samples[samples.length - 1];
    const limit = this.maxExtrapolationS;
    let ahead = at - t1;
    const knownStill = this.heardAt !== null && t1 < this.heardAt;
    if (samples.length < 2 || limit <= 0 || knownStill || ahead >= 2 * limit) return { ...last };
    const [t0, before] = samples[samples.length - 2];
    if (ahead > limit) ahead = 2 * limit - ahead; // back towards the last sample
    return lerpFields(before, last, 1 + ahead / (t1 - t0));
  }
}

/** Fields between `a` (alpha 0) and `b` (alpha 1); non-numbers from `a`. */
function lerpFields(a, b, alpha) {
  const out = { ...a };
  for (const [name, start] of Object.entries(a)) {
    const end = b[name];
    if (typeof start === "number" && typeof end === "number") out[name] = start + (end - start) * alpha;
    else if (
      Array.isArray(start) &&
      Array.isArray(end) &&
      start.length === end.length &&
      start.every((v) => typeof v === "number") &&
      end.every((v) => typeof v === "number")
    ) {
      out[name] = start.map((s, i) => s + (end[i] - s) * alpha);
    }
  }
  return out;
}

/**
 * Client-side prediction and server reconciliation (prediction.py): inputs
 * apply locally at once and wait, numbered, for their ack; an ack rebuilds
 * the prediction from the acknowledged values (overlaid with any
 * correction) plus every input still pending, replayed in order.
 */
class Predictor {
  constructor(apply, fields) {
    this.apply = apply;
    this.authoritative = { ...(fields ?? {}) };
    this.predicted = { ...this.authoritative };
    /** [inputSeq, command, fields sent], oldest first */
    this.pending = [];
    this.corrections = 0;
    /** the newest correction, for a debug view: the prediction it replaced and the rebuilt one */
    this.lastCorrection = null;
  }

  input(command, seq) {
    const fields = this.apply({ ...this.predicted }, command);
    this.predicted = fields;
    this.pending.push([seq, command, { ...fields }]);
    // Each entry holds the whole predicted state, so a later ack needs no older one.
    if (this.pending.length > MAX_UNACKED) this.pending.shift();
    return { ...fields };
  }

  ack(inputSeq, corrected) {
    let acked = null;
    while (this.pending.length && this.pending[0][0] <= inputSeq) acked = this.pending.shift()[2];
    const correction = corrected && Object.keys(corrected).length ? corrected : null;
    if (acked === null && !correction) return;
    const base = { ...(acked ?? this.authoritative) };
    if (correction) {
      this.corrections++;
      Object.assign(base, correction);
    }
    this.authoritative = base;
    let state = { ...base };
    for (const [, command] of this.pending) state = this.apply(state, command);
    if (correction) this.lastCorrection = { predicted: this.predicted, corrected: { ...state } };
    this.predicted = state;
  }

  /** A snapshot holds every input applied: pending ones are dropped, not replayed twice. */
  rebase(fields) {
    this.authoritative = { ...fields };
    this.pending = [];
    this.predicted = { ...fields };
  }
}

const JSON_CODEC = {
  name: "json",
  encode: (message) => JSON.stringify(message),
  decode: (data) => JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data)),
};

function byteLength(data) {
  if (typeof data === "string") return new TextEncoder().encode(data).length;
  return data.byteLength ?? data.length ?? 0;
}

function nowMs() {
  return globalThis.performance ? performance.now() : Date.now();
}

function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(sorted.length / 2) - 1)];
}

// -- the client -------------------------------------------------------------------------

/**
 * One player's connection to a gateway cluster: session, queue, topics and zone.
 *
 * Phases: idle, connecting, handshake (waiting for session.welcome),
 * resuming, open, waiting (for the next attempt), closed.
 */
export class Client {
  /**
   * @param {object} options
   * @param {string|string[]|function(): (string|Promise<string>)} options.url
   *   one gateway URL, several (any gateway of a cluster resumes any session:
   *   a random one that is not known to be down is picked each attempt), or a
   *   provider asked before every attempt
   * @param {string|function(): (string|Promise<string>)} options.token a JWT,
   *   or its provider, asked before every (re)connect so an expired token is
   *   never reused
   * @param {{name: string, encode: function, decode: function}} [options.codec]
   *   absent: JSON text frames (rtgw.v1.json); `{name: "cbor", ...}`: binary
   *   frames (rtgw.v1.cbor)
   * @param {{initialMs?: number, maxMs?: number, multiplier?: number, maxAttempts?: number|null}} [options.reconnect]
   * @param {number} [options.queueSize] bound of the queue while disconnected
   * @param {number} [options.callTimeoutMs] default timeout of every call, queued or sent
   * @param {number} [options.connectTimeoutMs] TCP plus the opening handshake
   * @param {number} [options.pingIntervalMs] sys.ping for RTT and liveness (0: none)
   * @param {number} [options.pingTimeoutMs] an unanswered ping drops the link
   * @param {number} [options.endpointDownMs] how long a failed URL is avoided
   * @param {number|null} [options.interpolationDelayMs] null: three fast ticks
   * @param {number} [options.maxExtrapolationMs]
   * @param {number} [options.statsWindowS] the sliding window of the rates
   * @param {typeof WebSocket} [options.WebSocket] the WebSocket class
   */
  constructor(options = {}) {
    if (!options.url) throw new TypeError("url is required");
    if (options.token === undefined) throw new TypeError("token is required");
    this.options = {
      queueSize: 1000,
      callTimeoutMs: 10000,
      connectTimeoutMs: 10000,
      pingIntervalMs: 5000,
      pingTimeoutMs: 10000,
      endpointDownMs: 30000,
      interpolationDelayMs: null,
      maxExtrapolationMs: 100,
      statsWindowS: 5,
      ...options,
      reconnect: { initialMs: 250, maxMs: 10000, multiplier: 2, maxAttempts: null, ...(options.reconnect ?? {}) },
    };
    this.codec = options.codec ?? JSON_CODEC;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError("no WebSocket implementation: pass options.WebSocket");
    this.urls = typeof options.url === "function" ? null : [].concat(options.url);
    this.downSince = new Map();

    /** idle, connecting, handshake, resuming, open, waiting, closed */
    this.phase = "idle";
    this.welcome = null;
    this.sessionId = null;
    this.url = null;
    this.handlers = new Map();
    this.queue = new OutboundQueue(this.options.queueSize);
    this.positions = new Positions();
    this.inflight = new Map();
    this.nextId = 1;
    this.resumeToken = null;
    this.attempt = 0;
    this.closing = false;
    this.joinRequest = null;
    this.presence = null;
    this.ws = null;
    this.connection = 0;
    this.timers = new Set();
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.connectWaiters = [];
    this.closeWaiters = [];
    this.inputSeq = 0;

    const windowS = this.options.statsWindowS;
    this.counters = {
      messagesIn: new Rate(windowS),
      messagesOut: new Rate(windowS),
      bytesIn: new Rate(windowS),
      bytesOut: new Rate(windowS),
      rtts: [],
      reconnects: 0,
      resumeAttempts: 0,
      resumes: 0,
      handlerErrors: 0,
      lastCloseCode: null,
      lastCloseReason: null,
    };

    // The zone's view.
    /** @type {Map<string, {v: number, fields: object}>} authoritative, as the gateway sent it */
    this.mirror = new Map();
    /** own entity id ("player.<id>") once joined, else null */
    this.entity = null;
    this.zone = null;
    this.tick = null;
    this.fastHz = 60;
    this.syncPending = false;
    this.predictor = null;
    /** [inputSeq, fields] of state.updates sent and not yet acknowledged, oldest first */
    this.unacked = [];
    this.lastAck = null;
    this.view = { chainBreaks: 0, checkMismatches: 0, checks: 0, syncs: 0 };
    this.interpolator = new Interpolator(this.renderDelayS(), this.options.maxExtrapolationMs / 1000);
  }

  // -- events ---------------------------------------------------------------------------

  /**
   * Handle `event`: the client's own "client.status", "client.welcome",
   * "client.error", "client.lost" (topic, reason) and "client.desync" (the
   * gateway reserves the "client." prefix, so no event type can take their
   * names), or any notification or topic event by its method name (the
   * handler gets its params). Handlers are isolated: one that throws, or
   * whose promise rejects, is reported on "client.error" and the others
   * still run.
   */
  on(event, handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(handler);
    return this;
  }

  off(event, handler) {
    const list = this.handlers.get(event);
    const index = list ? list.indexOf(handler) : -1;
    if (index >= 0) list.splice(index, 1);
    return this;
  }

  emit(event, ...args) {
    for (const handler of [...(this.handlers.get(event) ?? [])]) {
      try {
        const result = handler(...args);
        if (result && typeof result.then === "function") {
          result.then(undefined, (error) => this.handlerFailed(event, error));
        }
      } catch (error) {
        this.handlerFailed(event, error);
      }
    }
  }

  handlerFailed(event, error) {
    this.counters.handlerErrors++;
    if (event === "client.error") console.error("rtgateway: an error handler failed", error);
    else this.reportError(error, event);
  }

  /** On "client.error" when anyone listens, else on the console: never silently lost. */
  reportError(error, event) {
    if (this.handlers.get("client.error")?.length) this.emit("client.error", { error, event });
    else console.error(`rtgateway: ${event}:`, error);
  }

  status(state, extra = {}) {
    this.emit("client.status", { state, ...extra });
  }

  // -- the application's part -----------------------------------------------------------

  /** The client's phase (idle, connecting, handshake, resuming, open, waiting, closed). */
  get state() {
    return this.phase;
  }

  /** Connect; resolves with session.welcome's params once the session is open. */
  connect() {
    if (this.phase === "open") return Promise.resolve(this.welcome);
    if (this.phase === "closed") return Promise.reject(new RpcError(UNAVAILABLE, "the client is closed", undefined, true));
    const waiting = new Promise((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.phase === "idle") this.open();
    return waiting;
  }

  /**
   * Call `method`; resolves with the result, rejects with an RpcError.
   * While disconnected the call waits in the queue; the timeout counts from now.
   * `onResult(result)` runs as the response is read, before any frame after
   * it: a promise's callbacks may run only after several frames of one read.
   */
  call(method, params = {}, { priority = NORMAL, timeoutMs = this.options.callTimeoutMs, idempotent, onResult } = {}) {
    return new Promise((resolve, reject) => {
      const item = {
        method,
        params,
        priority,
        notification: false,
        idempotent: idempotent ?? IDEMPOTENT.has(method),
        onResult,
        resolve,
        reject,
        settled: false,
      };
      item.timer = this.later(timeoutMs, () => {
        if (item.settled) return;
        this.queue.remove(item);
        if (item.id !== undefined) this.inflight.delete(item.id);
        this.settle(item, new RpcError(TIMEOUT, `${method}: no response in time`, undefined, true));
      });
      this.submit(item);
    });
  }

  /** Send a notification (no response); queued while disconnected. */
  notify(method, params = {}, { priority = NORMAL } = {}) {
    if (this.phase === "closed") throw new RpcError(UNAVAILABLE, "the client is closed", undefined, true);
    const item = { method, params, priority, notification: true };
    if (this.phase === "open") this.writeItem(item);
    else this.enqueue(item);
  }

  /** Subscribe, from the position held for `topic` if there is one. */
  async subscribe(topic) {
    const params = { topic };
    const held = this.positions.topics.get(topic);
    if (held) params.since = { ...held };
    const result = await this.call("pubsub.subscribe", params);
    this.positions.subscribed(topic, result);
    if (result?.recovered === false) this.emit("client.lost", topic, "not recovered");
    return result;
  }

  unsubscribe(topic) {
    this.positions.forget(topic);
    return this.call("pubsub.unsubscribe", { topic });
  }

  /** presence.set; once accepted, set again on a fresh session. */
  async setPresence(presence) {
    const result = await this.call("presence.set", presence);
    this.presence = { ...presence };
    return result;
  }

  /** state.join; joined again with the latest fields on a fresh session. */
  join(zone, fields = undefined) {
    this.joinRequest = { zone, fields: { ...(fields ?? {}) } };
    // Joined before the state.snapshot that follows the response is read.
    return this.call("state.join", this.joinParams(), { onResult: (result) => this.joined(result) });
  }

  /**
   * state.leave; the zone is forgotten at once (not on the answer), so a
   * leave lost with its connection is not undone by a fresh session's rejoin.
   */
  leave() {
    this.joinRequest = null;
    this.zone = null;
    this.entity = null;
    this.tick = null;
    this.mirror = new Map();
    this.unacked = [];
    this.interpolator.reset();
    return this.call("state.leave", {});
  }

  /**
   * Turn on prediction of the own entity with the game's movement rule
   * `apply(fields, command) -> newFields` (deterministic, not in place).
   */
  predictWith(apply) {
    const own = this.entity ? this.mirror.get(this.entity) : null;
    this.predictor = new Predictor(apply, own ? own.fields : undefined);
    return this.predictor;
  }

  /** Apply `command` locally at once and send it; returns the predicted fields. */
  input(command) {
    if (!this.predictor) throw new Error("call predictWith(apply) first");
    const seq = ++this.inputSeq;
    const fields = this.predictor.input(command, seq);
    this.sendUpdate(fields, seq);
    return { ...this.predictor.predicted };
  }

  /** A state.update notification with the next input_seq (coalesced while disconnected). */
  update(fields) {
    const seq = ++this.inputSeq;
    this.sendUpdate(fields, seq);
    return seq;
  }

  sendUpdate(fields, seq) {
    if (this.joinRequest) Object.assign(this.joinRequest.fields, fields);
    this.unacked.push([seq, { ...fields }]);
    if (this.unacked.length > MAX_UNACKED) {
      const [[, older], [newerSeq, newer]] = this.unacked.splice(0, 2);
      this.unacked.unshift([newerSeq, { ...older, ...newer }]);
    }
    this.notify("state.update", { fields, input_seq: seq }, { priority: HIGH });
  }

  /**
   * What to draw now: others interpolated about three fast ticks in the past
   * (between the two updates around that time), the own entity predicted
   * (or as last acknowledged, without prediction). Map id -> fields.
   */
  rendered(now = nowMs()) {
    this.interpolator.advance(now / 1000);
    const out = new Map();
    for (const [id, entry] of this.mirror) {
      if (id === this.entity) {
        out.set(id, this.predictor ? { ...this.predictor.predicted } : { ...entry.fields });
        continue;
      }
      const fields = this.interpolator.sample(id);
      if (fields) out.set(id, fields);
    }
    return out;
  }

  /** Counters and rates over the last statsWindowS whole seconds. */
  stats(now = nowMs()) {
    const c = this.counters;
    const v = this.view;
    return {
      state: this.phase,
      rttMs: median(c.rtts),
      messagesInPerS: c.messagesIn.perSecond(now),
      messagesOutPerS: c.messagesOut.perSecond(now),
      bytesInPerS: c.bytesIn.perSecond(now),
      bytesOutPerS: c.bytesOut.perSecond(now),
      desyncs: v.chainBreaks + v.checkMismatches,
      corrections: this.predictor ? this.predictor.corrections : 0,
      reconnects: c.reconnects,
      resumes: c.resumes,
      queued: this.queue.length,
      dropped: this.queue.dropped,
      messagesIn: c.messagesIn.total,
      messagesOut: c.messagesOut.total,
      resumeAttempts: c.resumeAttempts,
      checks: v.checks,
      chainBreaks: v.chainBreaks,
      checkMismatches: v.checkMismatches,
      syncs: v.syncs,
      duplicates: this.positions.duplicates,
      gaps: this.positions.gaps,
      coalesced: this.queue.coalesced,
      inFlight: this.inflight.size,
      handlerErrors: c.handlerErrors,
      lastCloseCode: c.lastCloseCode,
      lastCloseReason: c.lastCloseReason,
    };
  }

  /** End the session (session.close, then close 1000) and stop for good. */
  close() {
    if (this.phase === "closed") return Promise.resolve();
    const done = new Promise((resolve) => this.closeWaiters.push(resolve));
    if (this.closing) return done;
    this.closing = true;
    if (this.phase === "open") {
      const closeSocket = () => this.closeSocket(1000, "client closed");
      this.internal("session.close", {}, 2000).then(closeSocket, closeSocket);
    } else if (this.ws) {
      this.closeSocket(1000, "client closed");
    } else {
      this.final(1000, "closed by the client");
    }
    return done;
  }

  // -- connection life -------------------------------------------------------------------

  later(ms, fn) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  cancel(timer) {
    if (timer != null) {
      clearTimeout(timer);
      this.timers.delete(timer);
    }
  }

  pickUrl() {
    const now = nowMs();
    const up = this.urls.filter((u) => !(this.downSince.has(u) && now - this.downSince.get(u) < this.options.endpointDownMs));
    if (up.length) return up[Math.floor(Math.random() * up.length)];
    return this.urls.reduce((a, b) => (this.downSince.get(a) <= this.downSince.get(b) ? a : b));
  }

  /** Whether an endpoint of the list is up (a url function names one at a time: never). */
  anyUp() {
    if (!this.urls) return false;
    const now = nowMs();
    return this.urls.some((u) => !(this.downSince.has(u) && now - this.downSince.get(u) < this.options.endpointDownMs));
  }

  /** One attempt: ask for the URL and the token, then open the WebSocket. */
  async open() {
    this.phase = "connecting";
    const connection = ++this.connection;
    this.status("connecting", { attempt: this.attempt });
    let url;
    let target;
    try {
      url = this.urls ? this.pickUrl() : await this.options.url();
      // A relative URL ("/ws") is the page's own origin.
      target = new URL(url, globalThis.location?.href);
      const token = typeof this.options.token === "function" ? await this.options.token() : this.options.token;
      target.searchParams.set("access_token", token);
    } catch (error) {
      if (connection !== this.connection) return;
      this.reportError(error, "connect");
      // Not the endpoint's fault: another one would fare no better.
      this.failedToOpen(`could not connect: ${error}`, null);
      return;
    }
    if (connection !== this.connection || this.phase !== "connecting") return;
    if (this.closing) {
      this.final(1000, "closed by the client");
      return;
    }
    this.url = url;
    let ws;
    try {
      ws = new this.WebSocket(target.toString(), [`rtgw.v1.${this.codec.name}`]);
    } catch (error) {
      this.failedToOpen(`could not connect: ${error}`, url);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    const deadline = this.later(this.options.connectTimeoutMs, () => {
      if (!opened && this.ws === ws) {
        this.detach(ws);
        try {
          ws.close();
        } catch {
          // already closing
        }
        this.failedToOpen("connect timeout", url);
      }
    });
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.cancel(deadline);
      this.downSince.delete(url);
      this.phase = "handshake";
    };
    ws.onmessage = (event) => {
      if (this.ws === ws) this.received(event.data);
    };
    ws.onerror = () => {};
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.cancel(deadline);
      this.detach(ws);
      if (!opened) this.failedToOpen(event.reason || `closed ${event.code} before opening`, url);
      else this.lost(event.code, event.reason);
    };
  }

  detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (this.ws === ws) this.ws = null;
  }

  closeSocket(code, reason) {
    const ws = this.ws;
    if (!ws) {
      this.final(code, reason);
      return;
    }
    this.detach(ws);
    try {
      ws.close(code, reason);
    } catch {
      // not open yet, or already closing
    }
    this.lost(code, reason);
  }

  /**
   * No WebSocket opened from `url` (refused, unreachable), or none tried
   * (`url` null: the URL or the token provider failed). Browsers do not
   * tell an HTTP 401 from a refused TCP connection, so every failure of an
   * endpoint of the list marks it down and tries another at once if one is
   * up; anything else waits the backoff. The token is asked for afresh
   * either way.
   */
  failedToOpen(reason, url) {
    this.counters.lastCloseReason = reason;
    if (this.closing) {
      this.final(1000, "closed by the client");
      return;
    }
    if (url) this.downSince.set(url, nowMs());
    this.retry(url && this.anyUp() ? 0 : null, { reason });
  }

  /** The WebSocket ended after it had opened. */
  lost(code, reason) {
    this.connection++;
    this.counters.lastCloseCode = code;
    this.counters.lastCloseReason = reason;
    this.cancel(this.pingTimer);
    this.pingTimer = null;
    this.phase = "waiting";
    this.syncPending = false;
    this.loseInflight();
    if (this.closing) {
      this.final(1000, "closed by the client");
      return;
    }
    if (FINAL_CLOSE_CODES.has(code)) {
      this.final(code, reason);
      return;
    }
    const advice = advisedDelayMs(code, reason);
    if (advice === false) this.final(code, reason);
    else this.retry(advice, { code, reason });
  }

  /** Schedule the next attempt after `delayMs`, else the backoff's full-jitter delay. */
  retry(delayMs, extra = {}) {
    this.attempt++;
    const policy = this.options.reconnect;
    if (policy.maxAttempts != null && this.attempt > policy.maxAttempts) {
      this.final(extra.code ?? null, `gave up after ${this.attempt - 1} reconnect attempts`);
      return;
    }
    if (delayMs == null) {
      const ceiling = Math.min(policy.maxMs, policy.initialMs * policy.multiplier ** (this.attempt - 1));
      delayMs = Math.random() * ceiling;
    }
    this.counters.reconnects++;
    this.phase = "waiting";
    this.status("reconnecting", { retryInMs: delayMs, attempt: this.attempt, ...extra });
    this.cancel(this.reconnectTimer);
    this.reconnectTimer = this.later(delayMs, () => {
      this.reconnectTimer = null;
      if (this.phase === "waiting") this.open();
    });
  }

  final(code, reason) {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.connection++;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    const gone = new RpcError(UNAVAILABLE, `the client is closed (${code}: ${reason})`, { code, reason }, true);
    for (const item of this.queue.drain()) if (!item.notification) this.settle(item, gone);
    this.loseInflight(gone);
    this.status("closed", { code, reason });
    for (const waiter of this.connectWaiters.splice(0)) waiter.reject(gone);
    for (const resolve of this.closeWaiters.splice(0)) resolve();
  }

  /** Requests of a connection that is gone: sent again if idempotent, else outcome unknown. */
  loseInflight(error = null) {
    const inflight = [...this.inflight.values()].sort((a, b) => b.id - a.id);
    this.inflight.clear();
    for (const item of inflight) {
      if (!error && item.idempotent && !item.internal) {
        delete item.id;
        this.queue.putBack(item);
      } else {
        this.settle(
          item,
          error ?? new RpcError(UNAVAILABLE, `${item.method}: connection lost after sending; the outcome is unknown`, undefined, true),
        );
      }
    }
  }

  // -- session --------------------------------------------------------------------------

  welcomed(params) {
    this.welcome = params;
    this.emit("client.welcome", params);
    if (this.phase !== "handshake") return;
    if (this.resumeToken === null) {
      this.freshSession();
      return;
    }
    this.phase = "resuming";
    this.counters.resumeAttempts++;
    const resume = { resume_token: this.resumeToken, positions: this.positions.resumePositions() };
    // Resumed before the state.snapshot that follows the response is read.
    this.internal("session.resume", resume, undefined, (result) => this.resumed(result)).catch((error) => {
      // The connection went: the next attempt resumes again. Refused or
      // unanswered in time: a fresh session on this connection.
      if (error.local && error.code !== TIMEOUT) return;
      this.freshSession();
    });
  }

  resumed(result) {
    this.counters.resumes++;
    this.sessionId = result.session_id;
    for (const topic of this.positions.keepOnly(result.subscriptions ?? [])) this.emit("client.lost", topic, "not restored by the resume");
    for (const [topic, recovered] of Object.entries(result.recovered ?? {})) {
      if (recovered === false) {
        this.positions.unanchor(topic);
        this.emit("client.lost", topic, "not recovered");
      }
    }
    // The gateway follows a resume in a zone with a state.snapshot.
    this.sessionOpen("resumed");
  }

  /** A new session: subscribe again from the held positions, presence, rejoin. */
  freshSession() {
    const welcome = this.welcome ?? {};
    this.resumeToken = welcome.resume_token ?? null;
    this.sessionId = welcome.session_id ?? null;
    for (const topic of this.positions.topics.keys()) {
      const params = { topic };
      const held = this.positions.topics.get(topic);
      if (held) params.since = { ...held };
      this.internal("pubsub.subscribe", params).then(
        (result) => {
          this.positions.subscribed(topic, result);
          if (result?.recovered === false) this.emit("client.lost", topic, "not recovered");
        },
        (error) => {
          if (!error.local) this.emit("client.lost", topic, `subscribe: ${error.message}`);
        },
      );
    }
    if (this.presence) this.internal("presence.set", this.presence).catch(() => {});
    // Only a join the old session had accepted: one still queued goes by itself.
    if (this.joinRequest && this.zone !== null) {
      this.internal("state.join", this.joinParams(), undefined, (result) => this.joined(result)).catch(() => {});
    }
    this.sessionOpen("connected");
  }

  sessionOpen(state) {
    this.phase = "open";
    this.attempt = 0;
    this.status(state, { url: this.url });
    for (const waiter of this.connectWaiters.splice(0)) waiter.resolve(this.welcome);
    for (const item of this.queue.drain()) if (!item.settled) this.writeItem(item);
    if (this.options.pingIntervalMs > 0) this.ping();
  }

  /** sys.ping for the RTT; no answer within pingTimeoutMs means the link is dead. */
  ping() {
    const connection = this.connection;
    const sent = nowMs();
    this.internal("sys.ping", {}, this.options.pingTimeoutMs).then(
      () => {
        this.counters.rtts.push(nowMs() - sent);
        if (this.counters.rtts.length > 100) this.counters.rtts.shift();
      },
      (error) => {
        if (error.code === TIMEOUT && error.local && connection === this.connection && this.phase === "open") {
          this.closeSocket(4000, "no answer to sys.ping");
        }
      },
    );
    this.pingTimer = this.later(this.options.pingIntervalMs, () => {
      if (connection === this.connection && this.phase === "open") this.ping();
    });
  }

  joinParams() {
    const { zone, fields } = this.joinRequest;
    return Object.keys(fields).length ? { zone, fields: { ...fields } } : { zone };
  }

  joined(result) {
    this.zone = result.zone;
    this.entity = result.entity;
    const fast = result.tick_hz?.fast;
    if (typeof fast === "number" && fast > 0) this.fastHz = fast;
    this.interpolator.delayS = this.renderDelayS();
    this.interpolator.reset();
  }

  renderDelayS() {
    const configured = this.options.interpolationDelayMs;
    return configured != null ? configured / 1000 : DELAY_TICKS / this.fastHz;
  }

  // -- messages -------------------------------------------------------------------------

  received(data) {
    const now = nowMs();
    this.counters.messagesIn.add(now);
    this.counters.bytesIn.add(now, byteLength(data));
    let document;
    try {
      document = this.codec.decode(typeof data === "string" ? data : new Uint8Array(data));
    } catch (error) {
      this.reportError(error, "decode");
      return;
    }
    for (const message of Array.isArray(document) ? document : [document]) {
      if (message && typeof message === "object") this.message(message, now);
    }
  }

  message(message, now) {
    const { method } = message;
    if (typeof method === "string") {
      if ("id" in message) {
        // Routed procedures go to service connections only.
        this.write({ jsonrpc: "2.0", id: message.id, error: { code: -32601, message: "Method not found" } });
      } else {
        this.notification(method, message.params && typeof message.params === "object" ? message.params : {}, now);
      }
      return;
    }
    const item = this.inflight.get(message.id);
    if (!item) return; // timed out already
    this.inflight.delete(message.id);
    if (message.error) {
      const { code, message: text, data } = message.error;
      this.settle(item, new RpcError(code, String(text ?? ""), data));
    } else {
      this.settle(item, null, message.result);
    }
  }

  notification(method, params, now) {
    if (method === "session.welcome") {
      this.welcomed(params);
      return;
    }
    if (method === "session.expiring") this.refreshToken();
    else if (STATE_PUSHES.has(method)) {
      // After a leave, pushes still on their way are of no zone of ours.
      if (this.joinRequest) this.statePush(method, params, now);
    }
    else if ("topic" in params) {
      const verdict = this.positions.accept(params);
      if (verdict === "duplicate") return;
      if (verdict === "gap") this.emit("client.lost", params.topic, "gap");
    }
    this.emit(method, params);
  }

  /** session.expiring: a fresh token through session.refresh, before the gateway closes 4001. */
  async refreshToken() {
    try {
      const token = typeof this.options.token === "function" ? await this.options.token() : this.options.token;
      await this.call("session.refresh", { token }, { priority: HIGH });
    } catch (error) {
      this.reportError(error, "session.refresh");
    }
  }

  // -- the state mirror -----------------------------------------------------------------

  /**
   * One state push. A snapshot replaces the mirror; a delta applies only to
   * a mirror at its base_tick (else the chain is broken: state.sync, once
   * until the snapshot comes); a check compares the gateway's hash with the
   * mirror's, taken at once (the digest itself is asynchronous).
   */
  statePush(method, params, now) {
    if (method === "state.snapshot") {
      this.syncPending = false;
      this.zone = params.zone;
      this.tick = params.tick;
      this.mirror = new Map(Object.entries(params.entities ?? {}).map(([id, e]) => [id, { v: e.v, fields: { ...e.fields } }]));
      this.interpolator.reset();
      this.sample(this.mirror, params.tick, now);
      const own = this.entity ? this.mirror.get(this.entity) : null;
      if (own && this.predictor) this.predictor.rebase(own.fields);
      return;
    }
    if (method === "state.delta") {
      if (params.base_tick !== this.tick || params.zone !== this.zone) {
        if (this.syncPending) return;
        this.view.chainBreaks++;
        this.askSync();
        return;
      }
      const changed = new Map();
      for (const [id, entry] of Object.entries(params.changed ?? {})) {
        const held = this.mirror.get(id);
        const next = { v: entry.v, fields: { ...(held ? held.fields : {}), ...entry.fields } };
        this.mirror.set(id, next);
        changed.set(id, next);
      }
      for (const id of params.removed ?? []) {
        this.mirror.delete(id);
        this.interpolator.remove(id);
      }
      this.tick = params.tick;
      this.sample(changed, params.tick, now);
      if (params.ack) {
        this.lastAck = params.ack;
        this.acknowledged(params.ack);
        if (this.predictor && typeof params.ack.input_seq === "number") {
          this.predictor.ack(params.ack.input_seq, params.ack.corrected);
        }
      }
      return;
    }
    if (method === "state.check") {
      if (this.syncPending) return;
      this.view.checks++;
      const canonical = viewCanonical(this.mirror, this.entity);
      const connection = this.connection;
      sha256Hex16(canonical).then(
        (hash) => {
          if (hash === params.hash || connection !== this.connection || this.syncPending) return;
          this.view.checkMismatches++;
          this.emit("client.desync", { tick: params.tick, expected: params.hash, actual: hash });
          this.askSync();
        },
        (error) => this.reportError(error, "state.check"),
      );
    }
  }

  /**
   * The own entity as the gateway has it after an ack: the fields of every
   * update up to its input_seq, then its corrections (deltas never carry
   * the own entity; only snapshots do).
   */
  acknowledged(ack) {
    const applied = {};
    while (this.unacked.length && this.unacked[0][0] <= ack.input_seq) Object.assign(applied, this.unacked.shift()[1]);
    const own = this.entity ? this.mirror.get(this.entity) : null;
    if (!own) return;
    const v = typeof ack.v === "number" ? ack.v : own.v;
    this.mirror.set(this.entity, { v, fields: { ...own.fields, ...applied, ...(ack.corrected ?? {}) } });
  }

  askSync() {
    this.syncPending = true;
    this.view.syncs++;
    // Refused or unanswered: the next chain break or check asks again.
    if (this.phase === "open") this.internal("state.sync", {}).catch(() => (this.syncPending = false));
  }

  sample(entities, tick, now) {
    const at = tick / this.fastHz;
    this.interpolator.heard(at);
    for (const [id, entry] of entities) {
      if (id !== this.entity) this.interpolator.add(id, at, entry.fields, now / 1000);
    }
  }

  // -- writing --------------------------------------------------------------------------

  submit(item) {
    if (this.phase === "closed") this.settle(item, new RpcError(UNAVAILABLE, "the client is closed", undefined, true));
    else if (this.phase === "open") this.writeItem(item);
    else this.enqueue(item);
  }

  enqueue(item) {
    const dropped = this.queue.put(item);
    if (dropped && !dropped.notification) {
      this.settle(
        dropped,
        new RpcError(UNAVAILABLE, `outbound queue full (${this.queue.size}): ${dropped.method} dropped`, undefined, true),
      );
    }
  }

  /** A call of the client's own, sent now on the current connection. */
  internal(method, params, timeoutMs = this.options.callTimeoutMs, onResult = undefined) {
    return new Promise((resolve, reject) => {
      const item = { method, params, priority: HIGH, notification: false, idempotent: false, internal: true, onResult, resolve, reject };
      item.timer = this.later(timeoutMs, () => {
        if (item.settled) return;
        if (item.id !== undefined) this.inflight.delete(item.id);
        this.settle(item, new RpcError(TIMEOUT, `${method}: no response in time`, undefined, true));
      });
      this.writeItem(item);
    });
  }

  writeItem(item) {
    if (item.notification) {
      this.write({ jsonrpc: "2.0", method: item.method, params: item.params });
      return;
    }
    item.id = this.nextId++;
    this.inflight.set(item.id, item);
    this.write({ jsonrpc: "2.0", id: item.id, method: item.method, params: item.params });
  }

  write(message) {
    if (!this.ws) return;
    const data = this.codec.encode(message);
    const now = nowMs();
    this.counters.messagesOut.add(now);
    this.counters.bytesOut.add(now, byteLength(data));
    this.ws.send(data);
  }

  settle(item, error, result) {
    if (item.settled) return;
    item.settled = true;
    this.cancel(item.timer);
    if (error) {
      item.reject(error);
      return;
    }
    if (item.onResult) {
      try {
        item.onResult(result);
      } catch (failure) {
        this.reportError(failure, item.method);
      }
    }
    item.resolve(result);
  }
}

/**
 * The gateway's advice in a 1001 close: milliseconds to wait when it says
 * `reconnect: true` (already jittered by the gateway, so it wins over the
 * backoff), false when it says not to reconnect, null without advice.
 */
export function advisedDelayMs(code, reason) {
  if (code !== 1001 || !reason) return null;
  let advice;
  try {
    advice = JSON.parse(reason);
  } catch {
    return null;
  }
  if (!advice || typeof advice !== "object" || !("reconnect" in advice)) return null;
  if (advice.reconnect !== true) return false;
  const after = advice.after_ms ?? 0;
  return typeof after === "number" && after >= 0 ? after : 0;
}
