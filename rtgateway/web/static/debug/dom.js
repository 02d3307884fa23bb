/**
 * Small DOM, formatting and timing helpers shared by the inspector's views.
 *
 * Everything is written with textContent and CSSOM, never innerHTML: what
 * the gateway reports (player ids, topics, frames) is data, never markup.
 *
 * @module dom
 */

/**
 * A new element: `el("td", {className: "num", title: "x"}, "text", child)`.
 * Attributes named `data-*` or `aria-*` are set as attributes, the others as
 * properties.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

/** Set an element's text only when it changed (the tables refresh every second). */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** 1234567 -> "1.2M"; bytes and counts alike. */
export function compact(n) {
  if (n == null) return "–";
  const abs = Math.abs(n);
  if (abs < 1000) return String(Math.round(n * 10) / 10);
  for (const [limit, suffix] of [
    [1e6, "k"],
    [1e9, "M"],
    [1e12, "G"],
  ]) {
    if (abs < limit) return `${(n / (limit / 1000)).toFixed(1)}${suffix}`;
  }
  return `${(n / 1e12).toFixed(1)}T`;
}

/** Milliseconds as "21.4 ms", or "–" when unknown. */
export function ms(value) {
  return value == null ? "–" : `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

/** The gateway's clock minus this browser's, from session.welcome's server_time_ms. */
let clockOffsetMs = 0;

/** Set the offset when the gateway tells its time. */
export function setServerTime(serverTimeMs) {
  clockOffsetMs = serverTimeMs - Date.now();
}

/** Now on the gateway's clock, which stamps every time admin.* reports. */
export function serverNow() {
  return Date.now() + clockOffsetMs;
}

/** How long ago `sinceMs` (a gateway time) was: "42s", "3m05s", "2h10m". */
export function age(sinceMs, now = serverNow()) {
  const s = Math.max(0, Math.floor((now - sinceMs) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A gateway time as "12:34:56.789" (local time). */
export function clock(timeMs) {
  const d = new Date(timeMs);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/**
 * Run `task` now and then `intervalMs` after each run ends, until stopped.
 *
 * Not setInterval: a slow answer (a gateway of the cluster that does not
 * answer within its timeout) delays the next call instead of piling calls
 * up. A failure goes to `onError` and the loop goes on.
 */
export function every(intervalMs, task, onError) {
  let timer = null;
  let running = false;
  let stopped = false;
  let again = false;
  const run = async () => {
    timer = null;
    running = true;
    try {
      await task();
    } catch (error) {
      if (!stopped) onError(error);
    }
    running = false;
    if (stopped) return;
    if (again) {
      again = false;
      run();
    } else {
      timer = setTimeout(run, intervalMs);
    }
  };
  run();
  return {
    /** Run again as soon as possible (after the run in progress, if any). */
    kick() {
      if (stopped) return;
      if (running) {
        again = true;
        return;
      }
      clearTimeout(timer);
      run();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/**
 * Size a canvas's backing store to its displayed size times the device
 * pixel ratio; returns its 2D context scaled to CSS pixels, and the size.
 */
export function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { context, width: width / ratio, height: height / ratio, ratio };
}

/** The error's message for a status line: "admin.zone: unknown zone (-32003)". */
export function describe(error) {
  return error instanceof Error ? error.message : String(error);
}
