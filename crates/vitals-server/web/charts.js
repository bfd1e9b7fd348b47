// Charts of the dashboard, drawn by uPlot (vendor/uPlot.iife.min.js, the global `uPlot`;
// pinned in package-lock.json, vendored by scripts/web-vendor). Times are ms since the
// epoch, shown in the browser's time zone. Each chart fills its container's width and
// follows it when the window changes.

const U = globalThis.uPlot;

/** The page's colours (light or dark scheme), from the CSS variables. */
export function palette() {
  const cs = getComputedStyle(document.body);
  const v = (name, d) => cs.getPropertyValue(name).trim() || d;
  return {
    fg: v("--fg", "#111"), muted: v("--muted", "#555"), line: v("--line", "#ccc"), accent: v("--accent", "#0b57d0"),
    warn: v("--warn", "#a61b1b"), second: v("--second", "#c43e00"), third: v("--third", "#2e7d32"),
  };
}

/** Columns with a null wherever consecutive times are more than `gap` apart, so lines break
 *  where there is no data instead of bridging it. */
export function withGaps(t, cols, gap) {
  const ot = [];
  const oc = cols.map(() => []);
  for (let i = 0; i < t.length; i++) {
    if (i && t[i] - t[i - 1] > gap) {
      ot.push(t[i - 1] + gap);
      oc.forEach((c) => c.push(null));
    }
    ot.push(t[i]);
    oc.forEach((c, j) => c.push(cols[j][i]));
  }
  return [ot, ...oc];
}

const axis = (p, extra = {}) => ({
  stroke: p.fg, grid: { stroke: p.line, width: 1 }, ticks: { stroke: p.line, width: 1 }, font: "12px system-ui, sans-serif", ...extra,
});

/** A uPlot in `box`, `height` px tall and as wide as `box`; `chart.dispose()` stops following. */
export function plot(box, opts, data) {
  const width = () => Math.max(200, Math.floor(box.clientWidth || 600));
  const u = new U({ ...opts, width: width() }, data, box);
  let last = width();
  const ro = new ResizeObserver(() => {
    const w = width();
    if (w !== last) { last = w; u.setSize({ width: w, height: opts.height }); }
  });
  ro.observe(box);
  u.dispose = () => { ro.disconnect(); u.destroy(); };
  return u;
}

/** Time spans (`{start, end}` in ms) merged where they overlap, so that stacked episodes
 *  do not darken each other. */
export function union(spans) {
  const out = [];
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ start: s.start, end: s.end });
  }
  return out;
}

/** Shades time spans over the plotting area, behind the series: the full height in `fill`
 *  and, if given, a strip along the top in `strip`. */
function shade(u, spans, fill, strip) {
  const { ctx, bbox } = u;
  ctx.save();
  for (const s of union(spans)) {
    const a = Math.max(bbox.left, u.valToPos(s.start, "x", true));
    const b = Math.min(bbox.left + bbox.width, u.valToPos(s.end, "x", true));
    if (b < bbox.left || a > bbox.left + bbox.width) continue;
    const w = Math.max(2, b - a);
    ctx.fillStyle = fill;
    ctx.fillRect(a, bbox.top, w, bbox.height);
    if (strip) {
      ctx.fillStyle = strip;
      ctx.fillRect(a, bbox.top, w, 6 * (window.devicePixelRatio || 1));
    }
  }
  ctx.restore();
}

/** Shades a horizontal band of values (e.g. the glucose target range). */
function hband(u, lo, hi, fill) {
  const { ctx, bbox } = u;
  const top = u.valToPos(hi, "y", true);
  const bottom = u.valToPos(lo, "y", true);
  ctx.save();
  ctx.fillStyle = fill;
  ctx.fillRect(bbox.left, Math.max(bbox.top, top), bbox.width, Math.min(bbox.top + bbox.height, bottom) - Math.max(bbox.top, top));
  ctx.restore();
}

/** The lowest and highest of a usual band over the hours from `x0` to `x1`; null when no
 *  hour there has one (or too many days are in view to draw it). */
function hourExtent(hours, x0, x1) {
  if (!hours || x1 - x0 > 15 * 864e5) return null;
  let lo = Infinity, hi = -Infinity;
  for (let s = Math.floor(x0 / 3600e3) * 3600e3; s < x1; s += 3600e3) {
    const b = hours[new Date(s).getHours()];
    if (b) { lo = Math.min(lo, b.low); hi = Math.max(hi, b.high); }
  }
  return lo <= hi ? [lo, hi] : null;
}

/** A person's usual band for each hour of the (local) day, drawn hour by hour behind the
 *  series: `hours[h]` is `{low, median, high}` or null. Left out past 15 days in view (a
 *  comb too fine to read). */
