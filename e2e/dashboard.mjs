// Drives the dashboard in Debian's chromium (headless) against a running Vitals server and
// prints what it saw as JSON; the Rust integration test `dashboard` starts the server with
// simulated data, runs this, and checks the output. Screenshots go to $ARTIFACTS.
// Env: VITALS_URL, VITALS_USER, VITALS_PASSWORD, ARTIFACTS.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const url = process.env.VITALS_URL;
const artifacts = process.env.ARTIFACTS || "e2e-artifacts";
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-quic", "--disable-sync",
  ],
});
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
  await page.screenshot({ path: `${artifacts}/patient.png`, fullPage: true });

  // A narrow screen (the 800x480 kiosk size) still shows the patients table.
  await page.setViewportSize({ width: 800, height: 480 });
  await page.goto(`${url}/#/patients`);
  await page.locator("#patients tbody tr").first().waitFor();
  await page.screenshot({ path: `${artifacts}/patients-800x480.png` });

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  out.signed_out = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
