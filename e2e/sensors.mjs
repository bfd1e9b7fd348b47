// The patient page of a wristband wearer (the epilepsy platform's view): heart rate, RR
// intervals, skin temperature, electrodermal activity and motion on one time axis, a
// labelled seizure shaded and listed; choosing it zooms every chart to it. Prints what it
// saw as JSON. Env: VITALS_URL, VITALS_USER, VITALS_PASSWORD, VITALS_PATIENT, ARTIFACTS.
import { writeFileSync } from "node:fs";
import { accessibility, artifacts, run, signIn, url, withAxe } from "./browser.mjs";

const out = { page_errors: [] };
await run(out, async (browser) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1100 }, timezoneId: "UTC" });
  await withAxe(context);
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  await page.goto(`${url}/#/patient/${encodeURIComponent(process.env.VITALS_PATIENT)}`);
  await signIn(page);
  await page.locator("#charts figure[data-points]").first().waitFor();
  const panels = () => page.locator("#charts figure").evaluateAll((fs) => fs.map((f) => [f.dataset.metric, Number(f.dataset.points)]));
  const range = () => page.locator("#charts").evaluate((c) => [Number(c.dataset.from), Number(c.dataset.to)]);
  out.panels = await panels();
  out.seizure_watch = [await page.locator("#seizure-watch").getAttribute("data-watch"), await page.locator("#seizure-watch").textContent()];
  out.captions = await page.locator("#charts figcaption strong").allTextContents();
  out.canvases = await page.locator("#charts canvas").count();
  out.bucket_ms = Number(await page.locator("#charts").getAttribute("data-bucket-ms"));
  out.episodes = await page.locator("#chart-episodes li").allTextContents();
  await page.getByRole("button", { name: /^Show all/ }).click();
  out.all_episodes = await page.locator("#chart-episodes li").count();
  // The cursor at the newest data: the motion panel reads out its three axes.
  const over = await page.locator("figure[data-metric=motion] .u-over").boundingBox();
  await page.mouse.move(over.x + over.width - 2, over.y + over.height / 2);
  await page.locator("figure[data-metric=motion] .readout").filter({ hasText: / z / }).waitFor();
  out.motion_readout = await page.locator("figure[data-metric=motion] .readout").textContent();
  await page.mouse.move(0, 0);
  await page.screenshot({ path: `${artifacts}/sensors.png`, fullPage: true });
  out.a11y = await accessibility(page);
  // Choosing the seizure in the list zooms to it (with a margin on each side).
  const before = await page.locator("#chart-range").textContent();
  await page.locator("#chart-episodes li.ev button").first().click();
  await page.locator("#chart-range").filter({ hasNotText: before }).waitFor();
  out.zoomed = await range();
  out.zoomed_panels = await panels();
  out.zoomed_bucket_ms = Number(await page.locator("#charts").getAttribute("data-bucket-ms"));
  await page.screenshot({ path: `${artifacts}/sensors-seizure.png`, fullPage: true });
  // The seizure diary: the recorded seizure, its CSV download, one printed page.
  await page.goto(`${url}/#/diary/${encodeURIComponent(process.env.VITALS_PATIENT)}`);
  await page.locator("#diary-counts").waitFor();
  out.diary_rows = await page.locator("#diary tbody tr").evaluateAll((trs) => trs.map((tr) => [tr.dataset.status, ...[...tr.cells].map((c) => c.textContent)]));
  out.diary_counts = await page.locator("#diary-counts").textContent();
  const csvHref = await page.getByRole("link", { name: "Download CSV" }).getAttribute("href");
  out.diary_csv = await page.evaluate(async (h) => (await fetch(h)).text(), csvHref);
  out.diary_a11y = await accessibility(page);
  await page.screenshot({ path: `${artifacts}/seizure-diary.png`, fullPage: true });
  await page.emulateMedia({ media: "print" });
  const pdf = await page.pdf({ format: "A4" });
  await page.emulateMedia({ media: "screen" });
  writeFileSync(`${artifacts}/seizure-diary.pdf`, pdf);
  out.diary_pdf_pages = (pdf.toString("latin1").match(/\/Type\s*\/Page[^s]/g) || []).length;
  // The same page in the dark scheme (the system's preference): its own colours, still
  // within WCAG AA contrast.
  const dark = await browser.newContext({ viewport: { width: 1280, height: 1100 }, timezoneId: "UTC", colorScheme: "dark" });
  await withAxe(dark);
  const night = await dark.newPage();
  night.setDefaultTimeout(15000);
  await night.goto(`${url}/#/patient/${encodeURIComponent(process.env.VITALS_PATIENT)}`);
  await signIn(night);
  await night.locator("#charts figure[data-points]").first().waitFor();
  out.dark_background = await night.evaluate(() => getComputedStyle(document.body).backgroundColor);
  out.dark_a11y = await accessibility(night);
  await night.screenshot({ path: `${artifacts}/sensors-dark.png`, fullPage: true });
  // In Berlin, 90 days back cross the end of summer time: the glucose page tells the
  // server where the offset changes.
  const berlin = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: "Europe/Berlin" });
  const b = await berlin.newPage();
  b.setDefaultTimeout(15000);
  await b.goto(`${url}/#/glucose/${encodeURIComponent(process.env.VITALS_PATIENT)}`);
  await signIn(b);
  await b.locator("#glucose-stats").waitFor();
  const asked = b.waitForRequest((r) => r.url().includes("/glucose?"));
  await b.getByRole("button", { name: "90 days" }).click();
  out.berlin_glucose_query = new URL((await asked).url()).search;
});
