// Two stompede nodes over one nats-server, a stompjs client on each: topics, a
// user's trade confirmations and a queue work as on one broker. Interest spreads
// through NATS asynchronously, so probes are published until one arrives (the
// positive control) before anything is counted.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, startNats, ready, stompClient, subscribed, publishConfirmed, within,
} from './helpers.mjs';
import WebSocket from 'ws';
import { Resumer } from '../../docs/examples/resume.mjs';

let nats;
let nodes;
before(async () => {
  nats = await startNats();
  nodes = [];
  for (const name of ['e2e-a', 'e2e-b']) {
    nodes.push(await startBroker({
      STOMPEDE__CLUSTER__NATS_URL: nats.url,
      STOMPEDE__CLUSTER__NODE_NAME: name,
      STOMPEDE__QUOTES__INTERVAL_MS: '60000',
      STOMPEDE__TOPICS__HISTORY: '/topic/e2e.kept.*',
    }));
  }
  for (const node of nodes) await ready(node);
});
after(async () => {
  for (const node of nodes ?? []) await node.stop();
  nats?.stop();
});

/** Publishes `probe` through `send` until `seen()` says one arrived (10 s). */
async function untilRouted(send, seen) {
  await within(10000, 'a probe across the nodes', (async () => {
    while (!seen()) {
      await send();
      await new Promise((r) => setTimeout(r, 100));
    }
  })());
}

test('a wildcard subscriber on one node gets each message published on the other once, in order', async () => {
  const sub = await stompClient(nodes[0], {}, 'alice');
  const pub = await stompClient(nodes[1], {}, 'svc');
  const got = [];
  await subscribed(sub, '/topic/e2e.cluster.*', (m) => got.push(m));
  await untilRouted(
    () => publishConfirmed(pub, { destination: '/topic/e2e.cluster.x', body: 'probe' }),
    () => got.length > 0,
  );
  for (let i = 0; i < 20; i += 1) {
    await publishConfirmed(pub, { destination: '/topic/e2e.cluster.x', body: `m${i}`, headers: { 'x-seq': String(i) } });
  }
  await publishConfirmed(pub, { destination: '/topic/e2e.cluster.y', body: 'end' });
  await within(5000, 'the end marker', (async () => {
    while (!got.some((m) => m.body === 'end')) await new Promise((r) => setTimeout(r, 10));
  })());
  const numbered = got.filter((m) => m.body.startsWith('m'));
  assert.deepEqual(numbered.map((m) => m.body), Array.from({ length: 20 }, (_, i) => `m${i}`));
  assert.equal(numbered[3].headers['x-seq'], '3');
  assert.equal(numbered[3].headers.destination, '/topic/e2e.cluster.x');
  assert.match(numbered[3].headers['message-id'], /^e2e-b-/);
  await sub.deactivate();
  await pub.deactivate();
});

test('a trade sent through one node is confirmed to the trader on the other', async () => {
  const page = await stompClient(nodes[0], {}, 'alice');
  const desk = await stompClient(nodes[1], {}, 'alice');
  const confirmations = [];
  await subscribed(page, '/user/queue/trade-confirmation', (m) => confirmations.push(JSON.parse(m.body)));
  await untilRouted(
    async () => desk.publish({
      destination: '/app/trade',
      body: JSON.stringify({ symbol: 'NVDA', quantity: 4, orderType: 'BUY' }),
      headers: { 'content-type': 'application/json' },
    }),
    () => confirmations.length > 0,
  );
  assert.equal(confirmations[0].status, 'EXECUTED');
  assert.equal(confirmations[0].symbol, 'NVDA');
  assert.equal(confirmations[0].quantity, 4);
  await page.deactivate();
  await desk.deactivate();
});

test('consumers on both nodes share a queue: every message once', async () => {
  const a = await stompClient(nodes[0], {}, 'alice');
  const b = await stompClient(nodes[1], {}, 'bob');
  const bodies = [];
  const take = (m) => {
    bodies.push(m.body);
    m.ack();
  };
  await subscribed(a, '/queue/e2e.cluster.jobs', take, { ack: 'client-individual', 'prefetch-count': '3' });
  await subscribed(b, '/queue/e2e.cluster.jobs', take, { ack: 'client-individual', 'prefetch-count': '3' });
  const sender = await stompClient(nodes[1], {}, 'svc');
  for (let i = 0; i < 30; i += 1) {
    await publishConfirmed(sender, { destination: '/queue/e2e.cluster.jobs', body: `job-${i}` });
  }
  await within(15000, '30 jobs', (async () => {
    while (bodies.length < 30) await new Promise((r) => setTimeout(r, 10));
  })());
  // One more after all were acked: it alone arrives.
  await publishConfirmed(sender, { destination: '/queue/e2e.cluster.jobs', body: 'last' });
  await within(5000, 'the last job', (async () => {
    while (!bodies.includes('last')) await new Promise((r) => setTimeout(r, 10));
  })());
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    [...bodies].sort(),
    [...Array.from({ length: 30 }, (_, i) => `job-${i}`), 'last'].sort(),
  );
  for (const c of [a, b, sender]) await c.deactivate();
});

test('a page whose node went away resumes on the other node, offsets and all', async () => {
  const resumer = new Resumer();
  const got = [];
  let connects = 0;
  let turn = 0;
  // Each (re)connect goes to the next node: the first to A, the next to B.
  const page = await stompClient(nodes[0], {
    reconnectDelay: 1000,
    webSocketFactory: () => new WebSocket(nodes[turn++ % 2].url, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
  }, 'alice');
  const subscribeAll = () => {
    connects += 1;
    resumer.subscribe(page, '/topic/e2e.kept.x', (m) => got.push([Number(m.headers['x-stream-offset']), m.body]));
  };
  page.onConnect = subscribeAll;
  subscribeAll();
  await subscribed(page, '/topic/e2e.kept-fence', () => {});
  const backend = await stompClient(nodes[1], {}, 'svc');
  // The positive control: a live message from the other node, with its offset.
  await publishConfirmed(backend, { destination: '/topic/e2e.kept.x', body: 'k1' });
  await within(10000, 'k1', (async () => {
    while (got.length < 1) await new Promise((r) => setTimeout(r, 10));
  })());
  page.forceDisconnect();
  for (let i = 2; i <= 6; i += 1) {
    await publishConfirmed(backend, { destination: '/topic/e2e.kept.x', body: `k${i}` });
  }
  await within(10000, 'the reconnect to node B', (async () => {
    while (connects < 2) await new Promise((r) => setTimeout(r, 10));
  })());
  await publishConfirmed(backend, { destination: '/topic/e2e.kept.x', body: 'k7' });
  await within(10000, 'k7', (async () => {
    while (!got.some(([, b]) => b === 'k7')) await new Promise((r) => setTimeout(r, 10));
  })());
  assert.equal(turn, 2, 'the page came back through node B');
  const first = got[0][0];
  assert.deepEqual(got, Array.from({ length: 7 }, (_, i) => [first + i, `k${i + 1}`]));
  await page.deactivate();
  await backend.deactivate();
});
