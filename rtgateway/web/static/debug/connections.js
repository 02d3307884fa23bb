/**
 * The connections table: admin.connections every second, every page of it
 * up to a bound, rows updated in place by session so that a "trace" button
 * stays the same element while the figures beside it change.
 *
 * @module connections
 */

import { age, compact, describe, el, every, ms, serverNow, setText } from "./dom.js";

/** Rows per admin.connections call, and pages read per refresh (1000 rows at most). */
const PAGE_SIZE = 200;
const MAX_PAGES = 5;
const REFRESH_MS = 1000;

/** The cells of a row, in the order of the table's header. */
const COLUMNS = ["player", "session", "gateway", "since", "rtt", "messages", "bytes", "buffer", "subscriptions", "zone"];

export class ConnectionsView {
  /**
   * @param {function(string, object): Promise<object>} rpc an admin call
   * @param {{onTrace: function(object): void, onCluster: function(string[], string[]): void}} hooks
   */
  constructor(rpc, { onTrace, onCluster }) {
    this.rpc = rpc;
    this.onCluster = onCluster;
    this.body = document.querySelector("#connections-table tbody");
    this.count = document.getElementById("connections-count");
    this.filter = document.getElementById("filter");
    /** @type {Map<string, {row: HTMLTableRowElement, cells: object, data: object}>} */
    this.rows = new Map();
    this.traced = null;
    this.poller = null;
    this.body.addEventListener("click", (event) => {
      const button = event.target.closest("button.trace");
      const entry = button && this.rows.get(button.dataset.sessionId);
      if (entry) onTrace(entry.data);
    });
    this.filter.addEventListener("input", () => this.poller?.kick());
  }

  start() {
    this.poller = every(REFRESH_MS, () => this.refresh(), (error) => setText(this.count, `error: ${describe(error)}`));
  }

  stop() {
    this.poller?.stop();
    this.poller = null;
    this.body.replaceChildren();
    this.rows.clear();
    setText(this.count, "");
  }

  /** Mark the row of the session this page traces (null: none). */
  markTraced(sessionId) {
    this.traced = sessionId;
    for (const [id, entry] of this.rows) entry.row.classList.toggle("traced", id === sessionId);
  }

  async refresh() {
    const filter = this.filter.value.trim();
    const found = [];
    let cursor = null;
    let page;
    let pages = 0;
    do {
      const params = { limit: PAGE_SIZE };
      if (filter) params.filter = filter;
      if (cursor) params.cursor = cursor;
      page = await this.rpc("admin.connections", params);
      found.push(...page.connections);
      cursor = page.cursor;
      pages++;
    } while (cursor && pages < MAX_PAGES);
    if (filter !== this.filter.value.trim()) return; // typed on meanwhile: the kick refreshes again
    this.render(found);
    const shown = found.length < page.count ? `${found.length} of ${page.count}` : `${page.count}`;
    setText(this.count, `${shown} connection${page.count === 1 ? "" : "s"}`);
    this.onCluster(page.gateways, page.missing);
  }

  render(connections) {
    const now = serverNow();
    const seen = new Set();
    let previous = null;
    for (const data of connections) {
      const key = data.session_id ?? `${data.gateway_id}/${data.connection_id}`;
      seen.add(key);
      let entry = this.rows.get(key);
      if (!entry) {
        entry = this.createRow(key);
        this.rows.set(key, entry);
      }
      entry.data = data;
      this.fill(entry, data, now);
      // Keep the gateway's order (by gateway, then connection number).
      const expected = previous ? previous.nextSibling : this.body.firstChild;
      if (expected !== entry.row) this.body.insertBefore(entry.row, expected);
      previous = entry.row;
    }
    for (const [key, entry] of this.rows) {
      if (!seen.has(key)) {
        entry.row.remove();
        this.rows.delete(key);
      }
    }
  }

  createRow(key) {
    const cells = {};
    const row = el("tr", { "data-session-id": key });
    for (const name of COLUMNS) {
      cells[name] = el("td", { className: name });
      row.append(cells[name]);
    }
    for (const name of ["rtt", "messages", "bytes"]) cells[name].classList.add("num");
    cells.bar = el("span");
    cells.fill = el("span", { className: "fill" }, cells.bar);
    cells.fillText = el("span");
    cells.buffer.append(cells.fill, " ", cells.fillText);
    const button = el("button", { type: "button", className: "trace", "data-session-id": key }, "trace");
    row.append(el("td", {}, button));
    row.classList.toggle("traced", key === this.traced);
    return { row, cells, data: null };
  }

  fill({ row, cells }, c, now) {
    row.dataset.player = c.player_id ?? "";
    row.dataset.gateway = c.gateway_id;
    row.dataset.traced = String(Boolean(c.traced));
    row.dataset.messagesIn = String(c.messages_in);
    setText(cells.player, c.player_id ?? "–");
    setText(cells.session, c.session_id ?? "–");
    cells.session.title = c.session_id ?? "";
    setText(cells.gateway, `${c.gateway_id}/${c.connection_id}`);
    setText(cells.since, age(c.since_ms, now));
    cells.since.title = new Date(c.since_ms).toISOString();
    setText(cells.rtt, ms(c.rtt_ms));
    setText(cells.messages, `${compact(c.messages_in)} / ${compact(c.messages_out)}`);
    setText(cells.bytes, `${compact(c.bytes_in)} / ${compact(c.bytes_out)}`);
    const fill = c.send_buffer?.fill ?? 0;
    cells.bar.style.width = `${Math.min(100, fill * 100)}%`;
    cells.fill.classList.toggle("high", fill > 0.5);
    setText(cells.fillText, `${(fill * 100).toFixed(fill < 0.1 ? 1 : 0)}%`);
    cells.buffer.title = `${c.send_buffer?.bytes ?? 0} of ${c.send_buffer?.limit ?? "?"} bytes`;
    const more = c.subscription_count > c.subscriptions.length ? ` +${c.subscription_count - c.subscriptions.length}` : "";
    setText(cells.subscriptions, c.subscription_count ? `${c.subscription_count}: ${c.subscriptions.join(", ")}${more}` : "–");
    cells.subscriptions.title = c.subscriptions.join("\n");
    setText(cells.zone, c.zone ?? "–");
  }
}
