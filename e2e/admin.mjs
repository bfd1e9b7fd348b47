// The dashboard's admin view in Debian's chromium: system health, people, teams, tokens
// (revoking one), dead letters. Env: VITALS_URL, VITALS_USER, VITALS_PASSWORD, ARTIFACTS.
import { accessibility, artifacts, run, signIn, url, withAxe } from "./browser.mjs";

const out = { page_errors: [] };
await run(out, async (browser) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await withAxe(context);
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  await page.goto(`${url}/`);
  await signIn(page);
  await page.getByRole("link", { name: "Admin" }).click();
  await page.locator("#tokens tbody tr").first().waitFor();
  const cells = (id) => page.locator(`#${id} tbody tr`).evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  out.users = await cells("users");
  out.teams = await cells("teams");
  out.dead_letters = await cells("dead-letters");
  out.system_status = await page.locator("#system tbody td").first().textContent();
  await page.locator("#ingest-rate").filter({ hasText: "samples/s" }).waitFor();
  out.rate = await page.locator("#ingest-rate").textContent();
  await page.getByRole("button", { name: "Revoke token band" }).click();
  await page.locator("#admin-status").filter({ hasText: "Revoked" }).waitFor();
  out.revoke_status = await page.locator("#admin-status").textContent();
  out.tokens = await cells("tokens");
  await page.getByRole("button", { name: "Revoke device wristband w1" }).click();
  await page.locator("#admin-status").filter({ hasText: "Revoked device" }).waitFor();
  out.devices = await cells("devices");
  out.file_drop_text = await page.locator("main").innerText();
  await page.screenshot({ path: `${artifacts}/admin.png`, fullPage: true });
  out.a11y = await accessibility(page);
});
