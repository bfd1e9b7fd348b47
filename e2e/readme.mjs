// The README's screenshots, from the demo's synthetic patients: the patients overview and
// the patient page of a person with diabetes who wears a wristband (24 hours). Prints what
// it saw as JSON. Env: VITALS_URL, VITALS_USER, VITALS_PASSWORD, VITALS_PATIENT, ARTIFACTS.
import { artifacts, run, signIn, url } from "./browser.mjs";

const out = { page_errors: [] };
await run(out, async (browser) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, timezoneId: "UTC" });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  await page.goto(`${url}/`);
  await signIn(page);
  await page.locator("#patients tbody tr").first().waitFor();
  out.rows = await page.locator("#patients tbody tr").count();
  await page.screenshot({ path: `${artifacts}/readme-patients.png` });
  await page.goto(`${url}/#/patient/${encodeURIComponent(process.env.VITALS_PATIENT)}`);
  await page.locator("#charts figure[data-points]").first().waitFor();
  // The whole day, on a tall screen so that every panel shows.
  await page.setViewportSize({ width: 1280, height: 1500 });
  const before = await page.locator("#chart-range").textContent();
  await page.getByRole("button", { name: "24 h" }).click();
  await page.locator("#chart-range").filter({ hasNotText: before }).waitFor();
  out.panels = await page.locator("#charts figure").evaluateAll((fs) =>
    fs.map((f) => [f.dataset.metric, Number(f.dataset.points)]),
  );
  await page.mouse.move(0, 0);
  await page.screenshot({ path: `${artifacts}/readme-patient.png` });
});
