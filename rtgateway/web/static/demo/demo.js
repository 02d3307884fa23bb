/**
 * The playable demo: every player is a dot in the zone config.json names.
 *
 * It is a small game built on rtgateway.js and nothing else, so that what
 * the client does is visible: the own dot moves at once (prediction, with
 * the gateway's corrections reconciled), the others are drawn a few ticks
 * in the past between the updates the gateway sent (interpolation), a lost
 * connection is resumed (the status says so) and the chat shows that no
 * event of a reliable topic is lost or doubled by it.
 *
 * URL parameters: ?player=<name> (else the gateway picks a guest name),
 * ?debug=1 (draw where the gateway corrected the prediction). The page
 * talks to the gateway that served it (its Content-Security-Policy allows
 * no other host): behind a load balancer, that is any gateway of the cluster.
 */
import { Client } from "../client/rtgateway.js";

/** The arena of config/development.toml: 0..100 on both axes. */
const WORLD = 100;
/** Units a second: under the zone's max_speed (20), so no move is cut short. */
const SPEED = 18;
/** The zone's quantum of x and y: predicted as the gateway stores them. */
const QUANTUM = 0.01;
/** Dot radius, in world units. */
const RADIUS = 2.2;
/** How long a correction stays drawn (?debug=1), in ms, and in which colour (none of COLORS). */
const GHOST_MS = 1500;
const GHOST_COLOR = "#ff4040";
const CHAT_LINES = 200;
const COLORS = ["#ff5d73", "#ffb347", "#ffe156", "#7cf29c", "#4dd6ff", "#8c9eff", "#d78cff", "#ff8cc6"];
const MOVES = {
  ArrowLeft: [-1, 0],
  ArrowRight: [1, 0],
  ArrowUp: [0, -1],
  ArrowDown: [0, 1],
  a: [-1, 0],
  d: [1, 0],
  w: [0, -1],
  s: [0, 1],
};

const params = new URLSearchParams(location.search);
const debug = params.get("debug") === "1";
const $ = (id) => document.getElementById(id);

/** The player's name: from the URL, else the first token's (kept for every reconnect). */
let playerId = params.get("player");

// -- connecting -------------------------------------------------------------------------

async function loadConfig() {
  const response = await fetch(new URL("../client/config.json", location.href), { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  return response.json();
}

/** config.json's ws_path on this page's origin, ws: or wss: as the page. */
function gatewayUrl(config) {
  const url = new URL(config.ws_path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/** A fresh player token from POST /demo/token: the client asks before every connect. */
async function fetchToken() {
  const response = await fetch(new URL("token", location.href), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(playerId ? { player: playerId } : {}),
    cache: "no-store",
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`POST /demo/token: ${answer.error ?? `HTTP ${response.status}`}`);
  if (playerId === null) {
    playerId = answer.player_id;
    window.rtgwDemo.playerId = playerId;
    $("player").textContent = playerId;
  }
  return answer.token;
}

// -- status -------------------------------------------------------------------------------

let countdown = null;

function showStatus(state, text) {
  const element = $("status");
  element.dataset.state = state;
  element.textContent = text;
}

function statusChanged(status) {
  clearInterval(countdown);
  countdown = null;
  if (status.state === "reconnecting") {
    const at = performance.now() + (status.retryInMs ?? 0);
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((at - performance.now()) / 1000));
      showStatus("reconnecting", `reconnecting in ${seconds} s`);
    };
    tick();
    countdown = setInterval(tick, 250);
  } else if (status.state === "closed") {
    showStatus("closed", status.reason ? `closed: ${status.reason}` : "closed");
  } else {
    showStatus(status.state, status.state);
  }
}

// -- movement -------------------------------------------------------------------------------

/** A player's colour, the same for a name on every page and every visit. */
function colorOf(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return COLORS[hash % COLORS.length];
}

function quantize(value) {
  return Number((Math.round(value / QUANTUM) * QUANTUM).toFixed(2));
}

function clamp(value) {
  return Math.min(WORLD, Math.max(0, value));
}

/** The movement rule, for prediction: deterministic, a new object. */
function move(fields, { dx, dy, dt }) {
  if (typeof fields.x !== "number" || typeof fields.y !== "number") return { ...fields };
  return {
    ...fields,
    x: quantize(clamp(fields.x + dx * SPEED * dt)),
    y: quantize(clamp(fields.y + dy * SPEED * dt)),
  };
}

const held = new Set();

function direction() {
  let dx = 0;
  let dy = 0;
  for (const key of held) {
    dx += MOVES[key][0];
    dy += MOVES[key][1];
  }
  const length = Math.hypot(dx, dy);
  return length ? [dx / length, dy / length] : [0, 0];
}

function typing(event) {
  return event.target instanceof HTMLInputElement;
}

function keyName(event) {
  return event.key.length === 1 ? event.key.toLowerCase() : event.key;
}

function listenToKeys(toggleOverlay) {
  window.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = keyName(event);
    if (key in MOVES) {
      held.add(key);
      event.preventDefault();
    } else if (key === "o" && !event.repeat) {
      toggleOverlay();
    }
  });
  window.addEventListener("keyup", (event) => held.delete(keyName(event)));
  window.addEventListener("blur", () => held.clear());
}

