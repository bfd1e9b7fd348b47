// Drives the dashboard in Debian's chromium (headless) against a running Vitals server and
// prints what it saw as JSON; the Rust integration test `dashboard` starts the server with
// simulated data, runs this, and checks the output. Screenshots go to $ARTIFACTS.
// Env: VITALS_URL, VITALS_USER, VITALS_PASSWORD, VITALS_KIOSK_PATIENT, ARTIFACTS.
import { artifacts, launch, url } from "./browser.mjs";

const browser = await launch();
const out = { console_errors: [], page_errors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
  page.on("pageerror", (e) => out.page_errors.push(String(e)));

  await page.goto(`${url}/`);
  await page.getByLabel("User name").fill(process.env.VITALS_USER);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  out.wrong_password_message = await page.locator("#signin-error").filter({ hasText: /./ }).textContent();

  await page.getByLabel("Password").fill(process.env.VITALS_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#patients tbody tr").first().waitFor();
  out.who = await page.locator("#who").textContent();
  out.admin_link_hidden = await page.locator("#admin-link").isHidden();
  out.rows = await page.locator("#patients tbody tr").evaluateAll((trs) =>
    trs.map((tr) => ({ patient: tr.dataset.patient, stale: tr.classList.contains("stale"), cells: [...tr.cells].map((c) => c.textContent) })));
  const cookies = await context.cookies();
  out.cookie = cookies.filter((c) => c.name === "vitals_session").map((c) => ({ httpOnly: c.httpOnly, sameSite: c.sameSite }))[0] || null;
  await page.screenshot({ path: `${artifacts}/patients.png`, fullPage: true });

  // Keyboard: the first patient link is reachable by Tab and opens with Enter.
  await page.locator("#patients tbody a").first().focus();
  await page.keyboard.press("Enter");
  await page.locator("#latest tbody tr").first().waitFor();
  out.patient_title = await page.locator("main h1").textContent();
  out.url_after_open = page.url();
  out.latest_rows = await page.locator("#latest tbody tr").count();
  // Charts: one panel per sensor on one time axis, downsampled on the server.
  const points = () => page.locator("canvas.panel").evaluateAll((cs) =>
    Object.fromEntries(cs.map((c) => [c.dataset.metric, Number(c.dataset.points)])));
  await page.locator("canvas.panel[data-points]").first().waitFor();
  out.chart_6h = await points();
  out.chart_alerts = Number(await page.locator("#charts").getAttribute("data-alerts"));
  await page.screenshot({ path: `${artifacts}/patient.png`, fullPage: true });
  // Live: a device sends a reading; the server's event redraws the charts.
  const rangeLive = await page.locator("#chart-range").textContent();
  const sent = await fetch(`${url}/api/v1/samples`, {
    method: "POST",
    headers: { Authorization: `Bearer ${process.env.VITALS_DEVICE_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify([{ patient: "p-1", metric: "heart_rate", time: Number(process.env.VITALS_NOW) - 20000, value: 74 }]),
  });
  out.live_sent = sent.status;
  await page.locator("#chart-range").filter({ hasNotText: rangeLive }).waitFor();
  out.chart_live = await points();
  // The range line is written once the new data is drawn.
  const range6h = await page.locator("#chart-range").textContent();
  await page.getByRole("button", { name: "24 h" }).click();
  await page.locator("#chart-range").filter({ hasNotText: range6h }).waitFor();
  out.chart_24h = await points();
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
  out.glucose_canvas = await page.locator("canvas.panel.tall").evaluateAll((cs) => cs.map((c) => ({ ...c.dataset })));
  await page.screenshot({ path: `${artifacts}/glucose.png`, fullPage: true });
  await page.getByLabel("p-3").check();
  await page.locator("#glucose-stats th", { hasText: "p-3" }).waitFor();
  out.glucose_compared = await table();

  // Daily metrics: steps as daily bars, then hourly.
  await page.goto(`${url}/#/daily/p-1`);
  await page.locator("section.daily[data-metric=step_count] canvas").waitFor();
  out.daily = {
    bars: Number(await page.locator("section.daily[data-metric=step_count] canvas").getAttribute("data-bars")),
    last: await page.locator("section.daily[data-metric=step_count] .last").textContent(),
  };
  await page.getByRole("button", { name: "Hours (48)" }).click();
  await page.locator("button[aria-pressed=true]", { hasText: "Hours" }).waitFor();
  await page.locator("section.daily[data-metric=step_count] canvas").waitFor();
  out.daily.hourly_bars = Number(await page.locator("section.daily[data-metric=step_count] canvas").getAttribute("data-bars"));
  await page.screenshot({ path: `${artifacts}/daily.png`, fullPage: true });

  // The alerts inbox: acknowledge the first alert with one click; it leaves the inbox.
  await page.getByRole("link", { name: "Alerts" }).click();
  await page.locator("#alerts").waitFor();
  out.inbox_before = await page.locator("#alerts tbody tr").count();
  out.inbox_patients = await page.locator("#alerts tbody tr td:nth-child(2)").allTextContents();
  await page.screenshot({ path: `${artifacts}/alerts.png`, fullPage: true });
  await page.locator("#alerts tbody tr").first().getByRole("button", { name: /^Acknowledge/ }).click();
  await page.locator("#alerts-status").filter({ hasText: "Acknowledged" }).waitFor();
  out.ack_status = await page.locator("#alerts-status").textContent();
  out.inbox_after = await page.locator("#alerts tbody tr").count();
  await page.getByRole("link", { name: "History" }).click();
  await page.locator("#alerts tbody tr").first().waitFor();
  out.history_states = await page.locator("#alerts tbody tr td:nth-child(5)").allTextContents();
  await page.getByRole("link", { name: "Rules" }).click();
  await page.locator("#rules li").first().waitFor();
  out.rules = await page.locator("#rules li strong").allTextContents();

  // The kiosk at 800x480: big numbers, a banner, a trend, nothing that needs a mouse.
  await page.setViewportSize({ width: 800, height: 480 });
  await page.goto(`${url}/#/kiosk/${encodeURIComponent(process.env.VITALS_KIOSK_PATIENT)}`);
  await page.locator("#kiosk-banner").waitFor();
  out.kiosk = {
    banner: await page.locator("#kiosk-banner").textContent(),
    heart_rate: await page.locator("#kiosk-heart_rate").textContent(),
    trend_points: Number(await page.locator("canvas").getAttribute("data-points")),
    heart_rate_font_px: await page.locator("#kiosk-heart_rate").evaluate((e) => parseFloat(getComputedStyle(e).fontSize)),
    overflows: await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth),
    header_hidden: await page.locator("header.bar").isHidden(),
  };
  await page.screenshot({ path: `${artifacts}/kiosk-800x480.png` });

  // A narrow screen (the 800x480 kiosk size) still shows the patients table.
  await page.setViewportSize({ width: 800, height: 480 });
  await page.goto(`${url}/#/patients`);
  await page.locator("#patients tbody tr").first().waitFor();
  await page.screenshot({ path: `${artifacts}/patients-800x480.png` });

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  out.signed_out = true;
} catch (e) {
  // What was seen up to the failure, and the page's text, for the test's message.
  const pages = browser.contexts().flatMap((c) => c.pages());
  const text = pages.length ? await pages[0].locator("main").innerText().catch(() => "") : "";
  console.error(JSON.stringify({ seen: out, main: text }));
  throw e;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
