// The Vitals dashboard: a small app over the authenticated API, with the session cookie.
// No inline code (the Content-Security-Policy forbids it), no third-party requests, and
// no patient data in URLs beyond pseudonyms.

const app = document.getElementById("app");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let me = null;

/** A request to the API; changes carry the session's CSRF token. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && me && me.csrf) headers["X-CSRF-Token"] = me.csrf;
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!r.ok) {
    const e = new Error((data && data.message) || `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return data;
}

/** An element with attributes and children (text is always set as text, never as HTML). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function show(...nodes) {
  app.replaceChildren(...nodes);
  app.focus();
}

/** How long before the server's `now` (the server's clock, not this device's). */
function ago(iso, now) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.parse(now) - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function value(latest, code, digits = 0) {
  const v = latest[code];
  return v ? `${Number(v.value).toFixed(digits)} ${v.unit}` : "–";
}

function signIn(message) {
  nav.hidden = true;
  const error = el("p", { class: "error", role: "alert", id: "signin-error" }, message || "");
  const name = el("input", { id: "name", name: "name", autocomplete: "username", required: true });
  const password = el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = el("form", { class: "signin", "aria-labelledby": "signin-title" },
    el("h1", { id: "signin-title" }, "Sign in"),
    el("label", { for: "name" }, "User name", name),
    el("label", { for: "password" }, "Password", password),
    error,
    el("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      await api("POST", "/api/v1/login", { name: name.value, password: password.value });
      await start();
    } catch (e) {
      error.textContent = e.message;
    }
  });
  show(form);
  name.focus();
}

async function patients() {
  const data = await api("GET", "/api/v1/overview");
  const search = el("input", { type: "search", id: "search", placeholder: "Filter by pseudonym", "aria-label": "Filter patients" });
  const staleOnly = el("input", { type: "checkbox", id: "stale-only" });
  const body = el("tbody");
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const rows = data.patients
      .filter((p) => !q || p.patient.toLowerCase().includes(q))
      .filter((p) => !staleOnly.checked || p.stale)
      .map((p) => el("tr", { class: p.stale ? "stale" : "", "data-patient": p.patient },
        el("td", {}, el("a", { href: `#/patient/${encodeURIComponent(p.patient)}` }, p.patient)),
        el("td", { class: "num" }, value(p.latest, "heart_rate")),
        el("td", { class: "num" }, value(p.latest, "blood_glucose")),
        el("td", { class: "num opt" }, value(p.latest, "spo2")),
        el("td", { class: "num opt" }, p.battery === null ? "–" : `${Math.round(p.battery)} %`),
        el("td", {}, p.open_alerts ? el("span", { class: "badge", "aria-label": `${p.open_alerts} open alerts` }, p.open_alerts) : "0"),
        el("td", {}, ago(p.last_seen, data.now), p.stale ? el("span", { class: "muted" }, " (stale)") : null)));
    body.replaceChildren(...rows);
  };
  search.addEventListener("input", render);
  staleOnly.addEventListener("change", render);
  render();
  show(
    el("h1", {}, "Patients"),
    el("div", { class: "toolbar" }, search, el("label", { for: "stale-only" }, staleOnly, " Stale only"),
      el("span", { class: "muted", id: "patient-count" }, `${data.patients.length} patients`)),
    el("table", { id: "patients" },
      el("thead", {}, el("tr", {},
        ["Patient", "Heart rate", "Glucose"].map((h) => el("th", { scope: "col" }, h)),
        ["SpO₂", "Battery"].map((h) => el("th", { scope: "col", class: "opt" }, h)),
        ["Open alerts", "Last seen"].map((h) => el("th", { scope: "col" }, h)))),
      body));
}

const CHART_ORDER = ["heart_rate", "rr_interval", "skin_temperature", "eda", "acceleration_x", "spo2", "blood_glucose", "respiratory_rate", "steps"];
const RANGES = [["1 h", 3600e3], ["6 h", 6 * 3600e3], ["24 h", 864e5], ["7 d", 7 * 864e5], ["30 d", 30 * 864e5], ["1 y", 365 * 864e5]];
let liveSource = null;