/** Inputs at 60 Hz while a key is held and the session is open. */
function startInputs(client) {
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const dt = Math.min(0.1, (now - last) / 1000);
    last = now;
    const [dx, dy] = direction();
    const own = client.entity ? client.mirror.get(client.entity) : null;
    if ((dx || dy) && own && client.state === "open") client.input({ dx, dy, dt });
  }, 1000 / 60);
}

// -- drawing -------------------------------------------------------------------------------

function startDrawing(client) {
  const canvas = $("world");
  const context = canvas.getContext("2d");
  const scale = () => canvas.width / WORLD;
  /** ?debug=1: the newest correction, and when it was first drawn. */
  let shown = null;
  let ghost = null;

  function dot(fields, own) {
    const s = scale();
    const x = fields.x * s;
    const y = fields.y * s;
    context.beginPath();
    context.arc(x, y, RADIUS * s, 0, 2 * Math.PI);
    context.fillStyle = fields.color || "#cccccc";
    context.fill();
    if (own) {
      context.lineWidth = 3;
      context.strokeStyle = "#ffffff";
      context.stroke();
    }
    context.fillStyle = "#e8ecf4";
    context.font = "13px system-ui, sans-serif";
    context.textAlign = "center";
    context.fillText(fields.name || "?", x, y - RADIUS * s - 6);
  }

  function grid() {
    const s = scale();
    context.fillStyle = "#0d1117";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.strokeStyle = "#1b2330";
    context.lineWidth = 1;
    context.beginPath();
    for (let at = 10; at < WORLD; at += 10) {
      context.moveTo(at * s + 0.5, 0);
      context.lineTo(at * s + 0.5, canvas.height);
      context.moveTo(0, at * s + 0.5);
      context.lineTo(canvas.width, at * s + 0.5);
    }
    context.stroke();
  }

  /** A correction the predictor took since the last frame starts a ghost. */
  function noteCorrection(now) {
    const correction = client.predictor ? client.predictor.lastCorrection : null;
    if (correction === shown) return;
    shown = correction;
    if (!correction) return;
    const { predicted: from, corrected: to } = correction;
    const placed = [from.x, from.y, to.x, to.y].every((value) => typeof value === "number");
    if (placed) ghost = { from, to, at: now };
  }

  /** A red ring where the client had predicted itself, a line to where the gateway put it. */
  function drawGhost(now) {
    if (!ghost || now - ghost.at > GHOST_MS) return;
    const s = scale();
    context.lineWidth = 2;
    context.strokeStyle = GHOST_COLOR;
    context.setLineDash([4, 4]);
    context.beginPath();
    context.moveTo(ghost.from.x * s, ghost.from.y * s);
    context.lineTo(ghost.to.x * s, ghost.to.y * s);
    context.stroke();
    context.setLineDash([]);
    context.beginPath();
    context.arc(ghost.from.x * s, ghost.from.y * s, RADIUS * s, 0, 2 * Math.PI);
    context.stroke();
  }

  function frame(now) {
    grid();
    const view = client.rendered(now);
    const own = view.get(client.entity);
    for (const [id, fields] of view) {
      if (id !== client.entity && typeof fields.x === "number") dot(fields, false);
    }
    if (own && typeof own.x === "number") dot(own, true);
    if (debug) {
      noteCorrection(now);
      drawGhost(now);
    }
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
}

// -- panels --------------------------------------------------------------------------------

function startPanels(client) {
  const number = (value) => (value == null ? "-" : String(Math.round(value)));
  setInterval(() => {
    const stats = client.stats();
    $("rtt").textContent = number(stats.rttMs);
    $("msgs").textContent = number(stats.messagesInPerS + stats.messagesOutPerS);
    $("msgs").title = `${number(stats.messagesInPerS)} in, ${number(stats.messagesOutPerS)} out`;
    $("bytes").textContent = number(stats.bytesInPerS + stats.bytesOutPerS);
    $("bytes").title = `${number(stats.bytesInPerS)} in, ${number(stats.bytesOutPerS)} out`;
    $("desyncs").textContent = String(stats.desyncs);
    $("corrections").textContent = String(stats.corrections);
    $("reconnects").textContent = String(stats.reconnects);
    listPlayers(client);
  }, 500);
}

function listPlayers(client) {
  const items = [];
  for (const [id, fields] of client.rendered()) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = fields.color || "#cccccc";
    item.append(swatch, fields.name || id);
    if (id === client.entity) item.classList.add("own");
    items.push(item);
  }
  $("players").replaceChildren(...items);
}

