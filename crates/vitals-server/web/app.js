// The Vitals dashboard: a small app over the authenticated API, with the session cookie.
// No inline code (the Content-Security-Policy forbids it), no third-party requests, and
// no patient data in URLs beyond pseudonyms.

import { campaignViews } from "./campaigns.js";
import { COMPARE_COLORS, barChart, baselineChart, profileChart, rangeBar, readingsChart, sparkline, timePanel, touchGestures, withGaps } from "./charts.js";

const app = document.getElementById("app");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let me = null;
let charts = [];
let pageTimer = null;

/** Runs `fn` every `ms` while this view is shown (the next view stops it); a session that
 *  ended sends the user to the sign-in form. */
function every(ms, fn) {
  if (pageTimer) clearInterval(pageTimer);
  pageTimer = setInterval(() => fn().catch((e) => {
    if (e.status === 401) {
      clearInterval(pageTimer);
      pageTimer = null;
      signIn("Your session ended; sign in again.");
    }
  }), ms);
}

/** A request to the API; changes carry the session's CSRF token. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && me && me.csrf) headers["X-CSRF-Token"] = me.csrf;
  let r;
  try {
    r = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new Error("the server cannot be reached");
  }
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

/** A table that scrolls sideways on its own when it is wider than the screen (a phone),
 *  instead of widening the page; focusable so that the keyboard can scroll it too. */
function scroller(id, tableEl) {
  return el("div", { class: "scroll", "data-label": `${id.replaceAll("-", " ")} table` }, tableEl);
}

/** Scrolling tables become a focusable region (a keyboard can scroll them); others stay
 *  out of the tab order. */
function markScrollers() {
  for (const d of app.querySelectorAll(".scroll")) {
    if (d.scrollWidth > d.clientWidth + 1) {
      d.tabIndex = 0;
      d.setAttribute("role", "region");
      d.setAttribute("aria-label", d.dataset.label);
    } else {
      d.removeAttribute("tabindex");
      d.removeAttribute("role");
      d.removeAttribute("aria-label");
    }
  }
}
window.addEventListener("resize", markScrollers);

/** Replaces the page's content (nulls left out, arrays spread); the charts of the page
 *  before stop following the window. */
function show(...nodes) {
  for (const c of charts) c.dispose();
  charts = [];
  app.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
  requestAnimationFrame(markScrollers);
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
  if (pageTimer) { clearInterval(pageTimer); pageTimer = null; }
  nav.hidden = true;
  const error = el("p", { class: "error", role: "alert", id: "signin-error" }, message || "");
  const name = el("input", { id: "name", name: "name", autocomplete: "username", required: true });
  const password = el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const keep = el("input", { id: "keep", name: "keep", type: "checkbox" });
  const form = el("form", { class: "signin", "aria-labelledby": "signin-title" },
    el("h1", { id: "signin-title" }, "Sign in"),
    el("label", { for: "name" }, "User name", name),
    el("label", { for: "password" }, "Password", password),
    el("label", { for: "keep", class: "check" }, keep, " Keep this screen signed in (a kiosk or mirror)"),
    error,
    el("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      await api("POST", "/api/v1/login", { name: name.value, password: password.value, keep: keep.checked });
      await start();
    } catch (e) {
      error.textContent = e.message;
    }
  });
  show(form);
  name.focus();
}

/** Who needs attention first: open alerts (most first), then by pseudonym. */
const byAttention = (a, b) => b.open_alerts - a.open_alerts || a.patient.localeCompare(b.patient);

async function patients() {
  let data = await api("GET", "/api/v1/overview");
  const search = el("input", { type: "search", id: "search", placeholder: "Filter by pseudonym", "aria-label": "Filter patients" });
  const staleOnly = el("input", { type: "checkbox", id: "stale-only" });
  const alertsOnly = el("input", { type: "checkbox", id: "alerts-only" });
  data.patients.sort(byAttention);
  const body = el("tbody");
  const count = el("span", { class: "muted", id: "patient-count" });
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const rows = data.patients
      .filter((p) => !q || p.patient.toLowerCase().includes(q))
      .filter((p) => !staleOnly.checked || p.stale)
      .filter((p) => !alertsOnly.checked || p.open_alerts > 0)
      .map((p) => el("tr", { class: p.stale ? "stale" : "", "data-patient": p.patient },
        el("td", {}, el("a", { href: `#/patient/${encodeURIComponent(p.patient)}` }, p.patient)),
        el("td", { class: "num" }, value(p.latest, "heart_rate")),
        el("td", { class: "opt" }, p.spark
          ? sparkline(p.spark, `${p.spark.metric.replaceAll("_", " ")} over the last 24 hours, hourly means`)
          : "–"),
        el("td", { class: "num" }, value(p.latest, "blood_glucose")),
        el("td", { class: "num opt" }, value(p.latest, "spo2")),
        el("td", { class: "num opt" }, p.battery === null ? "–" : `${Math.round(p.battery)} %`),
        el("td", {}, p.open_alerts ? el("span", { class: "badge", "aria-label": `${p.open_alerts} open alerts` }, p.open_alerts) : "0"),
        el("td", {}, ago(p.last_seen, data.now), p.stale ? el("span", { class: "muted" }, " (stale)") : null)));
    body.replaceChildren(...rows);
    count.textContent = `${data.patients.length} patients`;
  };
  // Kept current: every 30 s, filters and search as they are.
  every(30000, async () => {
    const next = await api("GET", "/api/v1/overview");
    next.patients.sort(byAttention);
    data = next;
    render();
  });
  search.addEventListener("input", render);
  staleOnly.addEventListener("change", render);
  alertsOnly.addEventListener("change", render);
  render();
  show(
    el("h1", {}, "Patients"),
    el("div", { class: "toolbar" }, search, el("label", { for: "stale-only" }, staleOnly, " Stale only"),
      el("label", { for: "alerts-only" }, alertsOnly, " With open alerts"),
      count),
    scroller("patients", el("table", { id: "patients" },
      el("thead", {}, el("tr", {},
        ["Patient", "Heart rate"].map((h) => el("th", { scope: "col" }, h)),
        el("th", { scope: "col", class: "opt" }, "Last 24 h"),
        el("th", { scope: "col" }, "Glucose"),
        ["SpO₂", "Battery"].map((h) => el("th", { scope: "col", class: "opt" }, h)),
        ["Open alerts", "Last seen"].map((h) => el("th", { scope: "col" }, h)))),
      body)));
}

/** The patient page's panels: the metrics each one draws on the shared time axis. */
const PANELS = [
  { id: "heart_rate", label: "Heart rate", metrics: ["heart_rate"] },
  { id: "rr_interval", label: "RR intervals (tachogram)", metrics: ["rr_interval"], points: true },
  { id: "skin_temperature", label: "Skin temperature", metrics: ["skin_temperature"] },
  { id: "eda", label: "Electrodermal activity", metrics: ["eda"] },
  { id: "motion", label: "Motion (acceleration)", metrics: ["acceleration_x", "acceleration_y", "acceleration_z"], names: ["x", "y", "z"] },
  { id: "spo2", label: "SpO₂", metrics: ["spo2"] },
  { id: "blood_glucose", label: "Glucose", metrics: ["blood_glucose"], target: [70, 180] },
  { id: "respiratory_rate", label: "Respiratory rate", metrics: ["respiratory_rate"] },
];
/** Panels drawn over the person's usual band for the hour (`GET .../profile`). */
const PROFILED = new Set(["heart_rate", "skin_temperature", "respiratory_rate", "spo2"]);
const RANGES = [["1 h", 3600e3], ["6 h", 6 * 3600e3], ["24 h", 864e5], ["7 d", 7 * 864e5], ["30 d", 30 * 864e5], ["1 y", 365 * 864e5]];
let liveSource = null;

