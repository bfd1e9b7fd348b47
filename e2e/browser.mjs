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
