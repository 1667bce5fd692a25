// Queues end to end with stompjs: competing consumers, acks, NACK to the DLQ,
// prefetch, ack modes, expiry, transactions (commit, abort, disconnect), and
// persistent messages across a restart.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startBroker, stompClient, subscribed, publishConfirmed, within } from './helpers.mjs';

let broker;
before(async () => {
  broker = await startBroker({ STOMPEDE__QUEUES__MAX_REDELIVERIES: '1' });
});
after(async () => broker?.stop());

const until = (what, cond) => within(5000, what, (async () => {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
})());

test('N messages over K competing consumers: none lost, none duplicated', async () => {
  const K = 3;
  const N = 300;
  const consumers = [];
  const got = [];
  for (let k = 0; k < K; k += 1) {
    const c = await stompClient(broker);
    got.push([]);
    await subscribed(c, '/queue/e2e.work', (m) => { got[k].push(m.body); m.ack(); }, { ack: 'client-individual', 'prefetch-count': '10' });
    consumers.push(c);
  }
  const producer = await stompClient(broker);
  for (let i = 0; i < N; i += 1) producer.publish({ destination: '/queue/e2e.work', body: `job-${i}` });
  await publishConfirmed(producer, { destination: '/queue/e2e.work', body: `job-${N}` });
  await until('all jobs', () => got.flat().length === N + 1);
  const all = got.flat();
  assert.equal(new Set(all).size, N + 1, 'no duplicates');
  for (const share of got) assert.ok(share.length > 0, `every consumer worked: ${got.map((g) => g.length)}`);
  for (const c of [...consumers, producer]) await c.deactivate();
});

test('NACK redelivers, then the DLQ takes the message; prefetch holds the rest', async () => {
  const c = await stompClient(broker);
  const dead = [];
  await subscribed(c, '/queue/e2e.poison.dlq', (m) => dead.push(m));
  const seen = [];
  await subscribed(c, '/queue/e2e.poison', (m) => { seen.push(m); m.nack(); }, { ack: 'client-individual', 'prefetch-count': '1' });
  await publishConfirmed(c, { destination: '/queue/e2e.poison', body: 'bad' });
  await until('dead letter', () => dead.length === 1);
  assert.deepEqual(seen.map((m) => [m.body, m.headers.redelivered]), [['bad', undefined], ['bad', 'true']]);
  assert.equal(dead[0].body, 'bad');
  assert.equal(dead[0].headers['original-destination'], '/queue/e2e.poison');
  await c.deactivate();
});

test('a committed transaction delivers its sends in order; an aborted one nothing', async () => {
  const c = await stompClient(broker);
  const got = [];
  await subscribed(c, '/queue/e2e.tx', (m) => got.push(m.body));
  const t1 = c.begin();
  c.publish({ destination: '/queue/e2e.tx', body: 'a', headers: { transaction: t1.id } });
  c.publish({ destination: '/queue/e2e.tx', body: 'b', headers: { transaction: t1.id } });
  const t2 = c.begin();
  c.publish({ destination: '/queue/e2e.tx', body: 'never', headers: { transaction: t2.id } });
  t2.abort();
  await publishConfirmed(c, { destination: '/queue/e2e.tx', body: 'control' });
  await until('control', () => got.length === 1);
  t1.commit();
  await publishConfirmed(c, { destination: '/queue/e2e.tx', body: 'end' });
  await until('committed messages', () => got.length === 4);
  assert.deepEqual(got, ['control', 'a', 'b', 'end']);
  await c.deactivate();
});

test('a persistent message survives a broker restart; a transient one does not', async () => {
  const env = { STOMPEDE__STORE__PATH: mkdtempSync(path.join(os.tmpdir(), 'stompede-e2e-store-')) };
  const first = await startBroker(env);
  let c = await stompClient(first);
  await publishConfirmed(c, { destination: '/queue/e2e.keep', body: 'transient' });
  await publishConfirmed(c, { destination: '/queue/e2e.keep', body: 'kept', headers: { persistent: 'true' } });
  await c.deactivate();
  await first.stop();

  const second = await startBroker(env);
  try {
    c = await stompClient(second);
    const got = [];
    await subscribed(c, '/queue/e2e.keep', (m) => got.push(m));
    await publishConfirmed(c, { destination: '/queue/e2e.keep', body: 'after restart' });
    await until('recovered and new message', () => got.length === 2);
    assert.deepEqual(
      got.map((m) => [m.body, m.headers.redelivered, m.headers.persistent]),
      [['kept', 'true', 'true'], ['after restart', undefined, undefined]],
    );
    await c.deactivate();
  } finally {
    await second.stop();
  }
});

test('client acks are cumulative; unacked messages come back, redelivered, when their consumer goes', async () => {
  const producer = await stompClient(broker);
  for (const body of ['m0', 'm1', 'm2']) await publishConfirmed(producer, { destination: '/queue/e2e.cumulative', body });
  const first = await stompClient(broker);
  const got = [];
  await subscribed(first, '/queue/e2e.cumulative', (m) => got.push(m), { ack: 'client', 'prefetch-count': '10' });
  await until('three deliveries', () => got.length === 3);
  assert.deepEqual(got.map((m) => m.body), ['m0', 'm1', 'm2']);
  // Acking m1 acks m0 too; m2 stays unacked.
  const acked = new Promise((resolve) => first.watchForReceipt('acked-m1', resolve));
  got[1].ack({ receipt: 'acked-m1' });
  await within(5000, 'ACK receipt', acked);
  await first.deactivate();

  const second = await stompClient(broker);
  const again = [];
  await subscribed(second, '/queue/e2e.cumulative', (m) => again.push(m));
  await publishConfirmed(producer, { destination: '/queue/e2e.cumulative', body: 'm3' });
  await until('redelivery and the new message', () => again.length === 2);
  assert.deepEqual(again.map((m) => [m.body, m.headers.redelivered]), [['m2', 'true'], ['m3', undefined]]);
  for (const c of [producer, second]) await c.deactivate();
});

test('a message past its ttl is dropped; a disconnect mid-transaction drops what it held', async () => {
  const c = await stompClient(broker);
  await publishConfirmed(c, { destination: '/queue/e2e.stale', body: 'stale', headers: { ttl: '100' } });
  const quitter = await stompClient(broker);
  const tx = quitter.begin();
  quitter.publish({ destination: '/queue/e2e.stale', body: 'held', headers: { transaction: tx.id } });
  await quitter.deactivate();
  await new Promise((r) => setTimeout(r, 250));
  await publishConfirmed(c, { destination: '/queue/e2e.stale', body: 'fresh' });
  const got = [];
  await subscribed(c, '/queue/e2e.stale', (m) => got.push(m.body));
  await until('the fresh message', () => got.length === 1);
  // Positive control first, then nothing else: a marker sent now is next.
  await publishConfirmed(c, { destination: '/queue/e2e.stale', body: 'marker' });
  await until('the marker', () => got.length === 2);
  assert.deepEqual(got, ['fresh', 'marker']);
  await c.deactivate();
});