/** Where a line breaks: a step much longer than the series' usual spacing (and than 3 buckets). */
function gapFor(t, every) {
  const d = [];
  for (let i = 1; i < t.length; i++) d.push(t[i] - t[i - 1]);
  d.sort((a, b) => a - b);
  const usual = d.length ? d[Math.floor(d.length / 2)] : every;
  return Math.max(3 * every, 5 * usual);
}

/** What a panel shows, in words (the chart's accessible name). */
function describe(label, series, view) {
  const vals = series.flatMap((s) => s.mean);
  const range = `${new Date(view.from).toLocaleString()} to ${new Date(view.to).toLocaleString()}`;
  if (!vals.length) return `${label}: no data from ${range}`;
  const unit = series[0].unit;
  const last = series[0].mean[series[0].mean.length - 1];
  return `${label} from ${range}: lowest ${Math.min(...series.flatMap((s) => s.min)).toFixed(1)}, ` +
    `highest ${Math.max(...series.flatMap((s) => s.max)).toFixed(1)}, last ${last.toFixed(1)} ${unit}`;
}

/** The patient's devices: when the server last heard from each, battery, signal. */
function deviceTable(devs) {
  if (!devs || !devs.devices.length) {
    return el("p", { class: "muted", id: "no-devices" }, "No reading names its device yet.");
  }
  const reading = (r, unit) => (r ? `${r.value} ${unit}` : "–");
  return scroller("devices", el("table", { id: "devices" },
    el("thead", {}, el("tr", {}, ["Device", "Last heard", "Battery", "Signal", "Firmware", "Readings", "Ways in", "Status"]
      .map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, devs.devices.map((d) => el("tr", { "data-device": d.device, class: d.stale ? "stale" : "" },
      el("td", {}, d.device), el("td", { title: d.last_heard }, ago(d.last_heard, devs.now)),
      el("td", { class: "num" }, reading(d.battery, "%")), el("td", { class: "num" }, reading(d.signal, "dBm")),
      el("td", { title: d.model || "" }, d.firmware || "–"),
      el("td", { class: "num" }, String(d.readings)), el("td", {}, d.sources.join(", ")),
      el("td", {}, d.stale ? `Quiet since ${ago(d.stale_since || d.last_heard, devs.now)}` : "Heard from"))))));
}

/** The patient's accounts at vendor clouds: their sync state, sync now, disconnect, and a
 *  form to connect one (the credentials go to the server, which seals them at once). */
function connectionPanel(enc, conns, reload) {
  if (!conns) return el("p", { class: "muted", id: "no-connections" }, "Connections cannot be shown.");
  const act = async (method, vendor, what) => {
    try {
      await api(method, `/api/v1/patients/${enc}/connections/${encodeURIComponent(vendor)}${what}`);
      await reload();
    } catch (e) {
      note.textContent = e.message;
    }
  };
  const note = el("p", { class: "muted", id: "connect-status", role: "status" });
  const now = new Date().toISOString();
  const table = conns.connections.length
    ? scroller("connections", el("table", { id: "connections" },
      el("thead", {}, el("tr", {}, ["Account", "Status", "Last success", "Newest reading", "Readings", "Last error", ""]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, conns.connections.map((c) => el("tr", { "data-vendor": c.vendor, class: c.status === "active" ? "" : "stale" },
        el("td", {}, c.region ? `${c.title} (${c.region})` : c.title),
        el("td", {}, c.status === "active" ? "Active" : "Needs attention"),
        el("td", { title: c.last_success || "" }, ago(c.last_success, now)),
        el("td", { title: c.newest_reading || "" }, ago(c.newest_reading, now)),
        el("td", { class: "num" }, String(c.readings)),
        el("td", {}, c.last_error || "–"),
        el("td", {},
          el("button", { type: "button", "aria-label": `Sync now ${c.title}`, onclick: () => act("POST", c.vendor, "/sync") }, "Sync now"), " ",
          el("button", { type: "button", "aria-label": `Disconnect ${c.title}`, onclick: () => act("DELETE", c.vendor, "") }, "Disconnect")))))))
    : el("p", { class: "muted", id: "no-connections" }, "No vendor account is connected.");
  const vendor = el("select", { id: "connect-vendor", name: "vendor" },
    conns.vendors.map((v) => el("option", { value: v.vendor }, v.title)));
  const user = el("input", { id: "connect-user", name: "username", autocomplete: "off", required: true });
  const pass = el("input", { id: "connect-password", name: "password", type: "password", autocomplete: "off", required: true });
  const region = el("input", { id: "connect-region", name: "region", autocomplete: "off", placeholder: "default" });
  // Vendors with their own sign-in (OAuth) take no password here: the user signs in there.
  const asked = el("span", {},
    el("label", { for: "connect-user" }, "Username "), user, " ",
    el("label", { for: "connect-password" }, "Password "), pass, " ",
    el("label", { for: "connect-region" }, "Region "), region, " ");
  const oauth = () => conns.vendors.find((v) => v.vendor === vendor.value)?.oauth;
  const toggle = () => {
    asked.hidden = !!oauth();
    user.required = pass.required = !oauth();
  };
  vendor.addEventListener("change", toggle);
  toggle();
  const form = el("form", { id: "connect-form", class: "toolbar range", "aria-label": "Connect a vendor account" },
    el("label", { for: "connect-vendor" }, "Vendor "), vendor, " ", asked,
    el("button", { type: "submit" }, "Connect"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      if (oauth()) {
        // To the vendor's sign-in; it sends the user back to this page with a code.
        const a = await api("POST", `/api/v1/patients/${enc}/connections/${encodeURIComponent(vendor.value)}/authorize`);
        location.assign(a.authorize_url);
        return;
      }
      await api("PUT", `/api/v1/patients/${enc}/connections/${encodeURIComponent(vendor.value)}`,
        { username: user.value, password: pass.value, region: region.value });
      pass.value = "";
      await reload();
    } catch (err) {
      note.textContent = err.message;
    }
  });
  // Analysts see the state; connecting is for the patient's own people.
  return el("div", { id: "connections-panel" }, table, me.role === "analyst" ? null : form, note);
}

async function patient(id) {
  const enc = encodeURIComponent(id);
  const connectionsOf = () => api("GET", `/api/v1/patients/${enc}/connections`).catch(() => null);
  const [data, devs, conns] = await Promise.all([
    api("GET", `/api/v1/patients/${enc}/latest`),
    api("GET", `/api/v1/patients/${enc}/devices`).catch(() => null),
    connectionsOf(),
  ]);
  const connBox = el("div", {});
  const showConnections = (c) => connBox.replaceChildren(connectionPanel(enc, c, async () => showConnections(await connectionsOf())));
  showConnections(conns);
  const newest = data.metrics.reduce((t, m) => (m.time > t ? m.time : t), "");
  const have = new Set(data.metrics.map((m) => m.metric));
  const end = Date.parse(newest || new Date().toISOString()) + 1000;
  const view = { from: end - 6 * 3600e3, to: end, live: true };
  let overlay = { events: [], alerts: [] };
  const box = el("div", { id: "charts", class: "charts", tabindex: "0", role: "group",
    "aria-label": "Charts on one time axis; arrow keys pan, plus and minus zoom; drag with the mouse to zoom into a range; on a touchscreen drag to pan and pinch to zoom" });
  const status = el("p", { class: "muted", id: "chart-range", role: "status" });
  const episodes = el("ul", { id: "chart-episodes", class: "episodes", "aria-label": "Events and alert episodes in view; choose one to zoom to it" });
  const figures = PANELS.map((pn) => ({ pn, metrics: pn.metrics.filter((m) => have.has(m)) }))
    .filter((f) => f.metrics.length)
    .map((f) => {
      const readout = el("span", { class: "readout", "aria-hidden": "true" });
      const unit = el("span", { class: "unit" });
      const plotBox = el("div", { class: "plot", role: "img", "aria-label": f.pn.label });
      const fig = el("figure", { "data-metric": f.pn.id }, el("figcaption", {}, el("strong", {}, f.pn.label), " ", unit, " ", readout), plotBox);
      const spec = { unit: "", target: f.pn.target, lines: f.metrics.map((m) => ({
        label: f.pn.names ? f.pn.names[f.pn.metrics.indexOf(m)] : f.pn.label, points: f.pn.points })) };
      return { ...f, readout, unit, plotBox, fig, spec, chart: null };
    });
  box.append(...figures.map((f) => f.fig));
  // Each circadian panel's usual band for the hour, from the 28 days before today.
  const profiled = figures.filter((f) => PROFILED.has(f.pn.id));
  const usual = el("span", { id: "usual-legend", hidden: true }, el("span", { class: "key key-usual" }),
    " usual range for the hour (the 28 days before today; dashed: the usual middle)");
  if (profiled.length) {
    const q = `metrics=${profiled.map((f) => f.pn.id).join(",")}&tz_offset_min=${-new Date().getTimezoneOffset()}`;
    api("GET", `/api/v1/patients/${enc}/profile?${q}`).then((p) => {
      for (const pr of p.profiles) {
        const f = profiled.find((x) => x.pn.id === pr.metric);
        const known = pr.hours.filter((h) => h).length;
        f.fig.dataset.profileHours = String(known);
        if (!known) continue;
        f.spec.profile = pr.hours;
        usual.hidden = false;
        // Set again, so the scale makes room for the band.
        if (f.chart) f.chart.setData(f.chart.data);
      }
    }).catch(() => { /* the charts are complete without it */ });
  }
  let loading = 0;
  const draw = async () => {
    const ticket = ++loading;
    const width = Math.max(10, Math.min(4000, Math.round(box.clientWidth || 800)));
    const wanted = figures.flatMap((f) => f.metrics);
    const c = await api("GET", `/api/v1/patients/${enc}/chart?metrics=${wanted.join(",")}&from=${Math.round(view.from)}&to=${Math.round(view.to)}&width=${width}`);
    if (ticket !== loading) return; // a newer range was asked for meanwhile
    overlay = { events: c.events, alerts: c.alerts };
    const by = Object.fromEntries(c.series.map((s) => [s.metric, s]));
    for (const f of figures) {
      const ss = f.metrics.map((m) => by[m]);
      f.spec.unit = ss[0].unit;
      f.unit.textContent = `(${ss[0].unit})`;
      const tables = ss.map((s) => withGaps(s.t, [s.mean, s.min, s.max], gapFor(s.t, c.every_ms)));
      f.chart.setData(tables.length === 1 ? tables[0] : globalThis.uPlot.join(tables, tables.map(() => [1, 1, 1])));
      f.fig.dataset.points = String(ss[0].t.length);
      f.plotBox.setAttribute("aria-label", describe(f.pn.label, ss, view));
    }
    const when = (a, b) => `${new Date(a).toLocaleString()} – ${new Date(b).toLocaleTimeString()}`;
    const zoomTo = (a, b) => { const pad = Math.max(60e3, (b - a) / 2); setView(a - pad, b + pad); };
    // Newest first; the first few, the rest behind a button.
    const items = [
      ...c.events.map((e) => ({ start: e.start, end: e.end, cls: "ev", text: `${e.kind}${e.name ? `: ${e.name}` : ""}` })),
      ...c.alerts.map((a) => ({ start: a.start, end: a.end, cls: "al", text: `${a.severity} alert: ${a.description || a.rule}`, state: a.state })),
    ].sort((a, b) => b.start - a.start);
    const item = (x) => el("li", { class: x.cls }, el("button", { type: "button", onclick: () => zoomTo(x.start, x.end) },
      `${x.text}, ${when(x.start, x.end)}${x.state ? ` (${x.state})` : ""}`));
    const SHOWN = 8;
    const list = () => {
      if (episodes.dataset.all || items.length <= SHOWN) return episodes.replaceChildren(...items.map(item));
      const more = el("button", { type: "button", class: "more", onclick: () => { episodes.dataset.all = "1"; list(); } },
        `Show all ${items.length}`);
      episodes.replaceChildren(...items.slice(0, SHOWN).map(item), el("li", {}, more));
    };
    list();
    box.dataset.events = String(c.events.length);
    box.dataset.alerts = String(c.alerts.length);
    box.dataset.bucketMs = String(c.every_ms);
    fromInput.value = local(view.from);
    toInput.value = local(view.to);
    box.dataset.from = String(Math.round(view.from));
    box.dataset.to = String(Math.round(view.to));
    status.textContent = `${new Date(view.from).toLocaleString()} – ${new Date(view.to).toLocaleString()}${view.live ? " (live)" : ""}`;
  };
  const setView = (from, to, live = false) => {
    view.from = from; view.to = to; view.live = live;
    draw().catch((e) => { status.textContent = e.message; });
  };
  const span = () => view.to - view.from;
  // Any range: two local date-times (what <input type=datetime-local> holds).
  const local = (t) => {
    const d = new Date(t);
    const z = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${z(d.getMonth() + 1)}-${z(d.getDate())}T${z(d.getHours())}:${z(d.getMinutes())}`;
  };
  const fromInput = el("input", { type: "datetime-local", id: "range-from", required: true });
  const toInput = el("input", { type: "datetime-local", id: "range-to", required: true });
  const rangeError = el("span", { class: "error", id: "range-error", role: "alert" });
  const rangeForm = el("form", { class: "toolbar range", "aria-label": "Show a range" },
    el("label", { for: "range-from" }, "From ", fromInput), el("label", { for: "range-to" }, "to ", toInput),
    el("button", { type: "submit" }, "Show range"), rangeError);
  rangeForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const a = new Date(fromInput.value).getTime(), b = new Date(toInput.value).getTime();
    if (!(a < b)) { rangeError.textContent = "The start must be before the end."; return; }
    rangeError.textContent = "";
    setView(a, b);
  });
  const buttons = el("div", { class: "toolbar", role: "group", "aria-label": "Time range" },
    RANGES.map(([label, ms]) => el("button", { type: "button", onclick: () => setView(end - ms, end, true) }, label)),
    el("button", { type: "button", onclick: () => setView(view.from - span() / 2, view.to - span() / 2) }, "◀ Earlier"),
    el("button", { type: "button", onclick: () => setView(view.from + span() / 2, view.to + span() / 2) }, "Later ▶"),
    el("button", { type: "button", onclick: () => setView(view.from - span() / 2, view.to + span() / 2) }, "Zoom out"));
  box.addEventListener("keydown", (ev) => {
    const k = ev.key, d = span() / 4;
    if (k === "ArrowLeft") setView(view.from - d, view.to - d);
    else if (k === "ArrowRight") setView(view.from + d, view.to + d);
    else if (k === "+" || k === "=") setView(view.from + d, view.to - d);
    else if (k === "-") setView(view.from - span() / 2, view.to + span() / 2);
    else return;
    ev.preventDefault();
  });
  show(
    el("h1", {}, `Patient ${data.patient}`),
    data.seizure_watch ? el("p", { id: "seizure-watch", class: "muted", "data-watch": data.seizure_watch },
      data.seizure_watch === "combined"
        ? "Seizure watch: wrist motion and heart rate with electrodermal activity (both detectors)"
        : "Seizure watch: heart rate with electrodermal activity (the autonomic detector; no accelerometer)") : null,
    el("p", { class: "links" }, el("a", { href: `#/glucose/${enc}` }, "Glucose"), " · ",
      el("a", { href: `#/daily/${enc}` }, "Daily metrics"), " · ",
      el("a", { href: `#/baselines/${enc}` }, "Baselines"), " · ",
      el("a", { href: `#/diary/${enc}` }, "Seizure diary"), " · ",
      me.role === "analyst" ? null : [el("a", { href: `#/messages/${enc}`, id: "messages-link" }, "Messages"), " · "],
      el("a", { href: `#/kiosk/${enc}` }, "Kiosk view")),
    buttons, rangeForm, status, box,
    el("p", { class: "muted legend" }, el("span", { class: "key key-event" }), " labelled events (workouts, sleep, meals, seizures) ",
      el("span", { class: "key key-alert" }), " alert episodes ", usual),
    episodes,
    el("h2", {}, "Latest"),
    scroller("latest", el("table", { id: "latest" },
      el("thead", {}, el("tr", {}, ["Metric", "Value", "Time"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, data.metrics.map((m) => el("tr", {},
        el("td", {}, m.metric), el("td", { class: "num" }, `${m.value} ${m.unit}`), el("td", {}, ago(m.time, newest))))))),
    el("h2", {}, "Devices"),
    deviceTable(devs),
    el("h2", {}, "Vendor accounts"),
    connBox);
  // The charts are made once they are in the page (they take its width).
  for (const f of figures) {
    f.chart = timePanel(f.plotBox, f.spec, view, () => overlay, (a, b) => setView(a, b), (text) => { f.readout.textContent = text; });
  }
  charts.push(...figures.map((f) => f.chart));
  touchGestures(box, view, (a, b) => {
    view.from = a; view.to = b; view.live = false;
    for (const f of figures) f.chart.setScale("x", { min: a, max: b });
  }, (a, b) => setView(a, b));
  if (figures.length) await draw();
  // Live: server-sent events announce new durable data; while the view ends at the
  // newest data, it follows.
  liveSource = new EventSource(`/api/v1/patients/${enc}/live`);
  liveSource.addEventListener("latest", (ev) => {
    const to = Number(ev.data) + 1000;
    if (view.live && to > view.to) setView(to - span(), to, true);
  });
}

const pct = (v) => (v === undefined || v === null ? "–" : `${v.toFixed(1)} %`);

/** A chart's place in the page: a caption and the box the chart is drawn in. */
function figure(id, caption, label) {
  const box = el("div", { class: "plot", role: "img", "aria-label": label });
  return { fig: el("figure", { id }, el("figcaption", {}, caption), box), box };
}

async function glucosePage(ids, days = 14) {
  const primary = ids[0];
  const enc = encodeURIComponent(primary);
  const latest = await api("GET", `/api/v1/patients/${enc}/latest`);
  const newest = latest.metrics.reduce((t, m) => (m.time > t ? m.time : t), "");
  const to = Date.parse(newest || new Date().toISOString()) + 1000;
  const from = to - days * 864e5;
  // This browser's zone over the period: the offset at its start and where it changes
  // (daylight saving, found hour by hour), so that each reading falls at its local time.
  const offsetAt = (t) => -new Date(t).getTimezoneOffset();
  const changes = [];
  for (let t = from + 3600e3, last = offsetAt(from); t < to; t += 3600e3) {
    if (offsetAt(t) !== last) {
      last = offsetAt(t);
      changes.push(`${Math.floor(t / 3600e3) * 3600e3}:${last}`);
    }
  }
  const tz = `tz_offset_min=${offsetAt(from)}${changes.length ? `&tz_changes=${changes.join(",")}` : ""}`;
  const stats = await Promise.all(ids.map((id) =>
    api("GET", `/api/v1/patients/${encodeURIComponent(id)}/glucose?from=${from}&to=${to}&${tz}`)));
  const g = stats[0];
  const chart = await api("GET", `/api/v1/patients/${enc}/chart?metrics=blood_glucose&from=${from}&to=${to}&width=1000`);
  const s = chart.series[0];
  const rows = [
    ["Readings", (x) => String(x.readings)],
    ["Mean glucose", (x) => `${x.mean.toFixed(0)} mg/dL`],
    ["GMI", (x) => pct(x.gmi_percent)],
    ["CV", (x) => pct(x.cv_percent)],
    ["Time in range 70–180", (x) => pct(x.in_range_percent)],
    ["Below 70", (x) => pct(x.low_percent + x.very_low_percent)],
    ["Below 54", (x) => pct(x.very_low_percent)],
    ["Above 180", (x) => pct(x.high_percent + x.very_high_percent)],
    ["Above 250", (x) => pct(x.very_high_percent)],
  ];
  // Variability and risk (docs/glucose.md); a dash where the readings do not allow one.
  const num = (v, unit = "") => (v === null || v === undefined ? "–" : `${v.toFixed(1)}${unit}`);
  const variability = [
    ["SD", (v) => num(v.sd, " mg/dL")],
    ["MAGE", (v) => num(v.mage, " mg/dL")],
    ["MODD", (v) => num(v.modd, " mg/dL")],
    ["CONGA(1)", (v) => num(v.conga1, " mg/dL")],
    ["LBGI", (v) => num(v.lbgi)],
    ["HBGI", (v) => num(v.hbgi)],
    ["GRI", (v) => num(v.gri)],
    ["J-index", (v) => num(v.j_index)],
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
  const summary = g.summary
    ? `mean ${g.summary.mean.toFixed(0)} mg/dL, ${pct(g.summary.in_range_percent)} in range`
    : "no readings";
  const readings = figure("glucose-readings", el("span", {}, "Readings (dots), the 2-day moving average (line), target 70–180 mg/dL (band)"),
    `Glucose readings over the last ${days} days with the 70 to 180 mg/dL target band and the 2-day moving average: ${summary}`);
  const compared = ids.slice(1).map((id, i) => ({ id, stats: stats[i + 1], color: COMPARE_COLORS[i % COMPARE_COLORS.length] }))
    .filter((c) => c.stats.agp.length);
  const profile = figure("glucose-profile", el("span", {}, `Median (line), 25–75 % and 5–95 % of readings (bands) by time of day`,
    compared.map((c) => el("span", { class: "swatch-label" }, " · ", el("span", { class: "swatch", "data-color": c.color }), ` median of ${c.id} (dashed)`))),
    `Daily glucose profile: the median and the 25 to 75 and 5 to 95 percentiles of readings by time of day${compared.length ? `, with the medians of ${compared.map((c) => c.id).join(", ")}` : ""}`);
  // Time in ranges, one bar per patient (the consensus ranges).
  const tir = el("div", { id: "glucose-tir", class: "tir-list" }, stats.map((x, i) => x.summary
    ? el("div", { class: "tir-row", "data-patient": ids[i] }, el("span", { class: "tir-name" }, ids[i]),
      rangeBar(`Time in ranges of ${ids[i]}`, [
        { key: "vlow", name: "very low, below 54", percent: x.summary.very_low_percent },
        { key: "low", name: "low, 54 to 69", percent: x.summary.low_percent },
        { key: "in", name: "in range, 70 to 180", percent: x.summary.in_range_percent },
        { key: "high", name: "high, 181 to 250", percent: x.summary.high_percent },
        { key: "vhigh", name: "very high, above 250", percent: x.summary.very_high_percent },
      ]))
    : el("div", { class: "tir-row" }, el("span", { class: "tir-name" }, ids[i]), el("span", { class: "muted" }, "no readings"))));
  show(
    el("h1", {}, `Glucose: ${primary}`),
    el("p", { class: "links" }, el("a", { href: `#/report/${enc}` }, "AGP report (printable)")),
    el("div", { class: "toolbar", role: "group", "aria-label": "Period" },
      [7, 14, 30, 90].map((d) => el("button", { type: "button", "aria-pressed": d === days ? "true" : "false",
        onclick: () => glucosePage(ids, d) }, `${d} days`))),
    scroller("glucose-stats", el("table", { id: "glucose-stats" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Last " + days + " days"), ids.map((id) => el("th", { scope: "col" }, id)))),
      el("tbody", {}, rows.map(([label, f]) => el("tr", {}, el("th", { scope: "row" }, label),
        stats.map((x) => el("td", { class: "num" }, x.summary ? f(x.summary) : "no readings")))),
      variability.map(([label, f]) => el("tr", { class: "variability" }, el("th", { scope: "row" }, label),
        stats.map((x) => el("td", { class: "num" }, x.variability ? f(x.variability) : "no readings"))))))),
    others.length ? compare : null,
    el("h2", {}, "Time in ranges"), tir,
    el("p", { class: "muted tir-keys" }, [["vlow", "below 54"], ["low", "54–69"], ["in", "70–180"], ["high", "181–250"], ["vhigh", "above 250"]]
      .map(([k, t]) => el("span", {}, el("span", { class: `key tir-${k}` }), ` ${t} `))),
    el("h2", {}, "Readings and 2-day moving average"), readings.fig,
    el("h2", {}, "Daily profile"), profile.fig);
  charts.push(readingsChart(readings.box, { from, to, target: [70, 180], unit: "mg/dL" },
    s.t, s.mean, g.moving_average.t, g.moving_average.mean));
  readings.fig.dataset.points = String(s.t.length);
  readings.fig.dataset.average = String(g.moving_average.t.length);
  const col = (k) => g.agp.map((x) => x[k]);
  charts.push(profileChart(profile.box, { target: [70, 180], unit: "mg/dL" },
    g.agp.map((x) => x.minute + 15), col("p5"), col("p25"), col("p50"), col("p75"), col("p95"),
    compared.map((c) => ({ label: c.id, minutes: c.stats.agp.map((x) => x.minute + 15), p50: c.stats.agp.map((x) => x.p50) }))));
  for (const sw of profile.fig.querySelectorAll(".swatch")) sw.style.background = sw.dataset.color;
  profile.fig.dataset.compared = String(compared.length);
  profile.fig.dataset.slots = String(g.agp.length);
}

/** The one-page AGP report (docs/glucose.md): the consensus statistics against their
 *  targets, the time in ranges, variability and risk, and the daily profile, laid out to
 *  print on one A4 or Letter page (the print stylesheet). */
async function reportPage(patient, days = 14) {
  const enc = encodeURIComponent(patient);
  const latest = await api("GET", `/api/v1/patients/${enc}/latest`);
  const newest = latest.metrics.filter((m) => m.metric === "blood_glucose").reduce((t, m) => (m.time > t ? m.time : t), "");
  const to = Date.parse(newest || new Date().toISOString()) + 1000;
  const from = to - days * 864e5;
  const tz = `tz_offset_min=${-new Date(from).getTimezoneOffset()}`;
  const g = await api("GET", `/api/v1/patients/${enc}/glucose?from=${from}&to=${to}&${tz}`);
  const s = g.summary, v = g.variability;
  const fmtDate = (ms) => new Date(ms).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  const num = (x, d = 1, unit = "") => (x === null || x === undefined ? "–" : `${x.toFixed(d)}${unit}`);
  const active = s && v && v.grid_step_min ? Math.min(100, (100 * s.readings * v.grid_step_min) / (days * 1440)) : null;
  const rows = s ? [
    ["Readings", String(s.readings), ""],
    ["Time CGM active", num(active, 1, " %"), "at least 70 % of the period"],
    ["Mean glucose", num(s.mean, 0, " mg/dL"), ""],
    ["Glucose management indicator (GMI)", num(s.gmi_percent, 1, " %"), ""],
    ["Glucose variability (CV)", num(s.cv_percent, 1, " %"), "36 % or less"],
    ["Very high, above 250 mg/dL", num(s.very_high_percent, 1, " %"), "under 5 %"],
    ["High, 181–250 mg/dL", num(s.high_percent, 1, " %"), "above 180: under 25 %"],
    ["In range, 70–180 mg/dL", num(s.in_range_percent, 1, " %"), "over 70 %"],
    ["Low, 54–69 mg/dL", num(s.low_percent, 1, " %"), "below 70: under 4 %"],
    ["Very low, below 54 mg/dL", num(s.very_low_percent, 1, " %"), "under 1 %"],
  ] : [];
  const risk = v ? [
    ["SD", num(v.sd, 1, " mg/dL")], ["MAGE", num(v.mage, 1, " mg/dL")], ["MODD", num(v.modd, 1, " mg/dL")],
    ["CONGA(1)", num(v.conga1, 1, " mg/dL")], ["LBGI", num(v.lbgi, 2)], ["HBGI", num(v.hbgi, 2)],
    ["GRI", num(v.gri, 1)], ["J-index", num(v.j_index, 1)],
  ] : [];
  const profile = figure("report-profile", el("span", {}, "Median (line), 25–75 % and 5–95 % of readings (bands) by time of day; target 70–180 mg/dL"),
    `Ambulatory glucose profile of ${patient} from ${fmtDate(from)} to ${fmtDate(to)}`);
  show(
    el("div", { class: "report", id: "agp-report" },
      el("div", { class: "toolbar no-print", role: "group", "aria-label": "Period" },
        [14, 30, 90].map((d) => el("button", { type: "button", "aria-pressed": d === days ? "true" : "false",
          onclick: () => reportPage(patient, d) }, `${d} days`)),
        el("button", { type: "button", onclick: () => window.print() }, "Print or save as PDF")),
      el("h1", {}, "Ambulatory glucose profile"),
      el("p", { class: "report-meta" }, `Patient ${patient} · ${days} days: ${fmtDate(from)} to ${fmtDate(to)} · printed ${fmtDate(Date.now())}`),
      s ? el("div", { class: "report-grid" },
        el("section", {}, el("h2", {}, "Glucose statistics and targets"),
          el("table", { id: "report-stats" },
            el("thead", {}, el("tr", {}, ["", "Value", "Target"].map((h) => el("th", { scope: "col" }, h)))),
            el("tbody", {}, rows.map(([k, x, t]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", { class: "num" }, x), el("td", { class: "muted" }, t)))))),
        el("section", {}, el("h2", {}, "Time in ranges"),
          rangeBar(`Time in ranges of ${patient}`, [
            { key: "vlow", name: "very low, below 54", percent: s.very_low_percent },
            { key: "low", name: "low, 54 to 69", percent: s.low_percent },
            { key: "in", name: "in range, 70 to 180", percent: s.in_range_percent },
            { key: "high", name: "high, 181 to 250", percent: s.high_percent },
            { key: "vhigh", name: "very high, above 250", percent: s.very_high_percent },
          ]),
          el("h2", {}, "Variability and risk"),
          el("table", { id: "report-risk" }, el("tbody", {}, risk.map(([k, x]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", { class: "num" }, x)))))))
        : el("p", { class: "muted" }, "No glucose readings in this period."),
      el("h2", {}, "Daily profile"), profile.fig,
      el("p", { class: "muted report-note" }, "Targets: the international consensus on time in range (Battelino et al., Diabetes Care 2019) for most adults with type 1 or type 2 diabetes. Variability: docs/glucose.md.")));
  const col = (k) => g.agp.map((x) => x[k]);
  charts.push(profileChart(profile.box, { target: [70, 180], unit: "mg/dL" },
    g.agp.map((x) => x.minute + 15), col("p5"), col("p25"), col("p50"), col("p75"), col("p95")));
  profile.fig.dataset.slots = String(g.agp.length);
}

/** The seizure diary (docs/dashboard.md): every seizure the detector raised or someone
 *  recorded, matched, with acknowledgements; a CSV download and a print layout. */
async function diaryPage(patient, days = 90) {
  const enc = encodeURIComponent(patient);
  // Up to the patient's newest reading (the server's time, not this device's).
  const latest = await api("GET", `/api/v1/patients/${enc}/latest`);
  const newest = latest.metrics.reduce((t, m) => (m.time > t ? m.time : t), "");
  const to = Date.parse(newest || new Date().toISOString()) + 60e3, from = to - days * 864e5;
  const q = `from=${Math.floor(from)}&to=${Math.floor(to)}`;
  const d = await api("GET", `/api/v1/patients/${enc}/seizures?${q}`);
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
  const label = { confirmed: "Detected and recorded", detected: "Detected, not recorded", recorded: "Recorded, not detected" };
  const c = d.counts;
  show(
    el("div", { class: "report", id: "seizure-diary" },
      el("div", { class: "toolbar no-print", role: "group", "aria-label": "Period" },
        [30, 90, 365].map((n) => el("button", { type: "button", "aria-pressed": n === days ? "true" : "false",
          onclick: () => diaryPage(patient, n) }, `${n} days`)),
        el("a", { class: "button", href: `/api/v1/patients/${enc}/seizures?${q}&format=csv`, download: `seizures-${patient}.csv` }, "Download CSV"),
        el("button", { type: "button", onclick: () => window.print() }, "Print or save as PDF")),
      el("h1", {}, "Seizure diary"),
      el("p", { class: "report-meta" }, `Patient ${patient} · last ${days} days · printed ${new Date().toLocaleDateString()}`),
      el("p", { id: "diary-counts" }, `${c.confirmed + c.detected + c.recorded} ${c.confirmed + c.detected + c.recorded === 1 ? "seizure" : "seizures"}: ${c.confirmed} detected and recorded, ${c.detected} detected only, ${c.recorded} recorded only.`),
      d.entries.length
        ? scroller("diary", el("table", { id: "diary" },
          el("thead", {}, el("tr", {}, ["Start", "Duration", "Status", "Detected at", "Acknowledged", "Recorded by", "Note"].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, d.entries.map((e) => el("tr", { "data-status": e.status },
            el("td", {}, when(e.start)), el("td", { class: "num" }, `${Math.round(e.duration_s)} s`), el("td", {}, label[e.status]),
            el("td", {}, when(e.detected_at)),
            el("td", {}, e.acknowledged_by ? `${e.acknowledged_by}, ${when(e.acknowledged_at)}` : (e.alert ? "not acknowledged" : "–")),
            el("td", {}, e.recorded_by || "–"), el("td", {}, e.note || ""))))))
        : el("p", { class: "muted" }, "No seizure detected or recorded in this period.")));
}

/** The ward board (docs/dashboard.md): one tile per patient the carer looks after (up to
 *  50, sized to fill the screen), with the latest values, how long since the device was
 *  heard from, and any open alert, acknowledged from the board; an alarm that flashes
 *  (and, once switched on, sounds) while an alert is open and unacknowledged. */
async function board() {
  document.body.classList.add("board");
  const state = { sound: false, heard: new Set(), beeps: 0, audio: null };
  const grid = el("div", { id: "board", class: "board-grid", role: "list", "aria-label": "Patients" });
  const alarm = el("p", { id: "board-alarm", class: "board-alarm", role: "alert" });
  const updated = el("span", { class: "muted", id: "board-updated" });
  const soundButton = el("button", { type: "button", "aria-pressed": "false", id: "board-sound",
    onclick: () => {
      state.sound = !state.sound;
      soundButton.setAttribute("aria-pressed", String(state.sound));
      soundButton.textContent = state.sound ? "Sound alarm: on" : "Sound alarm: off";
      if (state.sound && !state.audio) {
        try { state.audio = new AudioContext(); } catch { state.audio = null; }
      }
    } }, "Sound alarm: off");
  const beep = () => {
    state.beeps += 1;
    grid.dataset.beeps = String(state.beeps);
    if (!state.audio) return;
    const o = state.audio.createOscillator(), g = state.audio.createGain();
    o.frequency.value = 880;
    g.gain.value = 0.2;
    o.connect(g).connect(state.audio.destination);
    o.start();
    o.stop(state.audio.currentTime + 0.4);
  };
  const VALUES = [["heart_rate", "HR", 0], ["blood_glucose", "Glucose", 0], ["spo2", "SpO2", 0]];
  const layout = (n) => {
    // Columns and rows that fill the space left under the toolbar with tiles about 3:2.
    const w = grid.clientWidth || innerWidth, h = Math.max(200, innerHeight - grid.getBoundingClientRect().top - 8);
    let best = { cols: 1, rows: n, size: 0 };
    for (let cols = 1; cols <= Math.max(1, n); cols++) {
      const rows = Math.ceil(n / cols), tw = w / cols, th = h / rows;
      const size = Math.min(tw, th * 1.5);
      if (size > best.size) best = { cols, rows, size };
    }
    grid.style.gridTemplateColumns = `repeat(${best.cols}, minmax(0, 1fr))`;
    grid.style.gridAutoRows = `${Math.floor(h / best.rows) - 6}px`;
    // The largest type (up to 22 px) with which no tile overflows.
    let font = Math.max(10, Math.min(22, best.size / 11));
    const overflows = () => [...grid.children].some((t) => t.scrollHeight > t.clientHeight + 1 || t.scrollWidth > t.clientWidth + 1);
    grid.style.setProperty("--tile-font", `${font}px`);
    for (let i = 0; i < 8 && font > 9 && overflows(); i++) {
      font *= 0.9;
      grid.style.setProperty("--tile-font", `${font}px`);
    }
  };
  const render = async () => {
    const [o, open, acked] = await Promise.all([api("GET", "/api/v1/overview"),
      api("GET", "/api/v1/alerts?state=open"), api("GET", "/api/v1/alerts?state=acknowledged")]);
    const patients = o.patients.slice(0, 50);
    const byPatient = new Map();
    for (const a of [...open.alerts, ...acked.alerts]) if (!byPatient.has(a.patient)) byPatient.set(a.patient, a);
    const fresh = open.alerts.filter((a) => !state.heard.has(a.id));
    for (const a of open.alerts) state.heard.add(a.id);
    if (fresh.length && state.sound) beep();
    grid.replaceChildren(...patients.map((p) => {
      const a = byPatient.get(p.patient);
      const ringing = a && a.state === "open";
      const values = VALUES.filter(([code]) => p.latest[code]).slice(0, 2)
        .map(([code, label, d]) => el("span", { class: "v" }, `${label} `, el("b", {}, Number(p.latest[code].value).toFixed(d))));
      return el("div", { role: "listitem", class: `btile${p.stale ? " stale" : ""}${ringing ? " ringing" : ""}${a && !ringing ? " acked" : ""}`,
        "data-patient": p.patient },
        el("a", { class: "name", href: `#/patient/${encodeURIComponent(p.patient)}` }, p.patient),
        el("span", { class: "vals" }, values.length ? values : "no readings"),
        el("span", { class: "seen" }, p.stale ? `silent ${ago(p.last_seen, o.now)}` : ago(p.last_seen, o.now)),
        a ? el("span", { class: "alert" }, `${a.severity}: ${a.description || a.rule}`,
          ringing ? null : el("span", { class: "by" }, ` · acknowledged by ${a.acknowledged_by}`)) : null,
        ringing
          ? el("button", { type: "button", class: "ack", onclick: async () => { await api("POST", `/api/v1/alerts/${encodeURIComponent(a.id)}/ack`); render(); } }, `Acknowledge ${p.patient}`)
          : null);
    }));
    const ringing = patients.filter((p) => byPatient.get(p.patient)?.state === "open");
    alarm.textContent = ringing.length ? `${ringing.length} open ${ringing.length === 1 ? "alert" : "alerts"}: ${ringing.map((p) => p.patient).join(", ")}` : "";
    alarm.hidden = !ringing.length;
    grid.dataset.tiles = String(patients.length);
    updated.textContent = `Updated ${new Date(o.now).toLocaleTimeString()}`;
    layout(patients.length);
  };
  show(el("div", { class: "board-bar" }, el("h1", {}, "Ward board"), soundButton, updated), alarm, grid);
  await render();
  every(5000, render);
}

const SIGNAL_NAMES = {
  resting_heart_rate: "Resting heart rate", hrv: "Heart rate variability", skin_temperature: "Skin temperature (night)",
  respiratory_rate: "Respiratory rate (night)", spo2: "SpO2 (night)", steps: "Steps (the day before)", sleep: "Sleep",
};

/** A patient's nights against their own normal (docs/alerting.md): whether the detector is
 *  still learning, the anomalies with their explanations, and each signal in its band. */
async function baselinesPage(patient, days = 60) {
  const enc = encodeURIComponent(patient);
  const tz = -new Date().getTimezoneOffset();
  const b = await api("GET", `/api/v1/patients/${enc}/baselines?days=${days}&tz_offset_min=${tz}`);
  const noon = (day) => Date.parse(`${day}T12:00:00Z`);
  const from = noon(b.from) - 864e5 / 2, to = noon(b.to) + 864e5 / 2;
  const t = b.thresholds;
  const status = b.status === "cold_start"
    ? `Learning ${patient}'s normal: ${b.nights_with_resting_rate} of the ${b.nights_needed} nights with a resting heart rate it needs so far. No anomaly is flagged until then.`
    : `Watching for anomalies at ${b.sensitivity} sensitivity: a resting heart rate ${t.rise_bpm} bpm and ${t.rise_z} spreads over this person's normal (the median of their last ${b.window_days} nights) for ${t.nights} nights in a row, or half that with two other signals off.`;
  const list = b.anomalies.length
    ? el("ul", { id: "anomalies", class: "anomalies" }, b.anomalies.map((a) => el("li", { "data-start": a.start },
      el("strong", {}, a.cleared ? `${a.start} to ${a.cleared}` : `Since ${a.start} (open)`), ": ", a.explanation)))
    : el("p", { id: "anomalies", class: "muted" }, `No anomaly from ${b.from} to ${b.to}.`);
  const figs = b.signals.map((s) => {
    const name = SIGNAL_NAMES[s.signal] || s.signal;
    const inBand = s.nights.filter((n) => n.baseline && n.value !== null && n.value >= n.baseline.low && n.value <= n.baseline.high).length;
    const f = figure(`baseline-${s.signal}`, el("span", {}, `${name}, ${s.unit}: each night (dots) and this person's normal (dashed) with its band`),
      `${name} by night from ${b.from} to ${b.to}: ${s.nights.filter((n) => n.value !== null).length} nights, ${inBand} inside the personal band`);
    f.fig.dataset.nights = String(s.nights.filter((n) => n.value !== null).length);
    f.fig.dataset.banded = String(s.nights.filter((n) => n.baseline).length);
    return { s, f };
  });
  show(
    el("h1", {}, `Baselines: ${patient}`),
    el("p", { class: "links" }, el("a", { href: `#/patient/${enc}` }, "Back to the patient")),
    el("p", { id: "baseline-status", "data-status": b.status }, status),
    el("h2", {}, "Recommendations"),
    b.recommendations.length
      ? el("ul", { id: "recommendations", class: "recommendations" }, b.recommendations.map((r) => el("li", { "data-kind": r.kind },
        me.role === "patient" ? r.advice : [el("strong", {}, r.title), el("br"), r.advice,
          el("details", {}, el("summary", {}, "Evidence"), el("ul", {}, r.evidence.map((e) => el("li", {}, e))))])))
      : el("p", { id: "recommendations", class: "muted" }, "Nothing to recommend."),
    el("h2", {}, "Anomalies"), list,
    el("h2", {}, "Signals by night"),
    ...(figs.length ? figs.map((x) => x.f.fig) : [el("p", { class: "muted" }, "No nightly values yet.")]));
  for (const { s, f } of figs) {
    const col = (k) => s.nights.map((n) => (n.baseline ? n.baseline[k] : null));
    charts.push(baselineChart(f.box, { from, to, unit: s.unit }, s.nights.map((n) => noon(n.day)),
      s.nights.map((n) => n.value), col("low"), col("median"), col("high")));
  }
}

const DAILY = ["step_count", "active_energy", "resting_energy", "walking_running_distance", "flights_climbed", "resting_heart_rate",
  "walking_speed", "walking_step_length", "walking_asymmetry", "walking_double_support"];

/** The start of the local day (or hour) holding `t`, in this browser's time zone. */
function localStart(t, hourly) {
  const d = new Date(t);
  if (hourly) d.setMinutes(0, 0, 0); else d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** `t` moved by `n` local days (or hours): days are 23 to 25 hours long where clocks change. */
function localAdd(t, n, hourly) {
  if (hourly) return t + n * 3600e3;
  const d = new Date(t);
  d.setDate(d.getDate() + n);
  return d.getTime();
}

/** Sums and counts of UTC-aligned buckets folded into local days (or hours). */
function foldLocal(points, hourly) {
  const out = new Map();
  for (const p of points) {
    const k = localStart(p.time, hourly);
    const acc = out.get(k) || { sum: 0, count: 0 };
    acc.sum += p.sum;
    acc.count += p.count;
    out.set(k, acc);
  }
  return [...out.entries()].sort((a, b) => a[0] - b[0]);
}

async function daily(id, hourly = false) {
  const enc = encodeURIComponent(id);
  const [latest, catalog] = await Promise.all([
    api("GET", `/api/v1/patients/${enc}/latest`), api("GET", "/api/v1/metrics")]);
  const agg = Object.fromEntries(catalog.metrics.map((m) => [m.code, m.aggregation]));
  const newest = latest.metrics.reduce((t, m) => (m.time > t ? m.time : t), "");
  const end = Date.parse(newest || new Date().toISOString());
  // Local days (or hours) in this browser's time zone, daylight-saving changes included: the
  // server's buckets are UTC-aligned hours (quarter hours where the zone's offset is not
  // whole hours), folded here into local ones.
  const n = hourly ? 48 : 30;
  const to = localAdd(localStart(end, hourly), 1, hourly);
  const from = localAdd(to, -n, hourly);
  const wholeHours = [from, to].every((t) => new Date(t).getTimezoneOffset() % 60 === 0);
  const have = new Set(latest.metrics.map((m) => m.metric));
  const metrics = DAILY.filter((m) => have.has(m));
  const unit = hourly ? "hour" : "day";
  const figures = await Promise.all(metrics.map(async (m) => {
    const sums = agg[m] === "sum";
    const s = await api("GET", `/api/v1/patients/${enc}/series/${m}?from=${from}&to=${to}&every=${wholeHours ? "1h" : "15m"}&agg=sum,count&time_format=ms`);
    const folded = foldLocal(s.points, hourly);
    const times = folded.map(([t]) => t);
    const values = folded.map(([, a]) => (sums ? a.sum : a.sum / a.count));
    // The trailing 7-bucket mean as the trend.
    const trendValues = values.map((_, i) => {
      const w = values.slice(Math.max(0, i - 6), i + 1);
      return w.reduce((x, y) => x + y, 0) / w.length;
    });
    const last = values.length ? values[values.length - 1] : null;
    const mean = values.length ? values.reduce((x, y) => x + y, 0) / values.length : null;
    const fmt = (v) => (v === null ? "–" : `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${s.unit}`);
    const name = m.replaceAll("_", " ");
    const { fig, box } = figure(`daily-${m}`, el("span", {}, `${sums ? "total" : "mean"} per ${unit}`),
      `${name} per ${unit}: latest ${fmt(last)}, mean ${fmt(mean)}`);
    box.dataset.bars = String(times.length);
    const section = el("section", { class: "daily", "data-metric": m },
      el("h2", {}, name),
      el("p", { class: "muted" }, `latest ${unit}: `, el("strong", { class: "last" }, fmt(last)),
        ` · ${hourly ? "48-hour" : "30-day"} mean ${fmt(mean)} (${sums ? "sum" : "mean"} per ${unit})`),
      fig);
    return { section, box, times, values, trend: hourly ? null : trendValues, unit: s.unit };
  }));
  show(
    el("h1", {}, `Daily metrics: ${id}`),
    el("div", { class: "toolbar", role: "group", "aria-label": "Resolution" },
      el("button", { type: "button", "aria-pressed": hourly ? "false" : "true", onclick: () => daily(id, false) }, "Days (30)"),
      el("button", { type: "button", "aria-pressed": hourly ? "true" : "false", onclick: () => daily(id, true) }, "Hours (48)")),
    ...(metrics.length ? figures.map((f) => f.section) : [el("p", {}, "No activity metrics for this patient yet.")]));
  for (const f of figures) {
    charts.push(barChart(f.box, { from, to, unit: f.unit }, f.times, f.values, f.trend));
  }
}

function table(id, headers, rows) {
  return scroller(id, el("table", { id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))))));
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
         el("button", { type: "button", onclick: () => act(a, "snooze"), "aria-label": `Snooze 30 min: ${a.rule} for ${a.patient}` }, "Snooze 30 min")]
      : [a.state, a.acknowledged_by ? ` by ${a.acknowledged_by}` : ""])));
  show(el("h1", {}, "Alerts"), tabs, status,
    scroller("alerts", el("table", { id: "alerts" },
      el("thead", {}, el("tr", {}, ["Severity", "Patient", "Alert", "Fired", tab === "inbox" ? "Act" : "State"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows))));
  // Kept current: every 15 s; redrawn only when something changed, new alerts announced.
  const signature = (l) => l.map((a) => `${a.id}:${a.state}`).join(",");
  const shown = signature(list);
  every(15000, async () => {
    const next = (await api("GET", path)).alerts.slice(0, 200);
    if (signature(next) === shown) return;
    const fresh = next.filter((a) => !list.some((b) => b.id === a.id)).length;
    await alerts(tab);
    if (fresh) document.getElementById("alerts-status").textContent = `${fresh} new alert${fresh === 1 ? "" : "s"}`;
  });
}

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

/** The tiles the kiosk shows: the first three of these the patient has. */
const KIOSK_TILES = [["heart_rate", "Heart rate", 0], ["blood_glucose", "Glucose", 0], ["spo2", "SpO₂", 0], ["steps_today", "Steps today", 0]];
/** A reading older than this is marked on the kiosk with its age. */
const KIOSK_OLD_MS = 15 * 60e3;

async function kiosk(id) {
  document.body.classList.add("kiosk");
  const enc = encodeURIComponent(id);
  let lastOk = null;
  const render = async () => {
    const [latest, al] = await Promise.all([
      api("GET", `/api/v1/patients/${enc}/latest`),
      api("GET", `/api/v1/alerts?patient=${enc}`),
    ]);
    const now = latest.now;
    const by = Object.fromEntries(latest.metrics.map((m) => [m.metric, m]));
    const trendMetric = by.blood_glucose ? "blood_glucose" : "heart_rate";
    const from = Date.parse(now) - 6 * 3600e3;
    const midnight = localStart(Date.parse(now), false);
    const [series, steps] = await Promise.all([
      by[trendMetric]
        ? api("GET", `/api/v1/patients/${enc}/series/${trendMetric}?from=${from}&every=10m&agg=mean&time_format=ms`)
        : { points: [] },
      by.step_count && Date.parse(by.step_count.time) >= midnight
        ? api("GET", `/api/v1/patients/${enc}/series/step_count?from=${midnight}&every=1h&agg=sum&time_format=ms`)
        : null,
    ]);
    if (steps) {
      by.steps_today = { value: steps.points.reduce((x, p) => x + p.sum, 0), unit: "steps", time: by.step_count.time };
    }
    const active = al.alerts.filter((a) => a.state === "open" || a.state === "acknowledged");
    const tile = ([code, label, digits]) => {
      const m = by[code];
      const old = Date.parse(now) - Date.parse(m.time) > KIOSK_OLD_MS;
      return el("div", { class: old ? "tile old" : "tile" },
        el("span", { class: "label" }, label),
        el("span", { class: "big", id: `kiosk-${code}` }, Number(m.value).toFixed(digits)),
        el("span", { class: "unit" }, old ? `${m.unit}, ${ago(m.time, now)}` : m.unit));
    };
    const tiles = KIOSK_TILES.filter(([code]) => by[code]).slice(0, 3);
    lastOk = new Date(now).toLocaleTimeString();
    show(
      active.length
        ? el("div", { class: "banner", role: "alert", id: "kiosk-banner" }, `Alert: ${active[0].description || active[0].rule}`)
        : el("div", { class: "banner ok", id: "kiosk-banner" }, "All well"),
      tiles.length ? el("div", { class: "tiles" }, tiles.map(tile)) : el("p", { class: "big-note" }, "No readings yet."),
      trend(series.points, `${trendMetric.replaceAll("_", " ")} over the last 6 hours`),
      el("p", { class: "muted", id: "kiosk-updated" }, `Updated ${lastOk}`));
  };
  // Refreshed every 30 s. A screen that cannot refresh says so in large type rather than
  // go on showing old numbers as if they were current.
  const tick = async () => {
    try {
      await render();
    } catch (e) {
      if (e.status === 401) {
        clearInterval(pageTimer);
        pageTimer = null;
        return signIn("This screen's session ended; sign in again.");
      }
      const u = document.getElementById("kiosk-updated");
      if (u) {
        u.className = "banner warn";
        u.setAttribute("role", "alert");
        u.textContent = `Not updated since ${lastOk}: ${e.message}`;
      }
    }
  };
  await render();
  every(30000, tick);
}

const campaigns = campaignViews({ api, el, show, scroller });

async function route() {
  const [, view, arg] = location.hash.split("/");
  if (pageTimer) { clearInterval(pageTimer); pageTimer = null; }
  if (liveSource) { liveSource.close(); liveSource = null; }
  document.body.classList.remove("kiosk", "board");
  try {
    if (view === "patient" && arg) await patient(decodeURIComponent(arg));
    else if (view === "alerts") await alerts(arg || "inbox");
    else if (view === "kiosk" && arg) await kiosk(decodeURIComponent(arg));
    else if (view === "admin") await admin();
    else if (view === "daily" && arg) await daily(decodeURIComponent(arg));
    else if (view === "glucose" && arg) await glucosePage(arg.split(",").map(decodeURIComponent));
    else if (view === "baselines" && arg) await baselinesPage(decodeURIComponent(arg));
    else if (view === "report" && arg) await reportPage(decodeURIComponent(arg));
    else if (view === "diary" && arg) await diaryPage(decodeURIComponent(arg));
    else if (view === "board") await board();
    else if (view === "campaigns") await campaigns.campaignsPage();
    else if (view === "campaign" && arg) await campaigns.campaignPage(decodeURIComponent(arg));
    else if (view === "messages" && arg) {
      const p = decodeURIComponent(arg);
      await campaigns.messagesPage(p, me.role === "patient" && me.patient === p);
    }
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
  document.getElementById("campaigns-link").hidden = me.role !== "admin" && me.role !== "clinician";
  nav.hidden = false;
  if (await oauthReturn()) return;
  await route();
}

/** Back from a vendor's OAuth sign-in (`/?code=…&state=…`): hands both to the server,
 *  then shows the patient's page. Returns whether it was such a return. */
async function oauthReturn() {
  const back = new URLSearchParams(location.search);
  if (!back.has("state") || !(back.has("code") || back.has("error"))) return false;
  history.replaceState(null, "", location.pathname + location.hash);
  if (back.has("error")) {
    show(el("p", { class: "error", role: "alert" }, `The vendor did not grant access (${back.get("error")}).`));
    return true;
  }
  try {
    const c = await api("POST", "/api/v1/connections/oauth", { code: back.get("code"), state: back.get("state") });
    history.replaceState(null, "", `${location.pathname}#/patient/${encodeURIComponent(c.patient)}`);
    await route();
  } catch (e) {
    show(el("p", { class: "error", role: "alert" }, `Connecting failed: ${e.message}`));
  }
  return true;
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
