/**
 * The zones: admin.zones as a table every second, and a map of the selected
 * zone's entities from admin.zone every 200 ms.
 *
 * The map plots each entity with numeric `x` and `y` fields as a dot with
 * its name. admin.zone does not say the zone's bounds, so the map scales to
 * the extent of every position seen since the zone was selected: it only
 * grows, so a dot that moves does not move the others.
 *
 * The canvas's `data-dots` attribute lists the dots drawn (entity id and
 * position in canvas pixels), for tests and for anyone reading the page.
 *
 * @module zones
 */

import { describe, el, every, fitCanvas, ms, setText } from "./dom.js";

const TABLE_MS = 1000;
const MAP_MS = 200;
const DOT_RADIUS = 5;
/** CSS pixels kept free around the plotted extent, for the dots and labels. */
const MARGIN = 18;
/** The extent's share added on each side, so no dot sits on the edge. */
const PADDING = 0.1;
const BACKGROUND = "#0b0e12";
const HEX_COLOR = /^#[0-9A-Fa-f]{3,8}$/;

export class ZonesView {
  /** @param {function(string, object): Promise<object>} rpc an admin call */
  constructor(rpc) {
    this.rpc = rpc;
    this.body = document.querySelector("#zones-table tbody");
    this.select = document.getElementById("zone-select");
    this.canvas = document.getElementById("zone-map");
    this.mapStatus = document.getElementById("zone-map-status");
    this.extent = null;
    this.entities = {};
    this.pollers = [];
    this.select.addEventListener("change", () => {
      this.extent = null;
      this.entities = {};
      this.draw();
      this.pollers[1]?.kick();
    });
    window.addEventListener("resize", () => this.draw());
  }

  start() {
    this.pollers = [
      every(TABLE_MS, () => this.refreshTable(), (error) => setText(this.mapStatus, `admin.zones: ${describe(error)}`)),
      every(MAP_MS, () => this.refreshMap(), (error) => setText(this.mapStatus, describe(error))),
    ];
  }

  stop() {
    for (const poller of this.pollers) poller.stop();
    this.pollers = [];
    this.body.replaceChildren();
    this.select.replaceChildren();
    this.entities = {};
    this.extent = null;
    setText(this.mapStatus, "");
    this.draw();
  }

  async refreshTable() {
    const result = await this.rpc("admin.zones", {});
    const rows = [];
    const names = new Set();
    const active = new Set();
    for (const [gateway, { zones }] of Object.entries(result.gateways).sort(([a], [b]) => (a < b ? -1 : 1))) {
      for (const zone of zones) {
        names.add(zone.zone);
        if (zone.active) active.add(zone.zone);
        const row = el(
          "tr",
          { "data-zone": zone.zone, "data-gateway": gateway, className: zone.active ? "" : "muted" },
          el("td", {}, gateway),
          el("td", {}, zone.zone),
          el("td", { className: "num" }, String(zone.entities)),
          el("td", { className: "num" }, String(zone.clients)),
          el("td", { className: "num" }, ms(zone.tick_p99_ms)),
          el("td", { className: "num" }, `${zone.overruns} / ${zone.ticks}`),
        );
        rows.push(row);
      }
    }
    this.body.replaceChildren(...rows);
    this.updateSelect([...names].sort(), active);
  }

  /** Keep the selector's choice; pick the first active zone when there is none yet. */
  updateSelect(names, active) {
    const current = [...this.select.options].map((option) => option.value);
    if (current.join("\n") !== names.join("\n")) {
      const chosen = this.select.value;
      this.select.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
      if (names.includes(chosen)) this.select.value = chosen;
      else this.select.value = names.find((name) => active.has(name)) ?? names[0] ?? "";
      this.extent = null;
      this.pollers[1]?.kick();
    }
  }

  async refreshMap() {
    const zone = this.select.value;
    if (!zone) return;
    const result = await this.rpc("admin.zone", { zone });
    if (zone !== this.select.value) return;
    this.entities = result.entities;
    const shown = Object.keys(result.entities).length;
    setText(this.mapStatus, `${result.count} entities${result.truncated ? `, first ${shown} shown` : ""}`);
    this.draw();
  }