function hourBands(u, hours, fill, stroke) {
  const { ctx, bbox } = u;
  const [x0, x1] = [u.scales.x.min, u.scales.x.max];
  if (x0 === undefined || x1 === undefined || x1 - x0 > 15 * 864e5) return;
  const first = new Date(x0);
  first.setMinutes(0, 0, 0);
  ctx.save();
  ctx.beginPath();
  ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
  ctx.clip();
  ctx.fillStyle = fill;
  ctx.strokeStyle = stroke;
  ctx.setLineDash([4, 3]);
  for (let s = first.getTime(); s < x1; s += 3600e3) {
    const b = hours[new Date(s).getHours()];
    if (!b) continue;
    const l = u.valToPos(Math.max(s, x0), "x", true);
    const r = u.valToPos(Math.min(s + 3600e3, x1), "x", true);
    const top = u.valToPos(b.high, "y", true);
    ctx.fillRect(l, top, r - l, u.valToPos(b.low, "y", true) - top);
    const m = u.valToPos(b.median, "y", true);
    ctx.beginPath();
    ctx.moveTo(l, m);
    ctx.lineTo(r, m);
    ctx.stroke();
  }
  ctx.restore();
}

/**
 * One panel of synchronized time charts. `spec`: {height, unit, lines: [{label, color,
 * points?}], target?: [lo, hi], profile?: the usual band of each hour of the day}. Data per line: mean, min and max columns (min/max drawn as
 * a band). `view` is shared by the panels ({from, to}); `overlay()` returns the events and
 * alerts to shade; `onSelect(from, to)` is called when a range is dragged out with a mouse;
 * `onCursor(text)` with a readout of the values under the cursor.
 */
export function timePanel(box, spec, view, overlay, onSelect, onCursor) {
  const p = palette();
  const series = [{}];
  const bands = [];
  spec.lines.forEach((l, i) => {
    const color = l.color || [p.accent, p.second, p.third][i % 3];
    const mean = series.length;
    series.push(l.points
      ? { label: l.label, stroke: color, width: 0, paths: () => null, points: { show: true, size: 4, stroke: color, fill: color } }
      : { label: l.label, stroke: color, width: 1.5 }); // uPlot draws points where they are sparse
    series.push({ label: `${l.label} min`, stroke: "transparent", points: { show: false } });
    series.push({ label: `${l.label} max`, stroke: "transparent", points: { show: false } });
    bands.push({ series: [mean + 2, mean + 1], fill: color + "33" });
  });
  const opts = {
    height: spec.height || 140,
    ms: 1,
    legend: { show: false },
    padding: [8, 24, 0, 0],
    cursor: {
      sync: { key: "vitals-patient" },
      drag: { x: true, y: false, setScale: false },
      points: { show: false },
    },
    scales: {
      x: { time: true, range: () => [view.from, view.to] },
      // A y range even without data, so that the axis (and the plot's width) stays.
      y: { range: (u, lo, hi) => {
        // The usual band is in view too, so a reading is seen against it.
        const usual = hourExtent(spec.profile, view.from, view.to);
        if (usual) { lo = lo === null ? usual[0] : Math.min(lo, usual[0]); hi = hi === null ? usual[1] : Math.max(hi, usual[1]); }
        if (lo === null || hi === null) return [0, 1];
        if (hi - lo < 1e-9) { const d = Math.max(1, Math.abs(lo) * 0.05); return [lo - d, hi + d]; } // a flat line
        return U.rangeNum(lo, hi, 0.1, true);
      } },
    },
    axes: [axis(p), axis(p, { size: 56, values: (u, vals) => vals.map((v) => `${+v.toFixed(2)}`) })],
    series,
    bands,
    hooks: {
      drawClear: [(u) => {
        if (spec.target) hband(u, spec.target[0], spec.target[1], "rgba(46, 125, 50, 0.14)");
        if (spec.profile) hourBands(u, spec.profile, "rgba(106, 27, 154, 0.12)", "rgba(106, 27, 154, 0.55)");
        const o = overlay();
        shade(u, o.events, "rgba(120, 144, 156, 0.25)");
        shade(u, o.alerts, "rgba(198, 40, 40, 0.10)", "rgba(198, 40, 40, 0.85)");
      }],
      setSelect: [(u) => {
        const { left, width } = u.select;
        if (width > 4) onSelect(u.posToVal(left, "x"), u.posToVal(left + width, "x"));
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      }],
      setCursor: [(u) => {
        const i = u.cursor.idx;
        if (i === null || i === undefined) return onCursor("");
        const t = u.data[0][i];
        const vals = spec.lines.map((l, k) => {
          const v = u.data[1 + 3 * k][i];
          return v === null || v === undefined ? null : `${l.label} ${+v.toFixed(2)}`;
        }).filter((s) => s);
        onCursor(vals.length ? `${new Date(t).toLocaleString()}: ${vals.join(", ")} ${spec.unit}` : "");
      }],
    },
  };
  return plot(box, opts, [[], ...series.slice(1).map(() => [])]);
}

