// The ward board in Debian's chromium at 1920x1080 and 1280x800: 50 tiles that fit the
// screen, the alarm for open alerts (visual, and audible once switched on), acknowledging
// from the board. Env: VITALS_URL, VITALS_USER, VITALS_PASSWORD, VITALS_DEVICE_TOKEN,
// VITALS_NOW (ms), ARTIFACTS.
import { accessibility, artifacts, run, signIn, url, withAxe } from "./browser.mjs";

const out = { console_errors: [], page_errors: [], a11y: {}, sizes: {} };
const fit = (page) => page.evaluate(() => {
  const tiles = [...document.querySelectorAll("#board .btile")];
  const inside = (r) => r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
  return {
    tiles: tiles.length,
    inside: tiles.filter((t) => inside(t.getBoundingClientRect())).length,
    scrolls: document.documentElement.scrollWidth > innerWidth || document.documentElement.scrollHeight > innerHeight,
    ringing: tiles.filter((t) => t.classList.contains("ringing")).map((t) => t.dataset.patient),
    stale: tiles.filter((t) => t.classList.contains("stale")).length,
    // Every tile's name and values are drawn, not clipped away.
    clipped: tiles.filter((t) => t.scrollHeight > t.clientHeight + 1).length,
  };
});

await run(out, async (browser) => {
  for (const [w, h] of [[1920, 1080], [1280, 800]]) {
    const size = `${w}x${h}`;
    const context = await browser.newContext({ viewport: { width: w, height: h } });
    await withAxe(context);
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
    page.on("pageerror", (e) => out.page_errors.push(String(e)));
    await page.goto(`${url}/#/board`);
    await signIn(page);
    await page.locator("#board[data-tiles='50']").waitFor();
    out.sizes[size] = await fit(page);
    out.a11y[size] = await accessibility(page);
    await page.screenshot({ path: `${artifacts}/board-${size}.png` });
    if (w === 1920) {
      out.alarm = await page.locator("#board-alarm").textContent();
      // Sound on: a new alert beeps at the next refresh.
      await page.getByRole("button", { name: "Sound alarm: off" }).click();
      const sent = await fetch(`${url}/api/v1/samples`, {
        method: "POST",
        headers: { Authorization: `Bearer ${process.env.VITALS_DEVICE_TOKEN}`, "Content-Type": "application/json" },
        body: JSON.stringify([{ patient: "b-49", metric: "heart_rate", time: Number(process.env.VITALS_NOW), value: 190 }]),
      });
      out.sent = sent.status;
      await page.locator("#board[data-beeps='1']").waitFor({ timeout: 20000 });
      await page.locator(".btile.ringing[data-patient='b-49']").waitFor();
      // Acknowledged from the board by the signed-in carer.
      await page.getByRole("button", { name: "Acknowledge b-00" }).click();
      await page.locator(".btile.acked[data-patient='b-00']").waitFor();
      out.after_ack = await fit(page);
      out.acked_text = await page.locator(".btile[data-patient='b-00'] .by").textContent();
    }
    await context.close();
  }
});
