// Drives the dashboard in Debian's chromium (headless) against a running Vitals server and
// prints what it saw as JSON; the Rust integration test `dashboard` starts the server with
// simulated data, runs this, and checks the output. Screenshots go to $ARTIFACTS.
// Env: VITALS_URL, VITALS_USER, VITALS_PASSWORD, VITALS_KIOSK_PATIENT, ARTIFACTS.
import { writeFileSync } from "node:fs";
import { accessibility, artifacts, run, signIn, url, withAxe } from "./browser.mjs";

const out = { console_errors: [], page_errors: [], a11y: {} };
/** Samples sent as the test's device. */
const device = (samples) => fetch(`${url}/api/v1/samples`, {
  method: "POST",
  headers: { Authorization: `Bearer ${process.env.VITALS_DEVICE_TOKEN}`, "Content-Type": "application/json" },
  body: JSON.stringify(samples),
});
await run(out, async (browser) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await withAxe(context);
  const page = await context.newPage();
  const check = async (name) => { out.a11y[name] = await accessibility(page); };
  page.setDefaultTimeout(15000);
  page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
  page.on("pageerror", (e) => out.page_errors.push(String(e)));

  await page.goto(`${url}/`);
  await signIn(page, "not the password");
  out.wrong_password_message = await page.locator("#signin-error").filter({ hasText: /./ }).textContent();
  await check("sign-in");

  await signIn(page);
  await page.locator("#patients tbody tr").first().waitFor();
  out.who = await page.locator("#who").textContent();
  out.admin_link_hidden = await page.locator("#admin-link").isHidden();
  out.rows = await page.locator("#patients tbody tr").evaluateAll((trs) =>
    trs.map((tr) => ({ patient: tr.dataset.patient, stale: tr.classList.contains("stale"), cells: [...tr.cells].map((c) => c.textContent),
      spark: tr.querySelector("svg.spark") ? Number(tr.querySelector("svg.spark").dataset.points) : null })));
  const cookies = await context.cookies();
  out.cookie = cookies.filter((c) => c.name === "vitals_session").map((c) => ({ httpOnly: c.httpOnly, sameSite: c.sameSite }))[0] || null;
  out.cookie_hours = cookies.filter((c) => c.name === "vitals_session").map((c) => (c.expires - Date.now() / 1000) / 3600)[0];
  await page.screenshot({ path: `${artifacts}/patients.png`, fullPage: true });
  // The filters: stale ones only, then those with open alerts only.
  const shown = () => page.locator("#patients tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.patient));
  await page.getByLabel("Stale only").check();
  out.filter_stale = await shown();
  await page.getByLabel("Stale only").uncheck();
  await page.getByLabel("With open alerts").check();
  out.filter_alerts = await shown();
  await page.getByLabel("With open alerts").uncheck();
  await page.getByLabel("Filter patients").fill("3");
  out.filter_search = await shown();
  await page.getByLabel("Filter patients").fill("");
  await check("patients");

  // Keyboard: the first patient link is reachable by Tab and opens with Enter.
  await page.locator("#patients tbody a").first().focus();
  await page.keyboard.press("Enter");
  await page.locator("#latest tbody tr").first().waitFor();
  out.patient_title = await page.locator("main h1").textContent();
  out.url_after_open = page.url();
  out.latest_rows = await page.locator("#latest tbody tr").count();
  out.devices = await page.locator("#devices tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  // Vendor accounts: connect one with the form, read its row.
  await page.locator("#connect-vendor").selectOption("librelinkup");
  await page.locator("#connect-user").fill("follower@example.org");
  await page.locator("#connect-password").fill("libre-pw");
  await page.getByRole("button", { name: "Connect", exact: true }).click();
  await page.locator("#connections tbody tr[data-vendor=librelinkup]").waitFor();
  // Oura signs in at its own page (a stand-in here), which sends the browser back with a code.
  await page.locator("#connect-vendor").selectOption("oura");
  await page.getByRole("button", { name: "Connect", exact: true }).click();
  await page.waitForURL(/\/oauth\/authorize\?/);
  const grant = new URL(page.url()).searchParams;
  out.oauth_redirect = grant.get("redirect_uri");
  await page.goto(`${url}/?code=browser-code&state=${encodeURIComponent(grant.get("state"))}`);
  await page.locator("#connections tbody tr[data-vendor=oura]").waitFor();
  out.connections = await page.locator("#connections tbody tr").evaluateAll((trs) =>
    trs.map((tr) => [...tr.cells].slice(0, 6).map((c) => c.textContent)));
  await page.evaluate(() => window.scrollTo(0, 0)); // back to the charts
  // Charts: one panel per sensor on one time axis, downsampled on the server.
  const points = () => page.locator("#charts figure").evaluateAll((fs) =>
    Object.fromEntries(fs.map((f) => [f.dataset.metric, Number(f.dataset.points)])));
  await page.locator("#charts figure[data-points]").first().waitFor();
  out.chart_6h = await points();
  out.chart_labels = await page.locator("#charts .plot").evaluateAll((ps) => ps.map((p) => p.getAttribute("aria-label")));
  out.chart_canvases = await page.locator("#charts figure canvas").count();
  // The mouse over one chart: every panel's readout shows its value at that time.
  const over = await page.locator("#charts figure .u-over").first().boundingBox();
  await page.mouse.move(over.x + over.width - 3, over.y + over.height / 2);
  await page.locator("figure[data-metric=blood_glucose] .readout").filter({ hasText: /mg\/dL/ }).waitFor();
  out.readouts = await page.locator("#charts .readout").allTextContents();
  await page.mouse.move(0, 0);
  await check("patient");
  await page.getByRole("button", { name: "Disconnect Oura" }).click();
  await page.locator("#connections tbody tr[data-vendor=oura]").waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Disconnect LibreLinkUp" }).click();
  await page.locator("#no-connections").waitFor();
  out.connections_after_disconnect = await page.locator("#connections tbody tr").count();
  out.chart_alerts = Number(await page.locator("#charts").getAttribute("data-alerts"));
  await page.screenshot({ path: `${artifacts}/patient.png`, fullPage: true });
  // Live: a device sends a reading; the server's event redraws the charts.
  const rangeLive = await page.locator("#chart-range").textContent();
  const sent = await device([{ patient: "p-1", metric: "heart_rate", time: Number(process.env.VITALS_NOW) - 20000, value: 74 }]);
  out.live_sent = sent.status;
  await page.locator("#chart-range").filter({ hasNotText: rangeLive }).waitFor();
  out.chart_live = await points();
  // The range line is written once the new data is drawn.
  const range6h = await page.locator("#chart-range").textContent();
  await page.getByRole("button", { name: "24 h" }).click();
  await page.locator("#chart-range").filter({ hasNotText: range6h }).waitFor();
  out.chart_24h = await points();
  // The mouse: dragging across the middle half of a chart zooms every chart to it.
  const shownRange = () => page.locator("#charts").evaluate((c) => [Number(c.dataset.from), Number(c.dataset.to)]);
  const dragFrom = await shownRange();
  const plot = await page.locator("#charts figure .u-over").first().boundingBox();
  const beforeDrag = await page.locator("#chart-range").textContent();
  await page.mouse.move(plot.x + plot.width * 0.25, plot.y + plot.height / 2);
  await page.mouse.down();
  await page.mouse.move(plot.x + plot.width * 0.5, plot.y + plot.height / 2, { steps: 4 });
  await page.mouse.move(plot.x + plot.width * 0.75, plot.y + plot.height / 2, { steps: 4 });
  await page.mouse.up();
  await page.locator("#chart-range").filter({ hasNotText: beforeDrag }).waitFor();
  out.drag = { before: dragFrom, after: await shownRange(), plot_width: plot.width };
  // Any range typed in: from and to, local date-times.
  const beforeTyped = await page.locator("#chart-range").textContent();
  await page.getByLabel("From", { exact: true }).fill("2025-11-21T12:00");
  await page.getByLabel("to", { exact: true }).fill("2025-11-22T00:00");
  await page.getByRole("button", { name: "Show range" }).click();
  await page.locator("#chart-range").filter({ hasNotText: beforeTyped }).waitFor();
  out.typed_range = await shownRange();
  await page.getByLabel("From", { exact: true }).fill("2025-11-22T00:00");
  await page.getByRole("button", { name: "Show range" }).click();
  out.typed_error = await page.locator("#range-error").filter({ hasText: /./ }).textContent();
  await page.getByRole("button", { name: "24 h" }).click();
  await page.locator("#chart-range").filter({ hasText: "(live)" }).waitFor();
  // Keyboard: pan a quarter of the range earlier, out of the data.
  await page.locator("#charts").focus();
  const before = await page.locator("#chart-range").textContent();
  await page.keyboard.press("ArrowLeft");
  await page.locator("#chart-range").filter({ hasNotText: before }).waitFor();
  out.chart_panned = await points();

  // Glucose: consensus metrics, the moving average, the daily profile, compared patients.
  await page.getByRole("link", { name: "Patients" }).click();
  await page.locator("#patients tbody tr").first().waitFor();
  await page.goto(`${url}/#/glucose/p-1`);
  await page.locator("#glucose-stats").waitFor();
  const table = () => page.locator("#glucose-stats tr").evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  out.glucose = await table();
  out.glucose_canvas = await page.locator("#glucose-readings, #glucose-profile").evaluateAll((fs) => fs.map((f) => ({ ...f.dataset })));
  await page.screenshot({ path: `${artifacts}/glucose.png`, fullPage: true });
  await check("glucose");
  await page.getByLabel("p-3", { exact: true }).check();
  await page.locator("#glucose-stats th", { hasText: "p-3" }).waitFor();
  out.glucose_compared = await table();
  await page.locator("#glucose-profile[data-compared]").waitFor();
  out.glucose_tir = await page.locator("#glucose-tir .tir-row").evaluateAll((rows) => rows.map((r) =>
    [r.dataset.patient, [...r.querySelectorAll(".tir span")].map((x) => [x.className.replace("tir-", ""), x.dataset.percent])]));
  out.glucose_profile_compared = Number(await page.locator("#glucose-profile").getAttribute("data-compared"));
  await page.screenshot({ path: `${artifacts}/glucose-compared.png`, fullPage: true });
  await check("glucose_compared");

  // Baselines: whether the detector watches, an anomaly's explanation, each signal in its band.
  await page.goto(`${url}/#/baselines/p-3`);
  await page.locator("#baseline-status").waitFor();
  await page.locator("figure#baseline-resting_heart_rate canvas").waitFor();
  out.baseline_status = await page.locator("#baseline-status").getAttribute("data-status");
  out.anomalies = await page.locator("#anomalies li").allTextContents();
  out.recommendations = await page.locator("#recommendations > li").evaluateAll((lis) => lis.map((li) => [li.dataset.kind, li.querySelector("strong")?.textContent]));
  out.baseline_figures = await page.locator("figure[id^=baseline-]").evaluateAll((fs) => fs.map((f) => [f.id, { ...f.dataset }]));
  await page.screenshot({ path: `${artifacts}/baselines.png`, fullPage: true });
  await check("baselines");

  // The patient view draws p-3's usual heart rate for each hour behind the series.
  await page.goto(`${url}/#/patient/p-3`);
  await page.locator("figure[data-metric='heart_rate'][data-profile-hours] canvas").waitFor();
  out.profile_hours = Number(await page.locator("figure[data-metric='heart_rate']").getAttribute("data-profile-hours"));
  out.usual_legend = await page.locator("#usual-legend").isVisible();
  await page.screenshot({ path: `${artifacts}/patient-usual-band.png`, fullPage: true });
  await check("patient_usual_band");

  // The AGP report: the statistics against their targets, one page when printed.
  await page.goto(`${url}/#/report/p-1`);
  await page.locator("#report-profile canvas").waitFor();
  out.report_stats = await page.locator("#report-stats tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  out.report_risk = await page.locator("#report-risk tr").count();
  await page.screenshot({ path: `${artifacts}/report.png`, fullPage: true });
  await check("report");
  await page.emulateMedia({ media: "print" });
  out.report_print_widths = await page.locator("#report-profile .plot").evaluate((b) => [b.clientWidth, b.querySelector(".uplot").offsetWidth]);
  const pdf = await page.pdf({ format: "A4", printBackground: true });
  await page.emulateMedia({ media: "screen" });
  writeFileSync(`${artifacts}/agp-report.pdf`, pdf);
  out.report_pdf_pages = (pdf.toString("latin1").match(/\/Type\s*\/Page[^s]/g) || []).length;

  // Daily metrics: steps as daily bars, then hourly.
  await page.goto(`${url}/#/daily/p-1`);
  const steps = page.locator("section.daily[data-metric=step_count] .plot");
  await steps.locator("canvas").waitFor();
  out.daily = {
    bars: Number(await steps.getAttribute("data-bars")),
    last: await page.locator("section.daily[data-metric=step_count] .last").textContent(),
  };
  await page.getByRole("button", { name: "Hours (48)" }).click();
  await page.locator("button[aria-pressed=true]", { hasText: "Hours" }).waitFor();
  await steps.locator("canvas").waitFor();
  out.daily.hourly_bars = Number(await steps.getAttribute("data-bars"));
  await page.screenshot({ path: `${artifacts}/daily.png`, fullPage: true });
  await check("daily");

  // The alerts inbox: acknowledge the first alert with one click; it leaves the inbox.
  await page.getByRole("link", { name: "Alerts" }).click();
  await page.locator("#alerts").waitFor();
  out.inbox_before = await page.locator("#alerts tbody tr").count();
  out.inbox_patients = await page.locator("#alerts tbody tr td:nth-child(2)").allTextContents();
  await page.screenshot({ path: `${artifacts}/alerts.png`, fullPage: true });
  await check("alerts");
  await page.locator("#alerts tbody tr").first().getByRole("button", { name: /^Acknowledge/ }).click();
  await page.locator("#alerts-status").filter({ hasText: "Acknowledged" }).waitFor();
  out.ack_status = await page.locator("#alerts-status").textContent();
  out.inbox_after = await page.locator("#alerts tbody tr").count();
  await page.getByRole("link", { name: "History" }).click();
  await page.locator("#alerts tbody tr").first().waitFor();
  out.history_states = await page.locator("#alerts tbody tr td:nth-child(5)").allTextContents();
  await check("history");
  await page.getByRole("link", { name: "Rules" }).click();
  await page.locator("#rules li").first().waitFor();
  out.rules = await page.locator("#rules li strong").allTextContents();
  await check("rules");

  // The kiosk at 800x480: big numbers, a banner, a trend, nothing that needs a mouse.
  await page.setViewportSize({ width: 800, height: 480 });
  await page.clock.install(); // the 30 s refresh, fast-forwarded below
  await page.goto(`${url}/#/kiosk/${encodeURIComponent(process.env.VITALS_KIOSK_PATIENT)}`);
  await page.locator("#kiosk-banner").waitFor();
  out.kiosk = {
    banner: await page.locator("#kiosk-banner").textContent(),
    heart_rate: await page.locator("#kiosk-heart_rate").textContent(),
    tiles: await page.locator(".tile").evaluateAll((ts) => ts.map((t) => [...t.children].map((c) => c.textContent))),
    trend_points: Number(await page.locator("canvas").getAttribute("data-points")),
    heart_rate_font_px: await page.locator("#kiosk-heart_rate").evaluate((e) => parseFloat(getComputedStyle(e).fontSize)),
    overflows: await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth),
    header_hidden: await page.locator("header.bar").isHidden(),
  };
  await page.screenshot({ path: `${artifacts}/kiosk-800x480.png` });
  await check("kiosk");
  // The server out of reach: the next refresh says so in large type instead of going on
  // showing the old numbers as current; once it is back, the screen recovers.
  await page.route("**/api/v1/**", (r) => r.abort("connectionrefused"));
  await page.clock.fastForward(31000);
  await page.locator("#kiosk-updated.warn").waitFor();
  out.kiosk.offline = await page.locator("#kiosk-updated").textContent();
  await page.screenshot({ path: `${artifacts}/kiosk-offline.png` });
  await page.unroute("**/api/v1/**");
  await page.clock.fastForward(31000);
  await page.locator("#kiosk-updated:not(.warn)").waitFor();
  out.kiosk.recovered = await page.locator("#kiosk-updated").textContent();

  // A narrow screen (the 800x480 kiosk size) still shows the patients table.
  await page.setViewportSize({ width: 800, height: 480 });
  await page.goto(`${url}/#/patients`);
  await page.locator("#patients tbody tr").first().waitFor();
  await page.screenshot({ path: `${artifacts}/patients-800x480.png` });
  // The patients view keeps itself current: p-3's device comes back; 30 s later the row
  // shows it (the page's clock is fast-forwarded).
  await device([{ patient: "p-3", metric: "heart_rate", time: Number(process.env.VITALS_NOW) - 10000, value: 61 }]);
  await page.clock.fastForward(31000);
  await page.locator("#patients tr[data-patient=p-3]:not(.stale)").waitFor();
  out.refreshed_p3 = await page.locator("#patients tr[data-patient=p-3] td").allTextContents();
  // The inbox too: a new rule fires on a new reading; within 15 s it is listed and announced.
  await page.goto(`${url}/#/alerts`);
  await page.locator("#alerts-status").waitFor();
  out.inbox_quiet = await page.locator("#alerts tbody tr").count();
  await fetch(`${url}/api/v1/rules`, {
    method: "POST",
    headers: { Authorization: `Bearer ${process.env.VITALS_ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "hr-over-78", expr: "heart_rate > 78", severity: "urgent", description: "Heart rate above 78" }),
  });
  await device([{ patient: "p-1", metric: "heart_rate", time: Number(process.env.VITALS_NOW) - 5000, value: 80 }]);
  // The alert opens once the reading is durable and evaluated; the page asks every 15 s.
  for (let i = 0; i < 20 && !(await page.locator("#alerts-status", { hasText: "new alert" }).count()); i++) {
    const polled = page.waitForResponse((r) => r.url().includes("/api/v1/alerts?state=open"));
    await page.clock.fastForward(15000);
    await polled;
  }
  await page.locator("#alerts-status", { hasText: "new alert" }).waitFor();
  out.inbox_announced = await page.locator("#alerts-status").textContent();
  out.inbox_new = await page.locator("#alerts tbody tr td:nth-child(3)").allTextContents();

  // A phone (390x844, touch) in India (UTC+5:30): the patient page fits the width; one
  // finger drags the time axis, two fingers pinch to zoom; daily bars are local days.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
    deviceScaleFactor: 2, timezoneId: "Asia/Kolkata" });
  await withAxe(phone);
  const mobile = await phone.newPage();
  mobile.setDefaultTimeout(15000);
  mobile.on("pageerror", (e) => out.page_errors.push(String(e)));
  await mobile.goto(`${url}/#/patient/p-1`);
  await mobile.getByLabel("Keep this screen signed in").check();
  await signIn(mobile);
  await mobile.locator("#charts figure[data-points]").first().waitFor();
  const range = async () => mobile.locator("#charts").evaluate((c) => [Number(c.dataset.from), Number(c.dataset.to)]);
  await mobile.locator("#charts figure .u-over").first().scrollIntoViewIfNeeded();
  const plotBox = () => mobile.locator("#charts figure .u-over").first().boundingBox();
  const cdp = await phone.newCDPSession(mobile);
  // Fingers at fractions of the plotting area's width, moving in 8 steps.
  const gesture = async (from, to) => {
    const plot = await plotBox();
    const at = (f) => plot.x + f * plot.width;
    const touch = (type, fs) => cdp.send("Input.dispatchTouchEvent", {
      type, touchPoints: fs.map((f, id) => ({ x: at(f), y: plot.y + plot.height / 2, id })) });
    const before = await mobile.locator("#chart-range").textContent();
    await touch("touchStart", from);
    for (let k = 1; k <= 8; k++) await touch("touchMove", from.map((f, i) => f + ((to[i] - f) * k) / 8));
    await touch("touchEnd", []);
    await mobile.locator("#chart-range").filter({ hasNotText: before }).waitFor();
    return range();
  };
  out.phone = { start: await range() };
  const kept = (await phone.cookies()).find((c) => c.name === "vitals_session");
  out.phone.cookie_days = kept ? (kept.expires - Date.now() / 1000) / 86400 : null;
  out.phone.swiped = await gesture([0.25], [0.75]); // a finger to the right: earlier times
  out.phone.pinched = await gesture([0.4, 0.6], [0.25, 0.75]); // fingers apart: zoom in
  out.phone.overflows = await mobile.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  await mobile.screenshot({ path: `${artifacts}/phone-patient.png`, fullPage: true });
  out.a11y.phone_patient = await accessibility(mobile);
  await mobile.goto(`${url}/#/patients`);
  await mobile.locator("#patients tbody tr").first().waitFor();
  out.phone.patients_overflow = await mobile.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  await mobile.screenshot({ path: `${artifacts}/phone-patients.png`, fullPage: true });
  await mobile.goto(`${url}/#/daily/p-1`);
  const localSteps = mobile.locator("section.daily[data-metric=step_count] .plot");
  await localSteps.locator("canvas").waitFor();
  out.phone.daily = { bars: Number(await localSteps.getAttribute("data-bars")), last: await mobile.locator("section.daily[data-metric=step_count] .last").textContent() };
  await mobile.getByRole("button", { name: "Hours (48)" }).click();
  await mobile.locator("button[aria-pressed=true]", { hasText: "Hours" }).waitFor();
  await localSteps.locator("canvas").waitFor();
  out.phone.daily.hourly_bars = Number(await localSteps.getAttribute("data-bars"));
  await mobile.screenshot({ path: `${artifacts}/phone-daily-kolkata.png`, fullPage: true });
  await phone.close();

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  out.signed_out = true;
});