function overlayToggle() {
  const overlay = $("overlay");
  const button = $("overlay-toggle");
  return () => {
    overlay.hidden = !overlay.hidden;
    button.setAttribute("aria-pressed", String(!overlay.hidden));
  };
}

// -- chat ----------------------------------------------------------------------------------

function chatLine(text, attributes = {}) {
  const log = $("chat-log");
  const line = document.createElement("li");
  line.textContent = text;
  for (const [name, value] of Object.entries(attributes)) line.dataset[name] = value;
  log.append(line);
  while (log.children.length > CHAT_LINES) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

function startChat(client, topic) {
  client.on("chat.message", (event) => {
    if (event.topic !== topic) return;
    const from = event.from ?? "?";
    chatLine(`${from}: ${event.data?.text ?? ""}`, { seq: String(event.offset ?? ""), from });
  });
  client.on("client.lost", (lostTopic, reason) => {
    if (lostTopic === topic) chatLine(`(messages may be missing: ${reason})`, { system: "lost" });
  });
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    client
      .call("pubsub.publish", { topic, type: "chat.message", data: { text } })
      .catch((error) => chatLine(`(not sent: ${error.message})`, { system: "error" }));
  });
}

// -- start ---------------------------------------------------------------------------------

async function start() {
  const config = await loadConfig();
  const zone = config.demo_zone;
  if (!zone) {
    showStatus("closed", "the demo is switched off");
    return;
  }
  $("zone").textContent = zone;
  document.title = `rtgateway demo: ${zone}`;
  if (playerId) $("player").textContent = playerId;
  const client = new Client({ url: gatewayUrl(config), token: fetchToken });
  window.rtgwDemo = { client, playerId, debug, ready: false };
  client.on("client.status", statusChanged);
  client.on("client.error", ({ error, event }) => console.warn(`rtgateway ${event}:`, error.message ?? error));
  const toggle = overlayToggle();
  $("overlay-toggle").addEventListener("click", toggle);
  listenToKeys(toggle);
  startChat(client, `chat.${zone}`);
  startDrawing(client);
  startPanels(client);

  await client.connect();
  const color = colorOf(playerId);
  const at = () => quantize(15 + Math.random() * (WORLD - 30));
  await client.join(zone, { x: at(), y: at(), name: playerId, color });
  client.predictWith(move);
  startInputs(client);
  await client.subscribe(`chat.${zone}`);
  window.rtgwDemo.ready = true;
}

start().catch((error) => {
  console.warn("demo:", error);
  showStatus("closed", `failed: ${error.message ?? error}`);
});
