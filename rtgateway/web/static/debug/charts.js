/**
 * The cluster's figures over the last minutes, as line charts on <canvas>.
 *
 * Plain canvas and no charting library: four small line charts need axes,
 * a grid and a few polylines, a hundred lines of code, where a vendored
 * library would be far more code to ship, keep up to date and audit, and
 * would have to fit the page's Content-Security-Policy.
 *
 * admin.stats gives each gateway's samples (one a second, five minutes of
 * them); the charts show the cluster: each gateway's sample of the same
 * interval added up (messages, connections, reconnects and resumes), and
 * the highest p99 call latency among them.
 *
 * @module charts
 */

import { compact, describe, every, fitCanvas, serverNow, setText } from "./dom.js";

const REFRESH_MS = 1000;
/** Samples asked for on each refresh after the first (which takes them all). */
const RECENT = 5;

const COLORS = { in: "#7fd18b", out: "#f0b35e", p99: "#ff8a8a", connections: "#5fb3f9", reconnects: "#f0b35e", resumes: "#c792ea" };

const CHARTS = [
  {
    id: "chart-messages",
    title: "messages/s",
    lines: [
      { key: "messages_in_per_s", label: "in", color: COLORS.in },
      { key: "messages_out_per_s", label: "out", color: COLORS.out },
    ],
  },
  { id: "chart-latency", title: "p99 call latency, ms", lines: [{ key: "p99_call_ms", label: "p99", color: COLORS.p99, max: true }] },
  { id: "chart-connections", title: "connections", lines: [{ key: "connections", label: "open", color: COLORS.connections }] },
  {
    id: "chart-resumes",
    title: "resume calls",
    lines: [
      { key: "reconnects", label: "reconnects", color: COLORS.reconnects },
      { key: "resumes", label: "resumes", color: COLORS.resumes },
    ],
  },
];

export class ChartsView {
  /** @param {function(string, object): Promise<object>} rpc an admin call */
  constructor(rpc) {
    this.rpc = rpc;
    this.status = document.getElementById("charts-status");
    /** gateway id -> {intervalMs, samples: Map<time_ms, sample>} */
    this.gateways = new Map();
    this.windowMs = 300_000;
    this.poller = null;
    window.addEventListener("resize", () => this.draw());
  }

  start() {
    this.poller = every(REFRESH_MS, () => this.refresh(), (error) => setText(this.status, `error: ${describe(error)}`));
  }

  stop() {
    this.poller?.stop();
    this.poller = null;
    this.gateways.clear();
    setText(this.status, "");
    this.draw();
  }

  async refresh() {
    const result = await this.rpc("admin.stats", this.gateways.size ? { last: RECENT } : {});
    for (const [id, { interval_ms: intervalMs, samples }] of Object.entries(result.gateways)) {
      let gateway = this.gateways.get(id);
      if (!gateway) {
        gateway = { intervalMs, samples: new Map() };
        this.gateways.set(id, gateway);
      }
      for (const sample of samples) gateway.samples.set(sample.time_ms, sample);
    }
    const now = serverNow();
    for (const gateway of this.gateways.values()) {
      for (const time of gateway.samples.keys()) if (time < now - this.windowMs) gateway.samples.delete(time);
    }
    const missing = result.missing.length ? `, missing: ${result.missing.join(", ")}` : "";
    setText(this.status, `${Object.keys(result.gateways).length} gateway(s)${missing}`);
    this.draw();
  }

  /** The cluster's samples, one per interval: sums, and maxima where a line asks for them. */
  merged() {
    const buckets = new Map();
    for (const { intervalMs, samples } of this.gateways.values()) {
      for (const sample of samples.values()) {
        const slot = Math.round(sample.time_ms / intervalMs) * intervalMs;
        let bucket = buckets.get(slot);
        if (!bucket) {
          bucket = { time_ms: slot };
          buckets.set(slot, bucket);
        }
        for (const chart of CHARTS) {
          for (const line of chart.lines) {
            const value = sample[line.key];
            if (value == null) continue;
            const held = bucket[line.key];
            bucket[line.key] = held == null ? value : line.max ? Math.max(held, value) : held + value;
          }
        }
      }
    }
    return [...buckets.values()].sort((a, b) => a.time_ms - b.time_ms);
  }

  draw() {
    const samples = this.merged();
    const end = serverNow();
    for (const chart of CHARTS) drawChart(document.getElementById(chart.id), chart, samples, end - this.windowMs, end);
  }
}

/** One chart: grid, y scale from 0 in four round steps, a polyline per line, the legend. */
function drawChart(canvas, chart, samples, start, end) {
  const { context: g, width, height } = fitCanvas(canvas);
  const left = 34;
  const top = 24;
  const right = width - 6;
  const bottom = height - 14;
  g.fillStyle = "#0b0e12";
  g.fillRect(0, 0, width, height);

  let max = 0;
  for (const sample of samples) for (const line of chart.lines) max = Math.max(max, sample[line.key] ?? 0);
  const yMax = 4 * niceStep(max / 4);
  const x = (t) => left + ((t - start) / (end - start)) * (right - left);
  const y = (v) => bottom - (v / yMax) * (bottom - top);

  g.font = "10px ui-monospace, monospace";
  g.lineWidth = 1;
  g.strokeStyle = "#1f2731";
  g.fillStyle = "#6b7685";
  g.textBaseline = "middle";
  g.textAlign = "right";
  g.beginPath();
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    const py = Math.round(y(v)) + 0.5;
    g.moveTo(left, py);
    g.lineTo(right, py);
    g.fillText(tickLabel(v), left - 4, py);
  }
  g.textAlign = "center";
  g.textBaseline = "alphabetic";
  for (let minute = 0; minute <= (end - start) / 60_000; minute++) {
    const px = Math.round(x(end - minute * 60_000)) + 0.5;
    g.moveTo(px, top);
    g.lineTo(px, bottom);
    if (px > left + 12) g.fillText(minute ? `-${minute}m` : "now", Math.min(px, right - 10), height - 3);
  }
  g.stroke();

  for (const line of chart.lines) {
    g.strokeStyle = line.color;
    g.lineWidth = 1.5;
    g.beginPath();
    let drawing = false;
    for (const sample of samples) {
      const value = sample[line.key];
      if (value == null || sample.time_ms < start) {
        drawing = false; // a gap: no call answered, nothing to plot
        continue;
      }
      if (drawing) g.lineTo(x(sample.time_ms), y(value));
      else g.moveTo(x(sample.time_ms), y(value));
      drawing = true;
    }
    g.stroke();
  }

  g.textAlign = "left";
  g.fillStyle = "#d7dde5";
  g.fillText(chart.title, 4, 11);
  let legendX = Math.max(g.measureText(chart.title).width + 14, 120);
  const last = samples.at(-1);
  for (const line of chart.lines) {
    const value = last?.[line.key];
    const text = `${line.label} ${value == null ? "–" : compact(value)}`;
    g.fillStyle = line.color;
    g.fillText(text, legendX, 11);
    legendX += g.measureText(text).width + 12;
  }
}

/** The smallest 1, 2 or 5 times a power of ten at or above `value` (0.25 for nothing). */
function niceStep(value) {
  if (!(value > 0)) return 0.25;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** A tick's label: 0.25, 1.5, 40, 12k. */
function tickLabel(value) {
  return value < 1000 ? String(Number(value.toFixed(2))) : compact(value);
}
