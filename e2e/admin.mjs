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
  // On a phone the wide tables scroll on their own; the page does not widen.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await withAxe(phone);
  const mobile = await phone.newPage();
  mobile.setDefaultTimeout(15000);
  await mobile.goto(`${url}/#/admin`);
  await signIn(mobile);
  await mobile.locator("#tokens tbody tr").first().waitFor();
  await mobile.locator(".scroll[role=region]").first().waitFor();
  out.phone_overflows = await mobile.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  out.phone_scrolling_tables = await mobile.locator(".scroll[role=region]").count();
  out.phone_a11y = await accessibility(mobile);
  await mobile.screenshot({ path: `${artifacts}/admin-phone.png`, fullPage: true });
});