  /** Entities with a position, grown into the extent. */
  positions() {
    const dots = [];
    for (const [id, { fields }] of Object.entries(this.entities)) {
      if (typeof fields?.x !== "number" || typeof fields?.y !== "number") continue;
      dots.push({ id, x: fields.x, y: fields.y, fields });
      const e = this.extent;
      this.extent = e
        ? { minX: Math.min(e.minX, fields.x), maxX: Math.max(e.maxX, fields.x), minY: Math.min(e.minY, fields.y), maxY: Math.max(e.maxY, fields.y) }
        : { minX: fields.x, maxX: fields.x, minY: fields.y, maxY: fields.y };
    }
    return dots;
  }

  draw() {
    const { context: g, width, height, ratio } = fitCanvas(this.canvas);
    g.fillStyle = BACKGROUND;
    g.fillRect(0, 0, width, height);
    const dots = this.positions();
    if (!dots.length || !this.extent) {
      this.canvas.dataset.dots = "[]";
      g.fillStyle = "#56606e";
      g.font = "12px ui-monospace, monospace";
      g.fillText(this.select.value ? "no entity with x and y" : "no zone", 10, 20);
      return;
    }
    // One scale for both axes, so distances look as they are; y grows downwards.
    const e = this.extent;
    const spanX = Math.max(e.maxX - e.minX, 1) * (1 + 2 * PADDING);
    const spanY = Math.max(e.maxY - e.minY, 1) * (1 + 2 * PADDING);
    const scale = Math.min((width - 2 * MARGIN) / spanX, (height - 2 * MARGIN) / spanY);
    const centerX = (e.minX + e.maxX) / 2;
    const centerY = (e.minY + e.maxY) / 2;
    this.drawGrid(g, width, height);
    g.font = "11px ui-monospace, monospace";
    g.textBaseline = "middle";
    const drawn = [];
    for (const dot of dots) {
      const px = width / 2 + (dot.x - centerX) * scale;
      const py = height / 2 + (dot.y - centerY) * scale;
      const player = dot.id.startsWith("player.");
      g.fillStyle = colorOf(dot);
      g.beginPath();
      if (player) g.arc(px, py, DOT_RADIUS, 0, 2 * Math.PI);
      else g.rect(px - DOT_RADIUS, py - DOT_RADIUS, 2 * DOT_RADIUS, 2 * DOT_RADIUS);
      g.fill();
      g.fillStyle = "#c9d1db";
      const label = typeof dot.fields.name === "string" && dot.fields.name ? dot.fields.name : dot.id.replace(/^player\./, "");
      const text = `${label} (${dot.x}, ${dot.y})`;
      // Labels go right of their dot, or left of it near the right edge.
      const textWidth = g.measureText(text).width;
      const right = px + DOT_RADIUS + 4 + textWidth <= width;
      g.fillText(text, right ? px + DOT_RADIUS + 4 : px - DOT_RADIUS - 4 - textWidth, py);
      drawn.push({ id: dot.id, x: Math.round(px * ratio), y: Math.round(py * ratio) });
    }
    this.canvas.dataset.dots = JSON.stringify(drawn);
  }

  drawGrid(g, width, height) {
    g.strokeStyle = "#1b222b";
    g.lineWidth = 1;
    g.beginPath();
    for (let x = 0.5; x < width; x += 40) {
      g.moveTo(x, 0);
      g.lineTo(x, height);
    }
    for (let y = 0.5; y < height; y += 40) {
      g.moveTo(0, y);
      g.lineTo(width, y);
    }
    g.stroke();
  }
}

/** The entity's own `color` field when it is a hex colour, else one from its id. */
function colorOf(dot) {
  if (typeof dot.fields.color === "string" && HEX_COLOR.test(dot.fields.color)) return dot.fields.color;
  let hash = 0;
  for (const ch of dot.id) hash = (hash * 31 + ch.charCodeAt(0)) | 0;
  return `hsl(${Math.abs(hash) % 360}, 70%, 60%)`;
}
