// Opens the server's address and its API page in headless Chromium, as a person would.
// Usage: node api-page.cjs <server-base-url> <screenshot.png>
// Prints one JSON object: {"landed": path, "form": n, "operations": n, "paths": [...],
// "title": ..., "problem": ..., "external": [...]}.
'use strict';
const { chromium } = require('playwright-core');

async function main() {
  const [base, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage();
  const external = [];
  page.on('request', (request) => {
    if (!request.url().startsWith('http://127.0.0.1')) external.push(request.url());
  });
  // The server's own address leads to the form.
  await page.goto(base + '/');
  const landed = new URL(page.url()).pathname;
  const form = await page.locator('form input').count();
  // The API page renders the document: one box per operation.
  await page.goto(base + '/api/openapi.json');
  await page.locator('article.op').first().waitFor({ timeout: 10000 });
  const operations = await page.locator('article.op').count();
  const paths = await page.locator('article.op h3').allInnerTexts();
  const title = await page.title();
  const problem = (await page.locator('#problem').innerText()).trim();
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: false });
  await browser.close();
  process.stdout.write(JSON.stringify({ landed, form, operations, paths, title, problem, external }) + '\n');
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
