/**
 * The event inspector: the frames of one traced session, live.
 *
 * admin.trace starts it, each admin.frame notification is one row (click
 * it for the frame as indented JSON), admin.untrace or admin.trace_ended
 * ends it. The last MAX_FRAMES frames are kept; pausing keeps receiving
 * them but shows none until resumed, so nothing moves while one reads.
 * Export saves the frames shown (the method filter applies) as JSON lines.
 *
 * @module events
 */

import { clock, describe, el, setText } from "./dom.js";

const MAX_FRAMES = 1000;
/** Characters of a frame's one-line summary. */
const SUMMARY_CHARS = 140;

export class EventsView {
  /**
   * @param {function(string, object): Promise<object>} rpc an admin call
   * @param {function(string|null): void} onTraced told the session traced now
   */
  constructor(rpc, onTraced) {
    this.rpc = rpc;
    this.onTraced = onTraced;
    this.body = document.getElementById("frames");
    this.status = document.getElementById("trace-status");
    this.filter = document.getElementById("method-filter");
    this.pauseButton = document.getElementById("pause");
    this.untraceButton = document.getElementById("untrace");
    /** @type {{params: object, held: boolean, row: HTMLTableRowElement|null, detail: HTMLTableRowElement|null}[]} */
    this.frames = [];
    this.paused = false;
    /** The traced session: {sessionId, player, gateway} or null. */
    this.target = null;
    this.shown = 0;
    this.dropped = 0;
    /** admin.trace's result: the owning gateway's rate and frame size. */
    this.limits = null;

    this.filter.addEventListener("input", () => this.rerender());
    this.pauseButton.addEventListener("click", () => this.setPaused(!this.paused));
    this.untraceButton.addEventListener("click", () => this.untrace());
    document.getElementById("export").addEventListener("click", () => this.exportShown());
    this.body.addEventListener("click", (event) => {
      const row = event.target.closest("tr.frame");
      if (row) this.toggleDetail(row);
    });
    this.body.addEventListener("keydown", (event) => {
      const row = event.target.closest("tr.frame");
      if (row && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.toggleDetail(row);
      }
    });
  }

  /**
   * Trace the session of a connection row (one trace at a time); `fresh`
   * false keeps the frames shown so far (the same session traced again).
   */
  async trace(connection, fresh = true) {
    const sessionId = connection.session_id;
    if (!sessionId || this.target?.sessionId === sessionId) return;
    if (this.target) await this.untrace();
    if (fresh) this.clear();
    this.target = { sessionId, player: connection.player_id, gateway: connection.gateway_id };
    this.limits = null;
    this.setStatus("starting", `tracing ${this.who()}…`);
    try {
      const result = await this.rpc("admin.trace", { session_id: sessionId });
      if (this.target?.sessionId !== sessionId) {
        // Another row was picked while this trace started: end it, or it
        // would hold one of the gateway's traces and send frames for nothing.
        this.rpc("admin.untrace", { session_id: sessionId }).catch(() => {});
        return;
      }
      this.limits = result;
      this.setStatus("tracing", this.tracingText());
      this.untraceButton.disabled = false;
      this.onTraced(sessionId);
    } catch (error) {
      if (this.target?.sessionId !== sessionId) return;
      this.target = null;
      this.setStatus("ended", `could not trace: ${describe(error)}`);
    }
  }

  /** Trace again what was traced, after the page's own connection came back. */
  retrace() {
    const target = this.target;
    if (!target) return;
    this.target = null;
    this.trace({ session_id: target.sessionId, player_id: target.player, gateway_id: target.gateway }, false);
  }

  async untrace() {
    const target = this.target;
    if (!target) return;
    this.stopped();
    try {
      const result = await this.rpc("admin.untrace", { session_id: target.sessionId });
      this.setStatus("ended", `untraced ${whoOf(target)}: ${result.shown} shown, ${result.dropped} dropped`);
    } catch (error) {
      this.setStatus("ended", `untrace ${whoOf(target)}: ${describe(error)}`);
    }
  }

  /** admin.frame */
  frame(params) {
    if (params.session_id !== this.target?.sessionId) return;
    this.shown++;
    this.dropped = params.dropped ?? this.dropped;
    const record = { params, held: this.paused, row: null, detail: null };
    this.frames.push(record);
    while (this.frames.length > MAX_FRAMES) {
      const old = this.frames.shift();
      old.row?.remove();
      old.detail?.remove();
    }
    if (!record.held && this.matches(record)) {
      // Follow the newest frame unless one has scrolled up to read.
      const scroller = this.body.closest(".scroll");
      const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 24;
      this.body.append(this.rowOf(record));
      if (atBottom) scroller.scrollTop = scroller.scrollHeight;
    }
    this.setStatus("tracing", this.tracingText());
  }

