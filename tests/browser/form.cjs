// Drives the prediction form in headless Chromium: fills it, submits it, and reports what a
// person would see. Usage: node form.cjs <form-url> <screenshot.png>
// Prints one JSON object: {"result": ..., "error": ..., "labels": n, "external": [...],
// "feedback": ..., "askedForKey": ..., "feedbackUrls": [...]}.
'use strict';
const { chromium } = require('playwright-core');

async function main() {
  const [url, screenshot] = process.argv.slice(2);
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
  await page.goto(url);
  // Every input is reachable by its visible label.
  const labels = await page.locator('label').count();
  await page.getByLabel('Alcohol').fill('12.8');
  await page.getByLabel('Sulphates').fill('0.75');
  await page.getByRole('button', { name: 'Predict quality' }).click();
  await page.locator('#result.ok #prediction-value').waitFor({ timeout: 10000 });
  const result = (await page.locator('#result').innerText()).trim();
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  // The tasted quality goes back with the prediction's id and the page's key.
  const feedbackUrls = [];
  page.on('request', (request) => {
    if (request.url().includes('/api/feedback')) feedbackUrls.push(request.url());
  });
  await page.getByLabel('Tasted quality').fill('6');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('#feedback-result', { hasText: 'Thank you' }).waitFor({ timeout: 10000 });
  const feedback = (await page.locator('#feedback-result').innerText()).trim();
  // As under Azure Functions, where the feedback function refuses the page's key with a bare
  // 401: the page asks for the labelling key and sends it with the next try.
  await page.route('**/api/feedback**', (route) => route.fulfill({ status: 401, body: '' }), { times: 1 });
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByLabel('Labelling key').waitFor({ timeout: 10000 });
  const askedForKey = (await page.locator('#feedback-result').innerText()).trim();
  await page.getByLabel('Labelling key').fill('labelling key');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('#feedback-result', { hasText: 'Thank you' }).waitFor({ timeout: 10000 });
  // An empty field is reported inline, not sent.
  await page.getByLabel('Density').fill('');
  await page.getByRole('button', { name: 'Predict quality' }).click();
  await page.locator('#result.error').waitFor({ timeout: 10000 });
  const error = (await page.locator('#result').innerText()).trim();
  await browser.close();
  process.stdout.write(JSON.stringify({ result, error, labels, external, feedback, askedForKey, feedbackUrls }) + '\n');
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
