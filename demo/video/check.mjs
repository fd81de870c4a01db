// Drives headless Chromium (Debian's, through playwright-core) to the demo's
// player page, waits until the video has played SECONDS of media, saves a
// screenshot and prints one JSON line:
//   {"start":..,"end":..,"advanced":..,"segments":..,"errors":[..],"page_errors":[..]}
// Exit status: 0 it played SECONDS with no player or page error, 1 it did not,
// 2 bad usage or no browser.
//
// node check.mjs URL SCREENSHOT.png [SECONDS] [TIMEOUT_SECONDS]
import { chromium } from 'playwright-core';

const [url, screenshot, secondsArg, timeoutArg] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node check.mjs URL SCREENSHOT.png [SECONDS] [TIMEOUT_SECONDS]');
  process.exit(2);
}
const seconds = Number(secondsArg || 3);
const timeoutMs = Number(timeoutArg || 30) * 1000;

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // Nothing but the page's own origin: a closed network refuses the rest.
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
} catch (e) {
  console.error(`check.mjs: cannot start Chromium: ${e.message}`);
  process.exit(2);
}

const pageErrors = [];
const result = { start: null, end: null, advanced: 0, segments: 0, errors: [], page_errors: pageErrors };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 720 } });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(url, { timeout: timeoutMs });
  const deadline = Date.now() + timeoutMs;
  const now = () => page.evaluate(() => document.getElementById('video').currentTime);
  // Playing at all first, then SECONDS of media on from there.
  while ((await now()) <= 0 && Date.now() < deadline) await page.waitForTimeout(100);
  result.start = await now();
  while ((await now()) - result.start < seconds && Date.now() < deadline) await page.waitForTimeout(100);
  result.end = await now();
  result.advanced = result.end - result.start;
  const demo = await page.evaluate(() => window.h3mDemo);
  result.errors = demo.errors;
  result.segments = demo.segments;
  // Let the status frame show the latest state before the picture.
  await page.waitForTimeout(600);
  await page.screenshot({ path: screenshot });
} catch (e) {
  pageErrors.push(`check.mjs: ${e.message}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
const ok = result.start > 0 && result.advanced >= seconds && result.errors.length === 0 && pageErrors.length === 0;
process.exit(ok ? 0 : 1);
