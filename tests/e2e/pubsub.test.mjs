// stompjs against the real broker: connect, subscribe, publish, receipts,
// unsubscribe, wildcards, heart-beats, large bodies, and WebSocket <-> TCP.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, stompClient, collect, subscribed, publishConfirmed, tcpClient, within,
} from './helpers.mjs';

let broker;
before(async () => {
  broker = await startBroker({
    STOMPEDE__LIMITS__MAX_FRAME_BYTES: String(2 * 1024 * 1024),
    STOMPEDE__HEARTBEAT__SERVER_MS: '100',
  });
});
after(async () => broker?.stop());

test('connect negotiates STOMP 1.2 over the v12.stomp subprotocol', async () => {
  const c = await stompClient(broker);
  assert.equal(c.connectedFrame.headers.version, '1.2');
  assert.match(c.connectedFrame.headers.server, /^stompede\//);
  assert.equal(c.webSocket.protocol, 'v12.stomp');
  await c.deactivate();
});

test('subscribe, publish with headers, receive; receipts confirm', async () => {
  const sub = await stompClient(broker);
  const pub = await stompClient(broker);
  const { done } = collect(sub, '/topic/e2e.basic', 2);
  // Make sure the SUBSCRIBE is in place: a receipted no-op subscription after it.
  await subscribed(sub, '/topic/e2e.fence', () => {});
  await publishConfirmed(pub, {
    destination: '/topic/e2e.basic',
    body: JSON.stringify({ n: 1 }),
    headers: { 'content-type': 'application/json', 'x-request': 'r-1' },
  });
  await publishConfirmed(pub, { destination: '/topic/e2e.basic', body: 'two' });
  const [first, second] = await done();
  assert.deepEqual(JSON.parse(first.body), { n: 1 });
  assert.equal(first.headers['content-type'], 'application/json');
  assert.equal(first.headers['x-request'], 'r-1');
  assert.equal(first.headers.destination, '/topic/e2e.basic');
  assert.ok(first.headers['message-id']);
  assert.notEqual(first.headers['message-id'], second.headers['message-id']);
  assert.equal(second.body, 'two');
  await sub.deactivate();
  await pub.deactivate();
});

test('unsubscribe stops delivery while other subscriptions continue', async () => {
  const c = await stompClient(broker);
  const gone = [];
  const kept = [];
  const s1 = await subscribed(c, '/topic/e2e.unsub', (m) => gone.push(m.body));
  await subscribed(c, '/topic/e2e.kept', (m) => kept.push(m.body));
  await publishConfirmed(c, { destination: '/topic/e2e.unsub', body: 'before' });
  await within(5000, 'first message', (async () => { while (gone.length < 1) await new Promise((r) => setTimeout(r, 10)); })());
  s1.unsubscribe({ receipt: 'unsub-1' });
  await within(5000, 'unsubscribe receipt', new Promise((r) => c.watchForReceipt('unsub-1', r)));
  await publishConfirmed(c, { destination: '/topic/e2e.unsub', body: 'after' });
  await publishConfirmed(c, { destination: '/topic/e2e.kept', body: 'control' });
  await within(5000, 'control message', (async () => { while (kept.length < 1) await new Promise((r) => setTimeout(r, 10)); })());
  // The control was published after "after" on the same connection and has arrived.
  assert.deepEqual(gone, ['before']);
  assert.deepEqual(kept, ['control']);
  await c.deactivate();
});

test('wildcard subscriptions: * one word, # zero or more', async () => {
  const c = await stompClient(broker);
  const star = [];
  const hash = [];
  await subscribed(c, '/topic/e2e.wild.*', (m) => star.push(m.headers.destination));
  await subscribed(c, '/topic/e2e.wild.#', (m) => hash.push(m.headers.destination));
  for (const d of ['/topic/e2e.wild', '/topic/e2e.wild.a', '/topic/e2e.wild.a.b']) {
    await publishConfirmed(c, { destination: d, body: d });
  }
  await publishConfirmed(c, { destination: '/topic/e2e.wild.end', body: 'end' });
  await within(5000, 'wildcard deliveries', (async () => {
    while (star.length < 2 || hash.length < 4) await new Promise((r) => setTimeout(r, 10));
  })());
  assert.deepEqual(star, ['/topic/e2e.wild.a', '/topic/e2e.wild.end']);
  assert.deepEqual(hash, ['/topic/e2e.wild', '/topic/e2e.wild.a', '/topic/e2e.wild.a.b', '/topic/e2e.wild.end']);
  await c.deactivate();
});

test('heart-beats flow both ways and keep an idle connection open', async () => {
  const c = await stompClient(broker, { heartbeatIncoming: 100, heartbeatOutgoing: 100 });
  assert.equal(c.connectedFrame.headers['heart-beat'], '100,100');
  const received = [];
  await subscribed(c, '/topic/e2e.hb', (m) => received.push(m.body));
  await new Promise((r) => setTimeout(r, 1200));
  assert.ok(c.tap.heartbeats >= 5, `only ${c.tap.heartbeats} heart-beats in 1.2 s`);
  assert.ok(c.connected, 'stompjs kept the connection');
  // Still fully working after idling past several intervals.
  await publishConfirmed(c, { destination: '/topic/e2e.hb', body: 'alive' });
  await within(5000, 'message after idle', (async () => { while (!received.length) await new Promise((r) => setTimeout(r, 10)); })());
  assert.deepEqual(received, ['alive']);
  await c.deactivate();
});

test('a 1 MiB body arrives intact, whole and with splitLargeFrames', async () => {
  const sub = await stompClient(broker);
  const pub = await stompClient(broker, { splitLargeFrames: true, maxWebSocketChunkSize: 16 * 1024 });
  const big = 'abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil((1024 * 1024) / 26)).slice(0, 1024 * 1024);
  const { done } = collect(sub, '/topic/e2e.big', 2);
  await subscribed(sub, '/topic/e2e.fence2', () => {});
  await publishConfirmed(sub, { destination: '/topic/e2e.big', body: big });
  await publishConfirmed(pub, { destination: '/topic/e2e.big', body: big });
  const messages = await done('/topic/e2e.big', 10000);
  for (const m of messages) {
    assert.equal(m.body.length, 1024 * 1024);
    assert.equal(m.body, big);
  }
  await sub.deactivate();
  await pub.deactivate();
});

test('binary bodies round-trip', async () => {
  const c = await stompClient(broker);
  const { done } = collect(c, '/topic/e2e.binary', 1);
  await subscribed(c, '/topic/e2e.fence3', () => {});
  const bytes = new Uint8Array([0, 255, 1, 254, 0, 128]);
  await publishConfirmed(c, { destination: '/topic/e2e.binary', binaryBody: bytes });
  const [m] = await done();
  assert.deepEqual(Array.from(m.binaryBody), Array.from(bytes));
  await c.deactivate();
});

test('a WebSocket publisher reaches a TCP subscriber, and the other way round', async () => {
  const ws = await stompClient(broker);
  const tcp = await tcpClient(broker.stomp);
  tcp.send('SUBSCRIBE', { id: 'tcp-0', destination: '/topic/e2e.bridge', receipt: 'r1' });
  await tcp.expect('RECEIPT');
  await publishConfirmed(ws, { destination: '/topic/e2e.bridge', body: 'from the browser side' });
  const m = await tcp.expect('MESSAGE');
  assert.equal(m.body.toString(), 'from the browser side');
  assert.equal(m.headers.subscription, 'tcp-0');

  const { done } = collect(ws, '/topic/e2e.bridge2', 1);
  await subscribed(ws, '/topic/e2e.fence4', () => {});
  tcp.send('SEND', { destination: '/topic/e2e.bridge2', 'content-type': 'text/plain', receipt: 'r2' }, 'from a backend');
  await tcp.expect('RECEIPT');
  const [back] = await done();
  assert.equal(back.body, 'from a backend');
  assert.equal(back.headers['content-type'], 'text/plain');
  tcp.close();
  await ws.deactivate();
});

test('a stompjs client that breaks the protocol gets an ERROR; others carry on', async () => {
  const good = await stompClient(broker);
  const bad = await stompClient(broker);
  const error = new Promise((resolve) => { bad.onStompError = resolve; });
  bad.publish({ destination: '/nowhere/at-all', body: 'x' });
  const frame = await within(5000, 'ERROR frame', error);
  assert.match(frame.headers.message, /unknown destination "\/nowhere\/at-all"/);
  await bad.deactivate();
  const { done } = collect(good, '/topic/e2e.calm', 1);
  await subscribed(good, '/topic/e2e.fence5', () => {});
  await publishConfirmed(good, { destination: '/topic/e2e.calm', body: 'unaffected' });
  assert.equal((await done())[0].body, 'unaffected');
  await good.deactivate();
});