  /** admin.trace_ended */
  ended(params) {
    if (params.session_id !== this.target?.sessionId) return;
    const target = this.target;
    this.stopped();
    this.setStatus("ended", `trace of ${whoOf(target)} ended: ${params.reason} (${params.shown} shown, ${params.dropped} dropped)`);
  }

  stopped() {
    this.target = null;
    this.untraceButton.disabled = true;
    this.onTraced(null);
  }

  /** Forget everything: the page lost its admin rights or its connection for good. */
  reset() {
    this.stopped();
    this.clear();
    this.setPaused(false);
    this.setStatus("none", "no trace");
  }

  clear() {
    this.frames = [];
    this.shown = 0;
    this.dropped = 0;
    this.body.replaceChildren();
  }

  setPaused(paused) {
    this.paused = paused;
    this.pauseButton.setAttribute("aria-pressed", String(paused));
    setText(this.pauseButton, paused ? "resume" : "pause");
    if (!paused) {
      for (const record of this.frames) record.held = false;
      this.rerender();
    }
    if (this.target && this.limits) this.setStatus("tracing", this.tracingText());
  }

  matches(record) {
    const wanted = this.filter.value.trim().toLowerCase();
    if (!wanted) return true;
    return methodOf(record.params).toLowerCase().includes(wanted);
  }

  /** The frames shown now: not held by a pause, passing the method filter. */
  visible() {
    return this.frames.filter((record) => !record.held && this.matches(record));
  }

  rerender() {
    const rows = [];
    for (const record of this.visible()) {
      rows.push(this.rowOf(record));
      if (record.detail) rows.push(record.detail);
    }
    this.body.replaceChildren(...rows);
  }

  rowOf(record) {
    if (record.row) return record.row;
    const p = record.params;
    const flags = [p.truncated ? "truncated" : "", p.undecodable ? "undecodable" : ""].filter(Boolean).join(" ");
    const summary = p.frame === null ? "(undecodable)" : typeof p.frame === "string" ? p.frame : JSON.stringify(p.frame);
    record.row = el(
      "tr",
      { className: "frame", tabIndex: 0, "data-direction": p.direction, "data-method": p.method ?? "" },
      el("td", {}, clock(p.time_ms)),
      el("td", { className: `dir-${p.direction}` }, p.direction === "in" ? "→ in" : "← out"),
      el("td", {}, methodOf(p)),
      el("td", { className: "num" }, `${p.size} B`),
      el("td", { className: "summary", title: flags }, summary.slice(0, SUMMARY_CHARS)),
    );
    record.row.record = record;
    return record.row;
  }

  toggleDetail(row) {
    const record = row.record;
    if (record.detail) {
      record.detail.remove();
      record.detail = null;
      return;
    }
    const p = record.params;
    const text = typeof p.frame === "string" ? p.frame : JSON.stringify(p.frame, null, 2);
    const note = p.truncated ? "\n(truncated)" : p.undecodable ? "\n(undecodable: none of its bytes are shown)" : "";
    record.detail = el("tr", { className: "detail" }, el("td", { colSpan: 5 }, el("pre", {}, text + note)));
    row.after(record.detail);
  }

  exportShown() {
    const lines = this.visible().map((record) => `${JSON.stringify(record.params)}\n`);
    const blob = new Blob(lines, { type: "application/x-ndjson" });
    const url = URL.createObjectURL(blob);
    const name = `trace-${(this.target?.player ?? "frames").replace(/[^A-Za-z0-9_-]/g, "_")}-${Date.now()}.jsonl`;
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  who() {
    return whoOf(this.target);
  }

  tracingText() {
    const paused = this.paused ? " (paused)" : "";
    const rate = this.limits ? ` of ${this.limits.rate}/s` : "";
    return `tracing ${this.who()}: ${this.shown} frames, ${this.dropped} dropped by the rate limit${rate}${paused}`;
  }

  setStatus(state, text) {
    this.status.dataset.state = state;
    this.status.dataset.shown = String(this.shown);
    setText(this.status, text);
  }
}

function whoOf(target) {
  return `${target.player ?? "?"} (${target.sessionId.slice(0, 8)}… on ${target.gateway})`;
}

/** What a frame is, for the table and the filter: its method, "(response)" or "batch". */
function methodOf(params) {
  return params.method ?? "(response)";
}
