/**
 * The zones: admin.zones as a table every second, and a map of the selected
 * zone's entities from admin.zone every 200 ms.
 *
 * The map plots each entity by the zone's first two position fields (as
 * admin.zone names them; `x` and `y` for a zone without position) as a dot
 * with its name. A zone with bounds is drawn whole, its field outlined, so a
 * dot's place on the map is its place in the zone. Without bounds the map
 * scales to the extent of every position seen since the zone was selected:
 * it only grows, so a dot that moves does not move the others.
 *
 * The canvas's `data-dots` attribute lists the dots drawn (entity id and
 * position in canvas pixels), and `data-field` the bounds' rectangle in
 * canvas pixels (empty without bounds), for tests and for anyone reading the
 * page.
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
const FIELD_COLOR = "#3a4656";
/** The position fields plotted for a zone that names none. */
const DEFAULT_AXES = ["x", "y"];
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
    this.axes = DEFAULT_AXES;
    this.bounds = null;
    this.pollers = [];
    this.select.addEventListener("change", () => {
      this.extent = null;
      this.entities = {};
      this.bounds = null;
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
    this.bounds = null;
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
    this.axes = result.position?.length >= 2 ? result.position.slice(0, 2) : DEFAULT_AXES;
    this.bounds = result.bounds ? boundsOf(result.bounds) : null;
    const shown = Object.keys(result.entities).length;
    setText(this.mapStatus, `${result.count} entities${result.truncated ? `, first ${shown} shown` : ""}`);
    this.draw();
  }

  /** Entities with a position, grown into the extent (which starts as the bounds). */
  positions() {
    const dots = [];
    const [ax, ay] = this.axes;
    if (this.bounds && !this.extent) this.extent = { ...this.bounds };
    for (const [id, { fields }] of Object.entries(this.entities)) {
      const x = fields?.[ax];
      const y = fields?.[ay];
      if (typeof x !== "number" || typeof y !== "number") continue;
      dots.push({ id, x, y, fields });
      const e = this.extent;
      this.extent = e
        ? { minX: Math.min(e.minX, x), maxX: Math.max(e.maxX, x), minY: Math.min(e.minY, y), maxY: Math.max(e.maxY, y) }
        : { minX: x, maxX: x, minY: y, maxY: y };
    }
    return dots;
  }

  draw() {
    const { context: g, width, height, ratio } = fitCanvas(this.canvas);
    g.fillStyle = BACKGROUND;
    g.fillRect(0, 0, width, height);
    const dots = this.positions();
    this.canvas.dataset.field = "";
    if (!dots.length || !this.extent) {
      this.canvas.dataset.dots = "[]";
      g.fillStyle = "#56606e";
      g.font = "12px ui-monospace, monospace";
      g.fillText(this.select.value ? `no entity with ${this.axes.join(" and ")}` : "no zone", 10, 20);
      return;
    }
    // One scale for both axes, so distances look as they are; y grows downwards.
    // A zone's bounds fill the map; a seen extent keeps some room around it.
    const e = this.extent;
    const padding = this.bounds ? 0 : PADDING;
    const spanX = Math.max(e.maxX - e.minX, 1) * (1 + 2 * padding);
    const spanY = Math.max(e.maxY - e.minY, 1) * (1 + 2 * padding);
    const scale = Math.min((width - 2 * MARGIN) / spanX, (height - 2 * MARGIN) / spanY);
    const centerX = (e.minX + e.maxX) / 2;
    const centerY = (e.minY + e.maxY) / 2;
    const toPixels = (x, y) => [width / 2 + (x - centerX) * scale, height / 2 + (y - centerY) * scale];
    this.drawGrid(g, width, height);
    if (this.bounds) this.drawField(g, toPixels, ratio);
    g.font = "11px ui-monospace, monospace";
    g.textBaseline = "middle";
    const drawn = [];
    for (const dot of dots) {
      const [px, py] = toPixels(dot.x, dot.y);
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

  /** The bounds' outline, and its rectangle in canvas pixels as data-field. */
  drawField(g, toPixels, ratio) {
    const [left, top] = toPixels(this.bounds.minX, this.bounds.minY);
    const [right, bottom] = toPixels(this.bounds.maxX, this.bounds.maxY);
    g.strokeStyle = FIELD_COLOR;
    g.lineWidth = 1;
    g.strokeRect(left + 0.5, top + 0.5, right - left - 1, bottom - top - 1);
    this.canvas.dataset.field = JSON.stringify({
      left: Math.round(left * ratio),
      top: Math.round(top * ratio),
      right: Math.round(right * ratio),
      bottom: Math.round(bottom * ratio),
    });
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

/** admin.zone's bounds as the map's extent, over its first two axes. */
function boundsOf({ min, max }) {
  return { minX: min[0], maxX: max[0], minY: min[1], maxY: max[1] };
}

/** The entity's own `color` field when it is a hex colour, else one from its id. */
function colorOf(dot) {
  if (typeof dot.fields.color === "string" && HEX_COLOR.test(dot.fields.color)) return dot.fields.color;
  let hash = 0;
  for (const ch of dot.id) hash = (hash * 31 + ch.charCodeAt(0)) | 0;
  return `hsl(${Math.abs(hash) % 360}, 70%, 60%)`;
}
