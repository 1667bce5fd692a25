// A rolling restart as stompjs sees it: two nodes behind HAProxy; one drains
// (POST /api/drain on its operators' listener). Its client gets an ERROR saying
// the node restarts and a WebSocket close 1012, reconnects through HAProxy and
// lands on the other node; the drained node exits.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { startBroker, until, within } from './helpers.mjs';
import { startHaproxy } from './proxies.mjs';

const stops = [];
after(async () => {
  for (const stop of stops.reverse()) await stop();
});

const node = (drain) => startBroker(
  {
    STOMPEDE__SERVER__OPS_ADDR: '127.0.0.1:0',
    STOMPEDE__SERVER__DRAIN_GRACE_S: String(drain.grace),
    STOMPEDE__SERVER__DRAIN_SPREAD_S: String(drain.spread),
  },
  '[server]\ntrusted_proxies = ["127.0.0.1"]\nproxy_protocol = true\n',
);

async function connections(broker) {
  const res = await fetch(`http://${broker.ops}/api/stats`, {
    headers: { Authorization: `Basic ${Buffer.from('root:root-pw').toString('base64')}` },
  });
  return (await res.json()).connections.ws;
}

test('a drained node sends its stompjs clients through the balancer to another node', async () => {
  const a = await node({ grace: 1, spread: 1 });
  stops.push(() => a.stop());
  // The other node is not draining.
  const b = await node({ grace: 0, spread: 0 });
  stops.push(() => b.stop());
  const haproxy = await startHaproxy([
    { http: a.http, stomp: a.stomp },
    { http: b.http, stomp: b.stomp },
  ]);
  stops.push(() => haproxy.stop());
  const events = [];
  let closeCode;
  const client = new Client({
    webSocketFactory: () => {
      const ws = new WebSocket(haproxy.url, ['v12.stomp']);
      ws.on('close', (code) => { closeCode = code; });
      return ws;
    },
    reconnectDelay: 200,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: () => {},
  });
  client.onConnect = () => events.push('connected');
  client.onStompError = (frame) => events.push(`error: ${frame.headers.message}`);
  client.activate();
  stops.push(() => client.deactivate());
  await until('connected', () => events.includes('connected'));
  // Which node holds it: drain that one.
  const [onA, onB] = [await connections(a), await connections(b)];
  assert.equal(onA + onB, 1);
  const [drained, other] = onA === 1 ? [a, b] : [b, a];
  const res = await fetch(`http://${drained.ops}/api/drain`, {
    method: 'POST',
    headers: { Authorization: `Basic ${Buffer.from('root:root-pw').toString('base64')}` },
  });
  assert.equal(res.status, 202);
  // The ERROR, the 1012 close, and a new session on the other node.
  await until('reconnected', () => events.filter((e) => e === 'connected').length >= 2);
  assert.match(events[1], /^error: node restarting/);
  assert.equal(closeCode, 1012);
  let now = 0;
  await within(5000, 'the client on the other node', (async () => {
    while ((now = await connections(other)) !== 1) await new Promise((r) => setTimeout(r, 50));
  })());
  assert.equal(now, 1);
  // The drained node exits by itself once its connections are gone.
  const exit = await within(15000, 'the drained node exits', drained.exited);
  assert.equal(exit.code, 0);
});
