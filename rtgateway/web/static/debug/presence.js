/**
 * Presence: the players connected by status, and the presence zones in use,
 * a page at a time (admin.presence's cursor), refreshed every two seconds.
 *
 * @module presence
 */

import { describe, el, every, setText } from "./dom.js";

const REFRESH_MS = 2000;
const PAGE_SIZE = 10;
const STATUSES = ["online", "away", "busy", "invisible"];

export class PresenceView {
  /** @param {function(string, object): Promise<object>} rpc an admin call */
  constructor(rpc) {
    this.rpc = rpc;
    this.statuses = document.querySelector("#presence-statuses tbody");
    this.zones = document.querySelector("#presence-zones tbody");
    this.total = document.getElementById("presence-total");
    this.pageLabel = document.getElementById("presence-page");
    this.prev = document.getElementById("presence-prev");
    this.next = document.getElementById("presence-next");
    /** Cursors of the pages before this one; the last is this page's. */
    this.cursors = [null];
    this.nextCursor = null;
    this.poller = null;
    this.next.addEventListener("click", () => {
      if (!this.nextCursor) return;
      this.cursors.push(this.nextCursor);
      this.poller?.kick();
    });
    this.prev.addEventListener("click", () => {
      if (this.cursors.length < 2) return;
      this.cursors.pop();
      this.poller?.kick();
    });
  }

  start() {
    this.poller = every(REFRESH_MS, () => this.refresh(), (error) => setText(this.total, `error: ${describe(error)}`));
  }

  stop() {
    this.poller?.stop();
    this.poller = null;
    this.cursors = [null];
    this.statuses.replaceChildren();
    this.zones.replaceChildren();
    setText(this.total, "");
    setText(this.pageLabel, "");
  }

  async refresh() {
    const cursor = this.cursors.at(-1);
    const params = { limit: PAGE_SIZE };
    if (cursor) params.cursor = cursor;
    const result = await this.rpc("admin.presence", params);
    if (cursor !== this.cursors.at(-1)) return; // paged meanwhile: the kick reads the new page
    setText(this.total, `${result.players} player${result.players === 1 ? "" : "s"}`);
    this.statuses.replaceChildren(
      ...STATUSES.map((status) =>
        el("tr", { "data-status": status }, el("td", {}, status), el("td", { className: "num" }, String(result.statuses[status] ?? 0))),
      ),
    );
    this.zones.replaceChildren(
      ...(result.zones.length
        ? result.zones.map((zone) => el("tr", { "data-zone": zone.zone }, el("td", {}, zone.zone), el("td", { className: "num" }, String(zone.players))))
        : [el("tr", {}, el("td", { className: "muted", colSpan: 2 }, "no presence zone in use"))]),
    );
    this.nextCursor = result.cursor;
    this.next.disabled = !result.cursor;
    this.prev.disabled = this.cursors.length < 2;
    setText(this.pageLabel, `page ${this.cursors.length}`);
  }
}
