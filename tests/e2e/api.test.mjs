// POST /api/publish from a backend (Node's fetch, as a request handler would call
// it) reaches a browser-like stompjs subscriber; a refusal is a JSON error.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, stompClient, subscribed, until } from './helpers.mjs';

let broker;
before(async () => {
  broker = await startBroker();
});
after(async () => broker?.stop());

const basic = (login, password) =>
  `Basic ${Buffer.from(`${login}:${password}`).toString('base64')}`;

test('a backend publishes over HTTP and a stompjs subscriber gets it', async () => {
  const reader = await stompClient(broker, {}, null);
  const got = [];
  await subscribed(reader, '/topic/alerts', (m) => got.push([m.body, m.headers['x-severity']]));
  const res = await fetch(`http://${broker.http}/api/publish`, {
    method: 'POST',
    headers: { Authorization: basic('svc', 'svc-pw'), 'Content-Type': 'application/json' },
    body: JSON.stringify({
      destination: '/topic/alerts',
      body: 'disk almost full',
      headers: { 'x-severity': 'warning' },
    }),
  });
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), {});
  await until('the subscriber gets the alert', () => got.length > 0);
  assert.deepEqual(got, [['disk almost full', 'warning']]);
  await reader.deactivate();
});

test('a trader may not publish to a topic over HTTP either', async () => {
  const res = await fetch(`http://${broker.http}/api/publish?destination=/topic/alerts`, {
    method: 'POST',
    headers: { Authorization: basic('alice', 'alice-pw'), 'Content-Type': 'text/plain' },
    body: 'not mine to send',
  });
  assert.equal(res.status, 403);
  const error = await res.json();
  assert.equal(error.error, 'forbidden');
  assert.match(error.message, /not allowed to SEND to \/topic\/alerts/);
});