/** Readings as points, a line (e.g. the moving average), a target band; over a fixed range. */
export function readingsChart(box, { from, to, target, height = 240, unit }, t, v, lineT, lineV) {
  const p = palette();
  const data = U.join([[t, v], [lineT, lineV]]);
  return plot(box, {
    height, ms: 1, legend: { show: false }, cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: { x: { time: true, range: () => [from, to] }, y: { range: (u, lo, hi) => [Math.min(40, lo ?? 40), Math.max(300, hi ?? 300)] } },
    axes: [axis(p), axis(p, { size: 48, label: unit, labelSize: 18 })],
    series: [{},
      { label: "Readings", stroke: p.accent, width: 0, paths: () => null, points: { show: true, size: 3, stroke: p.accent, fill: p.accent } },
      { label: "Moving average", stroke: p.second, width: 2.5, spanGaps: true, points: { show: false } }],
    hooks: { drawClear: [(u) => target && hband(u, target[0], target[1], "rgba(46, 125, 50, 0.14)")] },
  }, data);
}

/** A person's nightly values (points and line) inside their baseline band (`low`-`high`,
 *  shaded) with the median dashed; nights at UTC noon of their day, `null` where missing. */
export function baselineChart(box, { from, to, height = 180, unit }, t, value, low, median, high) {
  const p = palette();
  return plot(box, {
    height, ms: 1, legend: { show: false }, cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: { x: { time: true, range: () => [from, to] } },
    axes: [axis(p), axis(p, { size: 56, label: unit, labelSize: 18 })],
    series: [{},
      { label: "Band low", stroke: "transparent", points: { show: false } },
      { label: "Normal", stroke: p.muted, width: 1.5, dash: [6, 4], points: { show: false } },
      { label: "Band high", stroke: "transparent", points: { show: false } },
      { label: "Night", stroke: p.accent, width: 2, spanGaps: false, points: { show: true, size: 5, stroke: p.accent, fill: p.accent } }],
    bands: [{ series: [3, 1], fill: "rgba(46, 125, 50, 0.16)" }],
  }, [t, low, median, high, value]);
}

const hhmm = (m) => `${String(Math.floor(m / 60) % 24).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;

/** Colours for patients compared with the first one. */
export const COMPARE_COLORS = ["#c43e00", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457"];

/** The daily profile: median and percentile bands over the minutes of a day, and the
 *  medians of compared patients (`others`: [{label, minutes, p50}]) as lines. */
export function profileChart(box, { target, height = 240, unit }, minutes, p5, p25, p50, p75, p95, others = []) {
  const p = palette();
  const tables = [[minutes, p5, p25, p50, p75, p95], ...others.map((o) => [o.minutes, o.p50])];
  const data = others.length ? U.join(tables) : tables[0];
  return plot(box, {
    height, legend: { show: false }, cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: { x: { time: false, range: () => [0, 1440] }, y: { range: (u, lo, hi) => [Math.min(40, lo ?? 40), Math.max(300, hi ?? 300)] } },
    axes: [axis(p, { splits: () => [0, 180, 360, 540, 720, 900, 1080, 1260, 1440], values: (u, vals) => vals.map(hhmm) }),
      axis(p, { size: 48, label: unit, labelSize: 18 })],
    series: [{},
      { label: "5th", stroke: "transparent", points: { show: false } },
      { label: "25th", stroke: "transparent", points: { show: false } },
      { label: "Median", stroke: p.accent, width: 2.5, points: { show: false } },
      { label: "75th", stroke: "transparent", points: { show: false } },
      { label: "95th", stroke: "transparent", points: { show: false } },
      ...others.map((o, i) => ({ label: o.label, stroke: COMPARE_COLORS[i % COMPARE_COLORS.length], width: 2, dash: [6, 4], spanGaps: true, points: { show: false } }))],
    bands: [{ series: [5, 1], fill: p.accent + "22" }, { series: [4, 2], fill: p.accent + "55" }],
    hooks: { drawClear: [(u) => target && hband(u, target[0], target[1], "rgba(46, 125, 50, 0.14)")] },
  }, data);
}

/** One patient's time in ranges as a stacked horizontal bar (very low ... very high), with
 *  the percentages written in it and in its accessible name. */
export function rangeBar(label, parts) {
  const bar = document.createElement("div");
  bar.className = "tir";
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", `${label}: ${parts.map((x) => `${x.name} ${x.percent.toFixed(1)} %`).join(", ")}`);
  for (const x of parts) {
    if (x.percent <= 0) continue;
    const seg = document.createElement("span");
    seg.className = `tir-${x.key}`;
    seg.style.width = `${x.percent}%`;
    seg.title = `${x.name}: ${x.percent.toFixed(1)} %`;
    seg.dataset.percent = x.percent.toFixed(1);
    if (x.percent >= 6) seg.textContent = `${Math.round(x.percent)} %`;
    bar.append(seg);
  }
  return bar;
}

/** Bars at bucket starts `t` (each `every` ms wide) over [from, to), with an optional trend. */
export function barChart(box, { from, to, every, height = 140, unit }, t, v, trend) {
  const p = palette();
  const series = [{},
    { label: unit, fill: p.accent, stroke: p.accent, width: 0, paths: U.paths.bars({ align: 1, size: [0.85, Infinity], gap: 1 }), points: { show: false } }];
  const data = [t, v];
  if (trend) {
    series.push({ label: "7-day mean", stroke: p.second, width: 2, points: { show: false } });
    data.push(trend);
  }
  return plot(box, {
    height, ms: 1, legend: { show: false }, cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: { x: { time: true, range: () => [from, to] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi ?? 1) * 1.1] } },
    axes: [axis(p), axis(p, { size: 56, values: (u, vals) => vals.map((x) => (x >= 1000 ? `${+(x / 1000).toFixed(1)}k` : `${+x.toFixed(1)}`)) })],
    series,
  }, data);
}

/** A 24-hour sparkline as an SVG polyline (no axes: the shape at a glance). */
export function sparkline(points, label, w = 120, h = 28) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", String(w));
  svg.setAttribute("height", String(h));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.classList.add("spark");
  svg.dataset.points = String(points.t.length);
  if (points.t.length > 1) {
    const lo = Math.min(...points.v), hi = Math.max(...points.v);
    const t0 = points.from, t1 = points.to;
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.t.map((t, i) =>
      `${(((t - t0) / (t1 - t0)) * (w - 2) + 1).toFixed(1)},${(h - 2 - ((points.v[i] - lo) / Math.max(1e-9, hi - lo)) * (h - 4)).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  return svg;
}

