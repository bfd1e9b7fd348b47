// Times the dashboard in Debian's chromium against a running server (see
// scripts/bench-dashboard): reload to the patients table, open a patient until its charts
// are drawn, switch the charts to a year. Env: VITALS_URL, VITALS_USER, VITALS_PASSWORD,
// VITALS_PATIENT, ROUNDS. Prints one JSON object per round.
import { launch, signIn, url } from "./browser.mjs";

const browser = await launch();
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.setDefaultTimeout(30000);
  await page.goto(`${url}/`);
  await signIn(page);
  await page.locator("#patients tbody tr").first().waitFor();
  const patient = encodeURIComponent(process.env.VITALS_PATIENT);
  for (let round = 1; round <= Number(process.env.ROUNDS || 5); round++) {
    const t0 = Date.now();
    await page.goto(`${url}/#/patients`);
    await page.reload();
    await page.locator("#patients tbody tr").first().waitFor();
    const t1 = Date.now();
    await page.goto(`${url}/#/patient/${patient}`);
    await page.locator("#charts figure[data-points] canvas").first().waitFor();
    const t2 = Date.now();
    const before = await page.locator("#chart-range").textContent();
    await page.getByRole("button", { name: "1 y" }).click();
    await page.locator("#chart-range").filter({ hasNotText: before }).waitFor();
    const t3 = Date.now();
    const points = await page.locator("#charts figure").first().getAttribute("data-points");
    console.log(JSON.stringify({ round, reload_to_patients_ms: t1 - t0, patient_charts_ms: t2 - t1, one_year_ms: t3 - t2, points_1y: Number(points) }));
  }
} finally {
  await browser.close();
}
