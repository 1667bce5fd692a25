// The live trading page at / in headless Chromium (Debian's package, driven by
// playwright-core): log in, watch quotes tick, trade, see errors, and stay private.
// Takes the screenshots in docs/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startBroker, freePort, stompClient, publishConfirmed } from './helpers.mjs';

const docs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs');
let broker;
let browser;

before(async () => {
  broker = await startBroker({ STOMPEDE__QUOTES__INTERVAL_MS: '300' });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // As root, without a sandbox; no background traffic (the network is closed).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
  await broker?.stop();
});

async function signIn(login, password, viewport = { width: 1280, height: 860 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`http://${broker.http}/`);
  await page.fill('#login-name', login);
  await page.fill('#login-pass', password);
  await page.click('#connect');
  await page.waitForSelector(`[data-testid=status]:has-text("connected as ${login}")`, { timeout: 10000 });
  return { context, page, problems };
}

async function order(page, { side = 'BUY', qty = '10', limit = null, symbol = 'AAPL' }) {
  await page.selectOption('#t-symbol', symbol);
  await page.check(`input[name=side][value=${side}]`);
  await page.fill('#t-qty', qty);
  await page.check(`input[name=kind][value=${limit === null ? 'market' : 'limit'}]`);
  if (limit !== null) await page.fill('#t-limit', limit);
  await page.click('#t-send');
}

test('a trader watches quotes tick, trades, sees errors; another trader sees none of it', async () => {
  const alice = await signIn('alice', 'alice-pw');
  const { page } = alice;
  await page.waitForSelector('tr[data-symbol=AAPL]', { timeout: 5000 });
  const firstTable = await page.textContent('#quotes');
  const firstTicks = Number(await page.getAttribute('#last-tick', 'data-ticks'));
  // At least two ticks after the first quotes change the table (volume grows every tick).
  await page.waitForFunction((n) => Number(document.getElementById('last-tick').dataset.ticks) >= n + 2, firstTicks, { timeout: 5000 });
  assert.notEqual(await page.textContent('#quotes'), firstTable);
  assert.equal(await page.locator('#quotes tr').count(), 6);
  assert.ok(await page.locator('tr[data-symbol=AAPL] svg.spark polyline').count() === 1, 'sparkline');
  assert.match(await page.textContent('[data-testid=status]'), /heart-beats on/);

  await order(page, { side: 'BUY', qty: '10' });
  await page.waitForSelector('#blotter tr[data-status=EXECUTED]', { timeout: 5000 });
  await order(page, { side: 'BUY', qty: '5', limit: '1.00' });
  await page.waitForSelector('#blotter tr[data-status=PENDING]', { timeout: 5000 });
  await order(page, { qty: '0' });
  await page.waitForSelector('[data-testid=trade-error]:has-text("quantity must be a positive integer")', { timeout: 5000 });
  await page.waitForSelector('#tape li', { timeout: 5000 });
  await page.screenshot({ path: path.join(docs, 'screenshot.png') });

  const bob = await signIn('bob', 'bob-pw');
  await bob.page.waitForSelector('tr[data-symbol=AAPL]', { timeout: 5000 });
  // Alice trades again while bob watches; then bob trades once himself.
  await order(page, { side: 'SELL', qty: '3' });
  await page.waitForFunction(() => document.querySelectorAll('#blotter tr').length === 3, null, { timeout: 5000 });
  await order(bob.page, { side: 'SELL', qty: '1' });
  await bob.page.waitForSelector('#blotter tr[data-status=EXECUTED]', { timeout: 5000 });
  const bobRows = await bob.page.locator('#blotter tr').allTextContents();
  assert.equal(bobRows.length, 1, `bob sees ${JSON.stringify(bobRows)}`);
  assert.match(bobRows[0], /SELL\s*1\s*AAPL/);
  assert.deepEqual(alice.problems, []);
  assert.deepEqual(bob.problems, []);
  await alice.context.close();
  await bob.context.close();
});

