// The trading application end to end with real stompjs clients: log-in, quotes
// every interval (the latest at once, retained), market and limit orders,
// confirmations private to each trader, refusals, and rights.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, stompClient, subscribed, within } from './helpers.mjs';

let broker;
before(async () => {
  broker = await startBroker(
    { STOMPEDE__QUOTES__INTERVAL_MS: '200' },
    // ACME falls 5% a tick with no noise, so a limit BUY below it fills soon.
    `[[quotes.symbols]]
symbol = "AAPL"
price = 189.5
[[quotes.symbols]]
symbol = "ACME"
price = 100.0
volatility = 0.0
drift = -0.05
`,
  );
});
after(async () => broker?.stop());

/** Collects JSON bodies of a subscription; `next()` waits (bounded) for the next. */
async function inbox(client, destination) {
  const items = [];
  const waiters = [];
  await subscribed(client, destination, (m) => {
    const item = { body: JSON.parse(m.body), headers: m.headers, at: Date.now() };
    if (waiters.length) waiters.shift()(item);
    else items.push(item);
  });
  return {
    items,
    next(what = destination) {
      if (items.length) return Promise.resolve(items.shift());
      return within(5000, what, new Promise((resolve) => waiters.push(resolve)));
    },
  };
}

async function trader(login) {
  const c = await stompClient(broker, {}, login);
  c.confirmations = await inbox(c, '/user/queue/trade-confirmation');
  c.errors = await inbox(c, '/user/queue/errors');
  return c;
}

function trade(c, order) {
  c.publish({ destination: '/app/trade', body: JSON.stringify(order), headers: { 'content-type': 'application/json' } });
}

test('a wrong password is refused with "authentication failed"', async () => {
  await assert.rejects(
    stompClient(broker, { connectHeaders: { login: 'alice', passcode: 'wrong' } }, null),
    /authentication failed/,
  );
});

test('quotes: the latest at once (retained), then one tick per interval', async () => {
  const c = await stompClient(broker, {}, null);
  const quotes = await inbox(c, '/topic/stock-quotes');
  const first = await quotes.next('retained quote');
  assert.equal(first.headers.retained, 'true');
  assert.deepEqual(first.body.map((q) => q.symbol), ['AAPL', 'ACME']);
  for (const field of ['symbol', 'price', 'change', 'changePercent', 'volume', 'timestamp']) {
    assert.ok(field in first.body[0], field);
  }
  const ticks = [];
  while (ticks.length < 5) ticks.push(await quotes.next('tick'));
  const span = ticks[4].at - ticks[0].at; // four intervals of 200 ms
  assert.ok(span >= 500 && span <= 1600, `4 intervals took ${span} ms`);
  assert.ok(ticks.every((t) => t.headers.retained === undefined));
  await c.deactivate();
});

test('a market order executes; both of alice\'s sessions see it, bob does not', async () => {
  const alice = await trader('alice');
  const aliceTab = await trader('alice');
  const bob = await trader('bob');
  trade(alice, { symbol: 'AAPL', quantity: 7, orderType: 'BUY' });
  for (const c of [alice, aliceTab]) {
    const { body } = await c.confirmations.next('alice confirmation');
    assert.equal(body.status, 'EXECUTED');
    assert.equal(body.quantity, 7);
    assert.equal(body.orderType, 'BUY');
    assert.equal(typeof body.executedPrice, 'number');
  }
  // Bob's first confirmation is his own.
  trade(bob, { symbol: 'AAPL', quantity: 2, orderType: 'SELL' });
  const own = await bob.confirmations.next('bob confirmation');
  assert.equal(own.body.quantity, 2);
  assert.equal(own.body.orderType, 'SELL');
  assert.equal(bob.confirmations.items.length, 0);
  for (const c of [alice, aliceTab, bob]) await c.deactivate();
});

test('a limit order goes PENDING, then EXECUTED when the price crosses', async () => {
  const alice = await trader('alice');
  const quote = await inbox(alice, '/topic/stock-quotes.ACME');
  const now = (await quote.next('ACME quote')).body.price;
  const limit = Math.round(now * 0.9 * 100) / 100;
  trade(alice, { symbol: 'ACME', quantity: 3, orderType: 'BUY', limitPrice: limit });
  const pending = await alice.confirmations.next('PENDING');
  assert.equal(pending.body.status, 'PENDING');
  const done = await alice.confirmations.next('EXECUTED');
  assert.equal(done.body.status, 'EXECUTED');
  assert.equal(done.body.tradeId, pending.body.tradeId);
  assert.ok(done.body.executedPrice <= limit);
  await alice.deactivate();
});

test('a bad order is answered on /user/queue/errors and the session stays open', async () => {
  const alice = await trader('alice');
  trade(alice, { symbol: 'AAPL', quantity: -1, orderType: 'BUY' });
  const err = await alice.errors.next('error');
  assert.equal(err.body.error, 'INVALID_QUANTITY');
  trade(alice, { symbol: 'NOPE', quantity: 1, orderType: 'BUY' });
  assert.equal((await alice.errors.next('error')).body.error, 'UNKNOWN_SYMBOL');
  assert.ok(alice.connected);
  trade(alice, { symbol: 'AAPL', quantity: 1, orderType: 'SELL' });
  assert.equal((await alice.confirmations.next()).body.status, 'EXECUTED');
  await alice.deactivate();
});

test('an anonymous SEND to /app/trade gets an ERROR frame', async () => {
  const anon = await stompClient(broker, {}, null);
  const error = new Promise((resolve) => { anon.onStompError = resolve; });
  trade(anon, { symbol: 'AAPL', quantity: 1, orderType: 'BUY' });
  const frame = await within(5000, 'ERROR', error);
  assert.match(frame.headers.message, /not allowed to SEND to \/app\/trade/);
  await anon.deactivate();
});
