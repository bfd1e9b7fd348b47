// Campaigns in Debian's chromium: a clinician records a patient's consent, makes a
// campaign from the form and follows who received it; the patient reads it in plain words
// on their messages page. axe-core on each page. Env: VITALS_URL, VITALS_USER (the
// clinician), VITALS_PASSWORD, VITALS_PATIENT_USER, ARTIFACTS.
import { accessibility, artifacts, run, signIn, url, withAxe } from "./browser.mjs";

const out = { console_errors: [], page_errors: [], a11y: {} };

async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await withAxe(context);
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  return page;
}

await run(out, async (browser) => {
  const page = await newPage(browser);
  await page.goto(`${url}/#/messages/p-1`);
  await signIn(page);
  await page.locator("#consent-status").waitFor();
  out.consent_before = await page.locator("#consent-status").textContent();
  out.email_disabled = await page.locator("#consent-email").isDisabled();
  await page.getByLabel("By text message (SMS)").check();
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("#consent-stop").waitFor();
  out.consent_after = await page.locator("#consent-status").textContent();
  out.a11y.messages_clinician = await accessibility(page);

  await page.getByRole("link", { name: "Campaigns" }).click();
  await page.locator("#campaign-form").waitFor();
  out.empty = await page.locator("#campaigns-empty").textContent();
  out.a11y.campaigns = await accessibility(page);
  await page.getByLabel("Name (shown to patients)").fill("Walking week");
  await page.getByLabel("Subject").fill("A walking week");
  await page.getByLabel("Message").fill("Ten minutes of walking after lunch, every day this week.");
  await page.getByLabel("Repeat").selectOption("7d");
  await page.getByRole("button", { name: "Create campaign" }).click();
  await page.locator("#campaign-facts").waitFor();
  out.hash = await page.evaluate(() => location.hash);
  // Sent on the server's next look at the clock; the page shows it once reloaded.
  for (const deadline = Date.now() + 15000; Date.now() < deadline;) {
    await page.reload();
    await page.locator("#campaign-facts").waitFor();
    if (await page.locator("tr[data-patient='p-1']").count()) break;
  }
  out.status = await page.locator("#cp-status").textContent();
  out.sends = await page.locator("table.sends tbody tr").evaluateAll((trs) => trs.map((tr) => [tr.dataset.patient, tr.dataset.state]));
  out.a11y.campaign = await accessibility(page);
  await page.screenshot({ path: `${artifacts}/campaign.png`, fullPage: true });

  // The patient, on their own messages page.
  const mine = await newPage(browser);
  await mine.goto(`${url}/#/messages/p-1`);
  process.env.VITALS_USER = process.env.VITALS_PATIENT_USER;
  await signIn(mine);
  await mine.locator("#messages li").waitFor();
  out.patient_status = await mine.locator("#consent-status").textContent();
  out.patient_messages = await mine.locator("#messages li").evaluateAll((lis) => lis.map((li) => li.innerText));
  out.a11y.messages_patient = await accessibility(mine);
  await mine.screenshot({ path: `${artifacts}/messages.png`, fullPage: true });
  await mine.getByRole("button", { name: "Stop all messages" }).click();
  await mine.locator("#consent-stop").waitFor({ state: "detached" });
  out.patient_stopped = await mine.locator("#consent-status").textContent();
});