/** Draws one panel: the min-max band, the mean line, events and alert episodes behind. */
function drawPanel(canvas, s, view, events, alerts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const x = (t) => ((t - view.from) / (view.to - view.from)) * w;
  for (const e of events) {
    ctx.fillStyle = "rgba(120, 144, 156, 0.25)";
    ctx.fillRect(x(e.start), 0, Math.max(2, x(e.end) - x(e.start)), h);
  }
  for (const a of alerts) {
    ctx.fillStyle = "rgba(198, 40, 40, 0.25)";
    ctx.fillRect(x(a.start), 0, Math.max(2, x(a.end) - x(a.start)), h);
  }
  const lo = Math.min(...s.min), hi = Math.max(...s.max);
  const pad = (hi - lo) * 0.08 || 1;
  const y = (v) => h - 14 - ((v - (lo - pad)) / (hi - lo + 2 * pad)) * (h - 24);
  const color = getComputedStyle(document.body).getPropertyValue("--accent").trim() || "#0b57d0";
  ctx.fillStyle = color + "33";
  ctx.beginPath();
  s.t.forEach((t, i) => (i ? ctx.lineTo(x(t), y(s.max[i])) : ctx.moveTo(x(t), y(s.max[i]))));
  for (let i = s.t.length - 1; i >= 0; i--) ctx.lineTo(x(s.t[i]), y(s.min[i]));
  ctx.closePath();
  ctx.fill();
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  s.t.forEach((t, i) => (i ? ctx.lineTo(x(t), y(s.mean[i])) : ctx.moveTo(x(t), y(s.mean[i]))));
  ctx.stroke();
  ctx.fillStyle = getComputedStyle(document.body).color;
  ctx.font = "12px system-ui, sans-serif";
  if (s.t.length) ctx.fillText(`${hi.toFixed(1)} / ${lo.toFixed(1)} ${s.unit}`, 4, 12);
}

