// Opens DOCS_URL (the /docs of a running edge) in headless Chromium and
// checks that the page lists every operation of OPENAPI (a file) and that
// no request leaves localhost. Exits non-zero on a failure.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const url = process.env.DOCS_URL;
const doc = JSON.parse(readFileSync(process.env.OPENAPI, 'utf8'));
const ops = [];
for (const item of Object.values(doc.paths)) {
  for (const op of Object.values(item)) if (op.operationId) ops.push(op);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
});
const outside = [];
const page = await browser.newPage();
page.on('request', (r) => {
  const h = new URL(r.url());
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(h.hostname) && !['data:', 'blob:'].includes(h.protocol)) outside.push(r.url());
});
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
await page.goto(url, { waitUntil: 'networkidle' });
await page.waitForSelector('[data-section-id^="operation/"]', { timeout: 30000 });
const text = await page.evaluate(() => document.body.innerText);
const missing = ops.filter((op) => !text.includes(op.summary)).map((op) => op.operationId);
await browser.close();
let failed = false;
if (outside.length) { console.error('requests left localhost:', outside); failed = true; }
if (missing.length) { console.error('operations not listed:', missing); failed = true; }
if (errors.length) { console.error('page errors:', errors); failed = true; }
console.log(`${ops.length - missing.length}/${ops.length} operations listed, ${outside.length} requests outside localhost`);
process.exit(failed ? 1 : 0);
