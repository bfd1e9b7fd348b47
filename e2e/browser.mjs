// Debian's chromium, headless, as this machine needs it (no sandbox as root, no GPU, no
// background connections: the network is closed).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

export const url = process.env.VITALS_URL;
export const artifacts = process.env.ARTIFACTS || "e2e-artifacts";
mkdirSync(artifacts, { recursive: true });

export function launch() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--no-first-run", "--disable-quic", "--disable-sync",
    ],
  });
}

// axe-core (pinned in package-lock.json) is added to every page of a context as an init
// script, which the page's Content-Security-Policy does not apply to.
const axePath = new URL("./node_modules/axe-core/axe.min.js", import.meta.url).pathname;

export async function withAxe(context) {
  await context.addInitScript({ path: axePath });
}

/** The WCAG 2.1 A and AA rules axe finds broken on the page as it is now: rule, impact and
 *  up to three offending elements each. */
export function accessibility(page) {
  return page.evaluate(async () => {
    const r = await globalThis.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    });
    return r.violations.map((v) => ({ rule: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
}

/** Signs in on the page's sign-in form (the user and password of the environment). */
export async function signIn(page, password = process.env.VITALS_PASSWORD) {
  await page.getByLabel("User name").fill(process.env.VITALS_USER);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Runs `body(browser)` and prints `out` (what it saw) as JSON on stdout; on a failure,
 *  prints what was seen so far and the text of the page to stderr, and fails. */
export async function run(out, body) {
  const browser = await launch();
  try {
    await body(browser);
  } catch (e) {
    const pages = browser.contexts().flatMap((c) => c.pages());
    const text = pages.length ? await pages[0].locator("main").innerText().catch(() => "") : "";
    console.error(JSON.stringify({ seen: out, main: text }));
    throw e;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
}