/**
 * Touch gestures on the charts: one finger drags the time axis, two fingers pinch to zoom.
 * `preview(from, to)` redraws without fetching while the fingers move; `commit(from, to)`
 * loads data for the final range. Mouse and pen keep uPlot's drag-to-zoom.
 */
export function touchGestures(el, view, preview, commit) {
  const touches = new Map();
  let start = null;
  let last = null; // the range shown since the gesture began, if it moved
  const plotRect = () => {
    const over = el.querySelector(".u-over");
    return over ? over.getBoundingClientRect() : el.getBoundingClientRect();
  };
  const snapshot = () => {
    const r = plotRect();
    const xs = [...touches.values()].map((p) => p.x);
    const mid = xs.reduce((a, b) => a + b, 0) / xs.length;
    const dist = xs.length > 1 ? Math.abs(xs[0] - xs[1]) : 0;
    const [from, to] = last || [view.from, view.to];
    return { from, to, mid, dist, left: r.left, width: r.width, n: xs.length };
  };
  const current = () => {
    if (!start) return null;
    const now = snapshot();
    const span = start.to - start.from;
    const msPerPx = span / start.width;
    if (start.n === 2 && now.n === 2 && now.dist > 10) {
      // The time under the fingers' midpoint stays under it.
      const anchor = start.from + (start.mid - start.left) * msPerPx;
      const next = Math.max(60e3, Math.min(10 * 365 * 864e5, span * (start.dist / now.dist)));
      const frac = (now.mid - now.left) / now.width;
      return [anchor - frac * next, anchor - frac * next + next];
    }
    const shift = (start.mid - now.mid) * msPerPx;
    return [start.from + shift, start.to + shift];
  };
  let done = false; // fingers still down after the gesture ended
  el.addEventListener("pointerdown", (ev) => {
    if (ev.pointerType !== "touch") return;
    if (done && touches.size === 0) done = false;
    if (done) return;
    touches.set(ev.pointerId, { x: ev.clientX });
    el.setPointerCapture(ev.pointerId);
    start = snapshot();
  });
  el.addEventListener("pointermove", (ev) => {
    if (!touches.has(ev.pointerId) || !start) return;
    touches.get(ev.pointerId).x = ev.clientX;
    const r = current();
    if (r && (r[0] !== start.from || r[1] !== start.to)) {
      last = r;
      preview(r[0], r[1]);
    }
  });
  // The first finger lifted ends the gesture and loads the range shown; the other fingers
  // do nothing more until they are lifted too.
  const end = (ev) => {
    if (!touches.delete(ev.pointerId)) return;
    if (start) {
      start = null;
      if (last) commit(last[0], last[1]);
      last = null;
    }
    if (touches.size) done = true;
  };
  el.addEventListener("pointerup", end);
  el.addEventListener("pointercancel", end);
}
