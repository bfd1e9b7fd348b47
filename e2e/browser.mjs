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