async function patient(id) {
  const enc = encodeURIComponent(id);
  const data = await api("GET", `/api/v1/patients/${enc}/latest`);
  const newest = data.metrics.reduce((t, m) => (m.time > t ? m.time : t), "");
  const have = new Set(data.metrics.map((m) => m.metric));
  const metrics = CHART_ORDER.filter((m) => have.has(m)).slice(0, 6);
  const end = Date.parse(newest || new Date().toISOString()) + 1000;
  const view = { from: end - 6 * 3600e3, to: end, live: true };
  const panels = el("div", { id: "charts", class: "charts", tabindex: "0",
    "aria-label": "Charts; arrow keys pan, plus and minus zoom, drag to zoom into a range" });
  const status = el("p", { class: "muted", id: "chart-range", role: "status" });
  const canvases = metrics.map((m) => el("canvas", { class: "panel", "data-metric": m, role: "img", "aria-label": `${m} chart` }));
  panels.append(...metrics.map((m, i) => el("figure", {}, el("figcaption", {}, m), canvases[i])));
  const draw = async () => {
    const width = Math.max(10, Math.min(4000, Math.round(panels.clientWidth || 800)));
    const c = await api("GET", `/api/v1/patients/${enc}/chart?metrics=${metrics.join(",")}&from=${Math.round(view.from)}&to=${Math.round(view.to)}&width=${width}`);
    c.series.forEach((s, i) => {
      canvases[i].dataset.points = String(s.t.length);
      drawPanel(canvases[i], s, view, c.events, c.alerts);
    });
    panels.dataset.events = String(c.events.length);
    panels.dataset.alerts = String(c.alerts.length);
    status.textContent = `${new Date(view.from).toLocaleString()} – ${new Date(view.to).toLocaleString()}${view.live ? " (live)" : ""}`;
  };
  const setView = (from, to, live = false) => {
    view.from = from; view.to = to; view.live = live;
    draw().catch((e) => { status.textContent = e.message; });
  };
  const span = () => view.to - view.from;
  const buttons = el("div", { class: "toolbar", role: "group", "aria-label": "Time range" },
    RANGES.map(([label, ms]) => el("button", { type: "button", onclick: () => setView(end - ms, end, true) }, label)),
    el("button", { type: "button", onclick: () => setView(view.from - span() / 2, view.to - span() / 2) }, "◀ Earlier"),
    el("button", { type: "button", onclick: () => setView(view.from + span() / 2, view.to + span() / 2) }, "Later ▶"),
    el("button", { type: "button", onclick: () => setView(view.from - span() / 2, view.to + span() / 2) }, "Zoom out"));
  panels.addEventListener("keydown", (ev) => {
    const k = ev.key, d = span() / 4;
    if (k === "ArrowLeft") setView(view.from - d, view.to - d);
    else if (k === "ArrowRight") setView(view.from + d, view.to + d);
    else if (k === "+" || k === "=") setView(view.from + d, view.to - d);
    else if (k === "-") setView(view.from - span() / 2, view.to + span() / 2);
    else return;
    ev.preventDefault();
  });
  // Drag across any panel: every panel zooms to the selected range.
  for (const cv of canvases) {
    let startX = null;
    cv.addEventListener("pointerdown", (ev) => { startX = ev.offsetX; cv.setPointerCapture(ev.pointerId); });
    cv.addEventListener("pointerup", (ev) => {
      if (startX === null) return;
      const [a, b] = [startX, ev.offsetX].sort((p, q) => p - q);
      startX = null;
      if (b - a < 5) return;
      const t = (px) => view.from + (px / cv.clientWidth) * span();
      setView(t(a), t(b));
    });
  }
  show(
    el("h1", {}, `Patient ${data.patient}`),
    el("p", { class: "links" }, el("a", { href: `#/glucose/${enc}` }, "Glucose"), " · ",
      el("a", { href: `#/daily/${enc}` }, "Daily metrics"), " · ",
      el("a", { href: `#/kiosk/${enc}` }, "Kiosk view")),
    buttons, status, panels,
    el("h2", {}, "Latest"),
    el("table", { id: "latest" },
      el("thead", {}, el("tr", {}, ["Metric", "Value", "Time"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, data.metrics.map((m) => el("tr", {},
        el("td", {}, m.metric), el("td", { class: "num" }, `${m.value} ${m.unit}`), el("td", {}, ago(m.time, newest)))))));
  if (metrics.length) await draw();
  // Live: server-sent events announce new durable data; while the view ends at the
  // newest data, it follows.
  liveSource = new EventSource(`/api/v1/patients/${enc}/live`);
  liveSource.addEventListener("latest", (ev) => {
    const to = Number(ev.data) + 1000;
    if (view.live && to > view.to) setView(to - span(), to, true);
  });
}

/** A canvas with a y-scale over `lo..hi` mg/dL and an x-scale over `x0..x1`, target band drawn. */
function glucoseCanvas(label, x0, x1, lo = 40, hi = 300) {
  const canvas = el("canvas", { class: "panel tall", role: "img", "aria-label": label });
  const setup = () => {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    const x = (t) => ((t - x0) / (x1 - x0)) * w;
    const y = (v) => h - ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * h;
    ctx.fillStyle = "rgba(46, 125, 50, 0.15)";
    ctx.fillRect(0, y(180), w, y(70) - y(180));
    ctx.fillStyle = getComputedStyle(document.body).color;
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText("180", 2, y(180) - 2);
    ctx.fillText("70", 2, y(70) + 12);
    return { ctx, x, y };
  };
  return { canvas, setup };
}

function line(ctx, xs, ys, x, y, color, width = 1.5) {
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.beginPath();
  xs.forEach((t, i) => (i ? ctx.lineTo(x(t), y(ys[i])) : ctx.moveTo(x(t), y(ys[i]))));
  ctx.stroke();
}

function band(ctx, xs, top, bottom, x, y, color) {
  ctx.fillStyle = color;
  ctx.beginPath();
  xs.forEach((t, i) => (i ? ctx.lineTo(x(t), y(top[i])) : ctx.moveTo(x(t), y(top[i]))));
  for (let i = xs.length - 1; i >= 0; i--) ctx.lineTo(x(xs[i]), y(bottom[i]));
  ctx.closePath();
  ctx.fill();
}

const pct = (v) => (v === undefined || v === null ? "–" : `${v.toFixed(1)} %`);

async function glucosePage(ids, days = 14) {
  const primary = ids[0];
  const enc = encodeURIComponent(primary);
  const latest = await api("GET", `/api/v1/patients/${enc}/latest`);
  const newest = latest.metrics.reduce((t, m) => (m.time > t ? m.time : t), "");
  const to = Date.parse(newest || new Date().toISOString()) + 1000;
  const from = to - days * 864e5;
  const offset = -new Date().getTimezoneOffset();
  const stats = await Promise.all(ids.map((id) =>
    api("GET", `/api/v1/patients/${encodeURIComponent(id)}/glucose?from=${from}&to=${to}&tz_offset_min=${offset}`)));
  const g = stats[0];
  const chart = await api("GET", `/api/v1/patients/${enc}/chart?metrics=blood_glucose&from=${from}&to=${to}&width=1000`);
  const readings = glucoseCanvas("Glucose readings with the 70-180 target band and the 2-day moving average", from, to);
  const profile = glucoseCanvas("Daily glucose profile: median, 25-75 and 5-95 percentiles", 0, 1440);
  const rows = [
    ["Readings", (s) => String(s.readings)],
    ["Mean glucose", (s) => `${s.mean.toFixed(0)} mg/dL`],
    ["GMI", (s) => pct(s.gmi_percent)],
    ["CV", (s) => pct(s.cv_percent)],
    ["Time in range 70–180", (s) => pct(s.in_range_percent)],
    ["Below 70", (s) => pct(s.low_percent + s.very_low_percent)],
    ["Below 54", (s) => pct(s.very_low_percent)],
    ["Above 180", (s) => pct(s.high_percent + s.very_high_percent)],
    ["Above 250", (s) => pct(s.very_high_percent)],
  ];
  const overview = await api("GET", "/api/v1/overview");
  const others = overview.patients.map((p) => p.patient).filter((p) => p !== primary);
  const compare = el("fieldset", { class: "compare" }, el("legend", {}, "Compare with"),
    others.map((p) => {
      const box = el("input", { type: "checkbox", id: `cmp-${p}`, checked: ids.includes(p) || null,
        onchange: () => {
          const next = [primary, ...others.filter((o) => document.getElementById(`cmp-${o}`).checked)];
          location.hash = `#/glucose/${next.map(encodeURIComponent).join(",")}`;
        } });
      return el("label", { for: `cmp-${p}` }, box, ` ${p} `);
    }));
  show(
    el("h1", {}, `Glucose: ${primary}`),
    el("div", { class: "toolbar", role: "group", "aria-label": "Period" },
      [7, 14, 30, 90].map((d) => el("button", { type: "button", "aria-pressed": d === days ? "true" : "false",
        onclick: () => glucosePage(ids, d) }, `${d} days`))),
    el("table", { id: "glucose-stats" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Last " + days + " days"), ids.map((id) => el("th", { scope: "col" }, id)))),
      el("tbody", {}, rows.map(([label, f]) => el("tr", {}, el("th", { scope: "row" }, label),
        stats.map((s) => el("td", { class: "num" }, s.summary ? f(s.summary) : "no readings")))))),
    others.length ? compare : null,
    el("h2", {}, "Readings and 2-day moving average"), readings.canvas,
    el("h2", {}, "Daily profile"), profile.canvas);
  const accent = getComputedStyle(document.body).getPropertyValue("--accent").trim() || "#0b57d0";
  const s = chart.series[0];
  {
    const { ctx, x, y } = readings.setup();
    ctx.fillStyle = accent;
    s.t.forEach((t, i) => ctx.fillRect(x(t) - 1, y(s.mean[i]) - 1, 2, 2));
    line(ctx, g.moving_average.t, g.moving_average.mean, x, y, "#e65100", 2.5);
    readings.canvas.dataset.points = String(s.t.length);
    readings.canvas.dataset.average = String(g.moving_average.t.length);
  }
  {
    const { ctx, x, y } = profile.setup();
    const m = g.agp.map((a) => a.minute + 15);
    band(ctx, m, g.agp.map((a) => a.p95), g.agp.map((a) => a.p5), x, y, accent + "22");
    band(ctx, m, g.agp.map((a) => a.p75), g.agp.map((a) => a.p25), x, y, accent + "55");
    line(ctx, m, g.agp.map((a) => a.p50), x, y, accent, 2.5);
    profile.canvas.dataset.slots = String(g.agp.length);
  }
}

const DAILY = ["step_count", "active_energy", "resting_energy", "walking_running_distance", "flights_climbed", "resting_heart_rate",
  "walking_speed", "walking_step_length", "walking_asymmetry", "walking_double_support"];

/** Bars of `values` at `times` over [x0, x1) with buckets `every` wide, and a trend line. */
function bars(label, times, values, x0, x1, every, trendValues) {
  const canvas = el("canvas", { class: "panel", role: "img", "aria-label": label });
  requestAnimationFrame(() => {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    const hi = Math.max(1, ...values) * 1.1;
    const x = (t) => ((t - x0) / (x1 - x0)) * w;
    const y = (v) => h - (v / hi) * (h - 14);
    const accent = getComputedStyle(document.body).getPropertyValue("--accent").trim() || "#0b57d0";
    ctx.fillStyle = accent;
    const bw = Math.max(1, (every / (x1 - x0)) * w - 2);
    times.forEach((t, i) => ctx.fillRect(x(t) + 1, y(values[i]), bw, h - y(values[i])));
    if (trendValues) line(ctx, times.map((t) => t + every / 2), trendValues, x, y, "#e65100", 2);
  });
  canvas.dataset.bars = String(times.length);
  return canvas;
}

async function daily(id, hourly = false) {
  const enc = encodeURIComponent(id);
  const [latest, catalog] = await Promise.all([
    api("GET", `/api/v1/patients/${enc}/latest`), api("GET", "/api/v1/metrics")]);
  const agg = Object.fromEntries(catalog.metrics.map((m) => [m.code, m.aggregation]));
  const newest = latest.metrics.reduce((t, m) => (m.time > t ? m.time : t), "");
  const end = Date.parse(newest || new Date().toISOString());
  const every = hourly ? 3600e3 : 864e5;
  const to = Math.floor(end / every) * every + every;
  const from = to - (hourly ? 48 : 30) * every;
  const have = new Set(latest.metrics.map((m) => m.metric));
  const metrics = DAILY.filter((m) => have.has(m));
  const sections = await Promise.all(metrics.map(async (m) => {
    const a = agg[m] === "sum" ? "sum" : "mean";
    const s = await api("GET", `/api/v1/patients/${enc}/series/${m}?from=${from}&to=${to}&every=${hourly ? "1h" : "1d"}&agg=${a}&time_format=ms`);
    const times = s.points.map((p) => p.time), values = s.points.map((p) => p[a]);
    // The trailing 7-bucket mean as the trend.
    const trendValues = values.map((_, i) => {
      const w = values.slice(Math.max(0, i - 6), i + 1);
      return w.reduce((x, y) => x + y, 0) / w.length;
    });
    const last = values.length ? values[values.length - 1] : null;
    const mean = values.length ? values.reduce((x, y) => x + y, 0) / values.length : null;
    const fmt = (v) => (v === null ? "–" : `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${s.unit}`);
    return el("section", { class: "daily", "data-metric": m },
      el("h2", {}, m.replaceAll("_", " ")),
      el("p", { class: "muted" }, `latest ${hourly ? "hour" : "day"}: `, el("strong", { class: "last" }, fmt(last)),
        ` · ${hourly ? "48-hour" : "30-day"} mean ${fmt(mean)} (${a} per ${hourly ? "hour" : "day"})`),
      bars(`${m} per ${hourly ? "hour" : "day"}`, times, values, from, to, every, hourly ? null : trendValues));
  }));
  show(
    el("h1", {}, `Daily metrics: ${id}`),
    el("div", { class: "toolbar", role: "group", "aria-label": "Resolution" },
      el("button", { type: "button", "aria-pressed": hourly ? "false" : "true", onclick: () => daily(id, false) }, "Days (30)"),
      el("button", { type: "button", "aria-pressed": hourly ? "true" : "false", onclick: () => daily(id, true) }, "Hours (48)")),
    ...(metrics.length ? sections : [el("p", {}, "No activity metrics for this patient yet.")]));
}

function table(id, headers, rows) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

const bytes = (n) => (n > 1e9 ? `${(n / 1e9).toFixed(1)} GB` : n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`);

async function admin() {
  const [sys, users, teams, tokens, dead, devices, drops] = await Promise.all([
    api("GET", "/api/v1/system"), api("GET", "/api/v1/users"), api("GET", "/api/v1/teams"),
    api("GET", "/api/v1/tokens"), api("GET", "/api/v1/dead-letters?limit=20"), api("GET", "/api/v1/devices"),
    api("GET", "/api/v1/file-drop?limit=20")]);
  const started = performance.now();
  const status = el("p", { role: "status", id: "admin-status", class: "muted" });
  const revoke = async (t) => {
    try {
      await api("DELETE", `/api/v1/tokens/${encodeURIComponent(t.id)}`);
      await admin();
      document.getElementById("admin-status").textContent = `Revoked token ${t.name}`;
    } catch (e) { status.textContent = e.message; }
  };
  const rate = el("span", { id: "ingest-rate" }, "measuring…");
  show(
    el("h1", {}, "Administration"), status,
    el("h2", {}, "System"),
    table("system", ["Status", "Ingest rate", "Samples written", "Stored", "Buffered", "WAL", "Dead letters", "Patients"], [[
      sys.status, rate, String(sys.samples_written),
      `${bytes(sys.segment_bytes)} in ${sys.segments} segments (${sys.segment_rows} rows)`,
      String(sys.buffered_samples), bytes(sys.wal_bytes),
      `${sys.dead_letters}${sys.dead_letters_dropped ? ` (${sys.dead_letters_dropped} dropped)` : ""}`, String(sys.patients)]]),
    el("h2", {}, "Users"),
    table("users", ["Name", "Role", "State"], users.users.map((u) => [u.name, u.role,
      u.disabled ? "disabled" : u.locked ? `locked until ${fmtTime(u.locked_until)}` : "active"])),
    el("h2", {}, "Care teams"),
    table("teams", ["Team", "Members", "Patients"], teams.teams.map((t) => [t.name, t.members.join(", "), t.patients.join(", ")])),
    el("h2", {}, "Tokens"),
    table("tokens", ["Name", "Role", "Bound to", "State", ""], tokens.tokens.map((t) => [t.name, t.role, t.patient || t.device || "",
      t.revoked ? "revoked" : t.live ? "live" : "expired",
      t.live ? el("button", { type: "button", onclick: () => revoke(t), "aria-label": `Revoke token ${t.name}` }, "Revoke") : ""])),
    el("h2", {}, "Devices (client certificates)"),
    table("devices", ["Name", "Device", "Patient", "State", ""], devices.devices.map((d) => [d.name, d.device, d.patient || "any",
      d.revoked ? "revoked" : "live",
      d.revoked ? "" : el("button", { type: "button", "aria-label": `Revoke device ${d.name}`, onclick: async () => {
        try {
          await api("DELETE", `/api/v1/devices/${encodeURIComponent(d.id)}`);
          await admin();
          document.getElementById("admin-status").textContent = `Revoked device ${d.name}`;
        } catch (e) { status.textContent = e.message; }
      } }, "Revoke")])),
    el("h2", {}, "Dropped files"),
    drops.enabled
      ? table("file-drop", ["File", "Time", "Status", "Accepted", "Refused"], drops.entries.map((e) =>
        [e.name, fmtTime(e.time), e.error ? `${e.status}: ${e.error}` : e.status, String(e.accepted), String(e.rejected)]))
      : el("p", { class: "muted" }, "The file-drop watcher is off ([file_drop] enabled = false)."),
    el("h2", {}, "Dead letters (refused input)"),
    table("dead-letters", ["Id", "Time", "Source", "Reason"], dead.dead_letters.map((d) => [String(d.id), fmtTime(new Date(d.time_ms).toISOString()), d.source, d.reason])));
  // The rate from two readings of the write counter.
  setTimeout(async () => {
    try {
      const again = await api("GET", "/api/v1/system");
      const secs = (performance.now() - started) / 1000;
      rate.textContent = `${Math.round((again.samples_written - sys.samples_written) / secs)} samples/s`;
    } catch { rate.textContent = "–"; }
  }, 2000);
}

function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function alertValues(a) {
  return Object.entries(a.values || {}).map(([m, v]) => `${m} ${v.value} ${v.unit}`).join(", ");
}

async function alerts(tab = "inbox") {
  const tabs = el("nav", { class: "tabs", "aria-label": "Alert views" },
    [["inbox", "Inbox"], ["history", "History"], ["rules", "Rules"]].map(([t, label]) =>
      el("a", { href: `#/alerts/${t}`, "aria-current": t === tab ? "page" : null }, label)));
  if (tab === "rules") {
    const data = await api("GET", "/api/v1/rules");
    return show(el("h1", {}, "Rules"), tabs, el("ul", { id: "rules", class: "cards" }, data.rules.map((r) =>
      el("li", {}, el("strong", {}, r.name), " ", el("span", { class: `sev sev-${r.severity}` }, r.severity || ""),
        el("p", {}, r.description || "Fires when: " + r.expr), el("code", {}, r.expr)))));
  }
  const path = tab === "history" ? "/api/v1/alerts" : "/api/v1/alerts?state=open";
  const data = await api("GET", path);
  const list = data.alerts.slice(0, 200);
  const status = el("p", { class: "muted", id: "alerts-status", role: "status" },
    tab === "inbox" ? `${list.length} open alerts` : `${list.length} alerts`);
  const act = async (a, what) => {
    try {
      if (what === "ack") await api("POST", `/api/v1/alerts/${encodeURIComponent(a.id)}/ack`);
      else await api("POST", `/api/v1/alerts/${encodeURIComponent(a.id)}/snooze`, { for: "30m" });
      await alerts(tab);
      document.getElementById("alerts-status").textContent =
        what === "ack" ? `Acknowledged ${a.rule} for ${a.patient}` : `Snoozed ${a.rule} for ${a.patient} for 30 min`;
    } catch (e) {
      status.textContent = e.message;
    }
  };
  const rows = list.map((a) => el("tr", { "data-alert": a.id, class: `row-${a.severity}` },
    el("td", {}, el("span", { class: `sev sev-${a.severity}` }, a.severity)),
    el("td", {}, el("a", { href: `#/patient/${encodeURIComponent(a.patient)}` }, a.patient)),
    el("td", {}, a.description || a.rule, el("br"), el("span", { class: "muted" }, alertValues(a))),
    el("td", {}, fmtTime(a.fired)),
    el("td", {}, tab === "inbox"
      ? [el("button", { class: "primary", type: "button", onclick: () => act(a, "ack"), "aria-label": `Acknowledge ${a.rule} for ${a.patient}` }, "Acknowledge"),
         " ",
         el("button", { type: "button", onclick: () => act(a, "snooze"), "aria-label": `Snooze ${a.rule} for ${a.patient}` }, "Snooze 30 min")]
      : [a.state, a.acknowledged_by ? ` by ${a.acknowledged_by}` : ""])));
  show(el("h1", {}, "Alerts"), tabs, status,
    el("table", { id: "alerts" },
      el("thead", {}, el("tr", {}, ["Severity", "Patient", "Alert", "Fired", tab === "inbox" ? "Act" : "State"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
}

let kioskTimer = null;

/** A simple trend line on a canvas (no axes: the kiosk shows the shape, the tiles the numbers). */
function trend(points, label) {
  const canvas = el("canvas", { width: 760, height: 120, role: "img", "aria-label": label });
  const ctx = canvas.getContext("2d");
  const ys = points.map((p) => p.mean).filter((v) => Number.isFinite(v));
  if (ctx && ys.length > 1) {
    const [lo, hi] = [Math.min(...ys), Math.max(...ys)];
    const t0 = points[0].time, t1 = points[points.length - 1].time;
    ctx.strokeStyle = getComputedStyle(document.body).color;
    ctx.lineWidth = 4;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = ((p.time - t0) / Math.max(1, t1 - t0)) * 740 + 10;
      const y = 110 - ((p.mean - lo) / Math.max(1e-9, hi - lo)) * 100;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  canvas.dataset.points = String(points.length);
  return canvas;
}

async function kiosk(id) {
  document.body.classList.add("kiosk");
  const render = async () => {
    const enc = encodeURIComponent(id);
    const [latest, al] = await Promise.all([
      api("GET", `/api/v1/patients/${enc}/latest`),
      api("GET", `/api/v1/alerts?patient=${enc}`),
    ]);
    const newest = latest.metrics.reduce((t, m) => (m.time > t ? m.time : t), "");
    const from = new Date(Date.parse(newest || new Date().toISOString()) - 6 * 3600 * 1000).toISOString();
    const by = Object.fromEntries(latest.metrics.map((m) => [m.metric, m]));
    const trendMetric = by.blood_glucose ? "blood_glucose" : "heart_rate";
    let series = { points: [] };
    if (by[trendMetric]) {
      series = await api("GET", `/api/v1/patients/${enc}/series/${trendMetric}?from=${encodeURIComponent(from)}&every=10m&agg=mean&time_format=ms`);
    }
    const active = al.alerts.filter((a) => a.state === "open" || a.state === "acknowledged");
    const tile = (code, label, digits = 0) => el("div", { class: "tile" },
      el("span", { class: "label" }, label),
      el("span", { class: "big", id: `kiosk-${code}` }, by[code] ? Number(by[code].value).toFixed(digits) : "–"),
      el("span", { class: "unit" }, by[code] ? by[code].unit : ""));
    show(
      active.length
        ? el("div", { class: "banner", role: "alert", id: "kiosk-banner" }, `Alert: ${active[0].description || active[0].rule}`)
        : el("div", { class: "banner ok", id: "kiosk-banner" }, "All well"),
      el("div", { class: "tiles" }, tile("heart_rate", "Heart rate"), tile("blood_glucose", "Glucose"), tile("spo2", "SpO₂")),
      trend(series.points, `${trendMetric} over the last 6 hours`),
      el("p", { class: "muted" }, `Updated ${new Date().toLocaleTimeString()}`));
  };
  await render();
  kioskTimer = setInterval(() => render().catch(() => {}), 30000);
}

async function route() {
  const [, view, arg] = location.hash.split("/");
  if (kioskTimer) { clearInterval(kioskTimer); kioskTimer = null; }
  if (liveSource) { liveSource.close(); liveSource = null; }
  document.body.classList.remove("kiosk");
  try {
    if (view === "patient" && arg) await patient(decodeURIComponent(arg));
    else if (view === "alerts") await alerts(arg || "inbox");
    else if (view === "kiosk" && arg) await kiosk(decodeURIComponent(arg));
    else if (view === "admin") await admin();
    else if (view === "daily" && arg) await daily(decodeURIComponent(arg));
    else if (view === "glucose" && arg) await glucosePage(arg.split(",").map(decodeURIComponent));
    else await patients();
  } catch (e) {
    if (e.status === 401) signIn("Your session ended; sign in again.");
    else show(el("p", { class: "error", role: "alert" }, e.message));
  }
}

async function start() {
  try {
    me = await api("GET", "/api/v1/me");
  } catch (e) {
    if (e.status === 401) return signIn();
    return show(el("p", { class: "error", role: "alert" }, e.message));
  }
  who.textContent = `${me.name} (${me.role})`;
  document.getElementById("admin-link").hidden = me.role !== "admin";
  nav.hidden = false;
  await route();
}

document.getElementById("signout").addEventListener("click", async () => {
  if (liveSource) { liveSource.close(); liveSource = null; }
  try { await api("DELETE", "/api/v1/session"); } catch { /* signed out either way */ }
  me = null;
  location.hash = "";
  signIn();
});
window.addEventListener("hashchange", () => { if (me) route(); });
start();
