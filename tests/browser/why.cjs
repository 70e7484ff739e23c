// The form without JavaScript in headless Chromium: a valid, an invalid and an out-of-range
// submission, each answered by the server's page; a screenshot of each.
// Usage: node why.cjs <form-url> <screenshot-prefix>
// Prints one JSON object: {"valid": {...}, "invalid": {...}, "outside": {...}} with what a
// person sees in each.
'use strict';
const { chromium } = require('playwright-core');

async function submit(page, url, values, screenshot) {
  await page.goto(url);
  for (const [label, value] of Object.entries(values)) {
    await page.getByLabel(label).fill(value);
  }
  await Promise.all([
    page.waitForNavigation(),
    page.getByRole('button', { name: 'Predict quality' }).click(),
  ]);
  await page.screenshot({ path: screenshot, fullPage: true });
  return {
    result: (await page.locator('#result').innerText()).trim(),
    bars: await page.locator('#contributions rect').count(),
    interval: await page.locator('#interval').count(),
    details: await page.locator('details#exact').count(),
    invalid: await page.locator('input[aria-invalid="true"]').evaluateAll((els) => els.map((e) => e.id)),
    values: await page.locator('input').evaluateAll((els) => Object.fromEntries(els.map((e) => [e.id, e.value]))),
    notes: await page.locator('.note').allInnerTexts(),
  };
}

async function main() {
  const [url, prefix] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  const valid = await submit(page, url, { 'Alcohol': '12.8', 'Sulphates': '0.75' }, prefix + '-valid.png');
  const invalid = await submit(page, url, { 'Alcohol': '12.8', 'Volatile acidity': '-1' }, prefix + '-invalid.png');
  const outside = await submit(page, url, { 'Alcohol': '16.5' }, prefix + '-outside.png');
  await browser.close();
  process.stdout.write(JSON.stringify({ valid, invalid, outside }) + '\n');
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
