/**
 * The debug inspector at /debug/: the gateway cluster seen through the
 * admin.* methods (docs/admin.rst), over one WebSocket of the JS client.
 *
 * The admin token comes from `?access_token=` (the gateway served this page
 * only because it carries the admin role) or from the form shown without
 * one. It is held in this module's memory only, never in storage, and taken
 * out of the address bar at once so that it is neither left in the history
 * nor shown on screen; a reload asks for it again.
 *
 * No panel shows anything until a first admin call has succeeded; a
 * connection refused (a token that is not valid) or -32001 (a valid token
 * without the admin role) shows why in #auth-error and nothing else.
 *
 * @module inspector
 */

import { Client } from "../client/rtgateway.js";
import { ChartsView } from "./charts.js";
import { ConnectionsView } from "./connections.js";
import { describe, setServerTime, setText } from "./dom.js";
import { EventsView } from "./events.js";
import { PresenceView } from "./presence.js";
import { ZonesView } from "./zones.js";

const NOT_ADMIN = -32001;
/** Milliseconds an admin call may take: a cluster call waits at most its cluster timeout. */
const CALL_TIMEOUT_MS = 5000;
/**
 * Attempts before giving up a connection. A browser does not tell a 401 at
 * the upgrade from a gateway that is down, so a refused token would
 * otherwise be retried for ever.
 */
const MAX_ATTEMPTS = 4;

const statusLine = document.getElementById("conn-status");
const clusterLine = document.getElementById("cluster-status");
const authError = document.getElementById("auth-error");
const form = document.getElementById("token-form");
const tokenInput = document.getElementById("token");
const panels = document.getElementById("panels");

let client = null;
let views = null;

/** The admin token, in memory only. */
let token = null;

function setStatus(state, text) {
  statusLine.dataset.state = state;
  setText(statusLine, text);
}

function showAuthError(text) {
  setText(authError, text);
  authError.hidden = false;
}

/** The WebSocket URL of config.json's ws_path on this page's origin. */
async function gatewayUrl() {
  const response = await fetch(new URL("../client/config.json", location.href), { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  const config = await response.json();
  const url = new URL(config.ws_path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/** An admin call; -32001 from the gateway ends the page's session. */
async function rpc(method, params) {
  const current = client;
  try {
    return await current.call(method, params, { timeoutMs: CALL_TIMEOUT_MS });
  } catch (error) {
    if (error.code === NOT_ADMIN && !error.local && current === client) {
      deny("This token has no admin role: the gateway answers -32001 to admin calls. Enter an admin token.");
    }
    throw error;
  }
}

function buildViews() {
  const events = new EventsView(rpc, (sessionId) => connections.markTraced(sessionId));
  const connections = new ConnectionsView(rpc, {
    onTrace: (row) => events.trace(row),
    onCluster: (gateways, missing) => {
      setText(clusterLine, `gateways: ${gateways.join(", ")}${missing.length ? ` (missing: ${missing.join(", ")})` : ""}`);
      clusterLine.classList.toggle("missing", missing.length > 0);
    },
  });
  return { connections, events, zones: new ZonesView(rpc), presence: new PresenceView(rpc), charts: new ChartsView(rpc) };
}

function stopViews() {
  if (!views) return;
  views.events.reset();
  for (const name of ["connections", "zones", "presence", "charts"]) views[name].stop();
  panels.hidden = true;
  setText(clusterLine, "");
}

/** No data for this token: say why, close, and ask for another. */
function deny(text) {
  stopViews();
  showAuthError(text);
  const closing = client;
  client = null;
  token = null;
  closing?.close();
  setStatus("closed", "not connected");
  form.hidden = false;
}

async function connect() {
  authError.hidden = true;
  form.hidden = true;
  setStatus("connecting", "connecting…");
  let url;
  try {
    url = await gatewayUrl();
  } catch (error) {
    deny(`Cannot read the gateway's configuration: ${describe(error)}`);
    return;
  }
  const own = new Client({
    url,
    token: () => token,
    callTimeoutMs: CALL_TIMEOUT_MS,
    reconnect: { maxAttempts: MAX_ATTEMPTS },
  });
  client = own;
  let opened = false;
  own.on("client.status", (event) => {
    if (own !== client) return;
    if (event.state === "connected" || event.state === "resumed") {
      setStatus("open", `connected to ${own.welcome?.gateway_id ?? "?"} as ${own.welcome?.player_id ?? "?"}`);
      // The admin's traces end with its connection: start ours again.
      if (opened) views?.events.retrace();
      opened = true;
    } else if (event.state === "reconnecting") {
      setStatus("reconnecting", `reconnecting (attempt ${event.attempt}${event.reason ? `: ${event.reason}` : ""})`);
    } else if (event.state === "connecting") {
      setStatus("connecting", "connecting…");
    } else if (event.state === "closed") {
      setStatus("closed", `closed: ${event.reason ?? event.code}`);
    }
  });
  own.on("client.welcome", (params) => setServerTime(params.server_time_ms));
  own.on("admin.frame", (params) => views?.events.frame(params));
  own.on("admin.trace_ended", (params) => views?.events.ended(params));
  own.on("client.error", ({ error, event }) => console.warn(`inspector: ${event}:`, error));

  try {
    await own.connect();
  } catch {
    if (own === client) deny("The gateway refused the connection: the token is not valid (or has expired), or the gateway cannot be reached.");
    return;
  }
  try {
    // A first admin call: only once it succeeds does anything show.
    await rpc("admin.zones", {});
  } catch (error) {
    if (own === client && error.code !== NOT_ADMIN) deny(`The first admin call failed: ${describe(error)}`);
    return;
  }
  if (own !== client) return;
  views ??= buildViews();
  panels.hidden = false;
  for (const name of ["connections", "zones", "presence", "charts"]) views[name].start();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const typed = tokenInput.value.trim();
  tokenInput.value = "";
  if (!typed) return;
  token = typed;
  connect();
});

const fromUrl = new URLSearchParams(location.search).get("access_token");
if (fromUrl) {
  token = fromUrl;
  history.replaceState(null, "", location.pathname);
  connect();
} else {
  form.hidden = false;
  tokenInput.focus();
}