test('the page fits a phone-width screen and can watch anonymously', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.goto(`http://${broker.http}/`);
  await page.click('#anonymous');
  await page.waitForSelector('[data-testid=status]:has-text("connected as anonymous")', { timeout: 10000 });
  await page.waitForSelector('tr[data-symbol=AAPL]', { timeout: 5000 });
  assert.equal(await page.isVisible('#t-anon'), true);
  assert.equal(await page.isVisible('#trade-form'), false);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
  await page.screenshot({ path: path.join(docs, 'screenshot-phone.png'), fullPage: true });
  await context.close();
});

test('after losing its connection the page shows what it missed on the tape', async () => {
  const own = await startBroker(
    { STOMPEDE__QUOTES__INTERVAL_MS: '60000' },
    '[topics]\nhistory = ["/topic/stock-quotes", "/topic/market-activity"]\nhistory_max_messages = 3',
  );
  const context = await browser.newContext();
  const page = await context.newPage();
  const backend = await stompClient(own, {}, 'svc');
  const trade = (quantity) => publishConfirmed(backend, {
    destination: '/topic/market-activity',
    body: JSON.stringify({ side: 'BUY', quantity, symbol: 'AAPL', price: 1, timestamp: Date.now() }),
  });
  try {
    await page.goto(`http://${own.http}/`);
    await page.click('#anonymous');
    await page.waitForSelector('[data-testid=status]:has-text("connected as anonymous")', { timeout: 10000 });
    // The status shows before the broker has the page's SUBSCRIBE: trades until one
    // shows (the positive control).
    for (let i = 0; !(await page.isVisible('#tape li:has-text("BUY 100 AAPL")')); i += 1) {
      assert.ok(i < 50, 'no trade reached the page');
      await trade(100);
      await new Promise((r) => setTimeout(r, 100));
    }
    await trade(101);
    await page.waitForSelector('#tape li:has-text("BUY 101 AAPL")', { timeout: 5000 });
    // The page's socket drops; trades go on while it reconnects.
    await page.evaluate(() => client.forceDisconnect());
    await trade(102);
    await trade(103);
    await page.waitForSelector('#tape li:has-text("BUY 103 AAPL")', { timeout: 10000 });
    const tape = await page.$$eval('#tape li', (lis) => lis.map((li) => li.textContent));
    assert.deepEqual(
      tape.slice(0, 3).map((t) => t.match(/BUY (\d+) AAPL/)[1]),
      ['103', '102', '101'],
    );
    assert.equal(await page.isVisible('[data-testid=gap]'), false);
    // Away for longer than the history keeps (3 messages): the page says so.
    await page.evaluate(() => client.forceDisconnect());
    for (const q of [104, 105, 106, 107, 108]) await trade(q);
    await page.waitForSelector('#tape li:has-text("BUY 108 AAPL")', { timeout: 10000 });
    assert.match(await page.textContent('[data-testid=gap]'), /missed some updates/);
    const after = await page.$$eval('#tape li', (lis) => lis.map((li) => li.textContent.match(/BUY (\d+) AAPL/)[1]));
    assert.deepEqual(after.slice(0, 4), ['108', '107', '106', '103']);
  } finally {
    await backend.deactivate();
    await context.close();
    await own.stop();
  }
});

test('the page shows reconnecting and recovers by itself when the broker restarts', async () => {
  const port = await freePort();
  const env = { STOMPEDE__SERVER__HTTP_ADDR: `127.0.0.1:${port}`, STOMPEDE__QUOTES__INTERVAL_MS: '300' };
  let own = await startBroker(env);
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`http://${own.http}/`);
    await page.click('#anonymous');
    await page.waitForSelector('[data-testid=status]:has-text("connected as anonymous")', { timeout: 10000 });
    await own.stop();
    await page.waitForSelector('[data-testid=status][data-state=reconnecting]', { timeout: 10000 });
    own = await startBroker(env);
    await page.waitForSelector('[data-testid=status]:has-text("connected as anonymous")', { timeout: 20000 });
    // Quotes flow again after the restart.
    const ticks = Number(await page.getAttribute('#last-tick', 'data-ticks'));
    await page.waitForFunction((n) => Number(document.getElementById('last-tick').dataset.ticks) > n, ticks, { timeout: 5000 });
  } finally {
    await context.close();
    await own.stop();
  }
});
