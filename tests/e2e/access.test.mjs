// Access rules with stompjs: one [[auth.acl]] entry opens /queue/test to anonymous
// clients, and everything else keeps the built-in rules.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, stompClient, subscribed, publishConfirmed, until, within } from './helpers.mjs';

let broker;
before(async () => {
  broker = await startBroker(
    {},
    '[[auth.acl]]\nmatch = "/queue/test"\nsend = ["anonymous", "authenticated"]\nsubscribe = ["anonymous", "authenticated"]\n',
  );
});
after(async () => broker?.stop());

test('an anonymous client reads and writes the one queue a rule opens', async () => {
  const reader = await stompClient(broker, {}, null);
  const writer = await stompClient(broker, {}, null);
  const got = [];
  await subscribed(reader, '/queue/test', (m) => got.push(m.body));
  await publishConfirmed(writer, { destination: '/queue/test', body: 'hello from nobody' });
  await until('the queued message', () => got.length > 0);
  assert.deepEqual(got, ['hello from nobody']);
  await reader.deactivate();
  await writer.deactivate();
});

test('the built-in rules still close other queues to anonymous clients', async () => {
  const anon = await stompClient(broker, {}, null);
  const refused = new Promise((resolve) => { anon.onStompError = (f) => resolve(f.headers.message); });
  anon.subscribe('/queue/orders', () => {});
  assert.equal(
    await within(5000, 'the refusal', refused),
    'not allowed to SUBSCRIBE to /queue/orders',
  );
  await anon.deactivate();
});
