// A rolling restart under load, measured: a three-node cluster (one nats-server
// with JetStream) behind HAProxy (docs/deployment/haproxy.cfg), restarted node
// by node (POST /api/drain, wait for the exit, start again, wait until ready)
// while stompjs clients work through the balancer:
//
//   - publishers SEND with receipts, to a queue and to a kept topic;
//   - queue consumers ack each message (client-individual);
//   - topic subscribers read the kept topic and, after each reconnect, resume
//     with x-stream-offset from the last offset they saw.
//
// Reported per drain mode (spread over server.drain_spread_s, and all at once):
// receipted queue messages never delivered (must be 0), receipted kept-topic
// messages a subscriber never saw (must be 0), duplicates, the longest time a
// client had no connection, and the peak rate of reconnections one remaining
// node took in any one second.
//
//   benches/compare.sh rolling          # builds the release binary, then runs this
//   STOMPEDE_BIN=target/release/stompede node benches/rolling.mjs
//
// Loopback only; every wait is bounded. Knobs: SUBSCRIBERS (100), CONSUMERS (3),
// PUBLISHERS (2), RATE (messages per second per publisher and destination, 50),
// SPREAD_S (10), GRACE_S (2).

import {
  Client, WebSocket, freePort, ready, startBroker, startNats, within,
} from '../tests/e2e/helpers.mjs';
import { startHaproxy } from '../tests/e2e/proxies.mjs';

const SUBSCRIBERS = Number(process.env.SUBSCRIBERS ?? 100);
const CONSUMERS = Number(process.env.CONSUMERS ?? 3);
const PUBLISHERS = Number(process.env.PUBLISHERS ?? 2);
const RATE = Number(process.env.RATE ?? 50);
const SPREAD_S = Number(process.env.SPREAD_S ?? 10);
const GRACE_S = Number(process.env.GRACE_S ?? 2);
const ROOT = `Basic ${Buffer.from('root:root-pw').toString('base64')}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One node: fixed ports (HAProxy's configuration names them), restartable. */
async function nodeOn(nats, name, spread) {
  const ports = { http: await freePort(), stomp: await freePort(), ops: await freePort() };
  const store = `${process.env.TMPDIR ?? '/tmp'}/stompede-rolling-${process.pid}-${name}-${spread}`;
  const env = {
    STOMPEDE__SERVER__HTTP_ADDR: `127.0.0.1:${ports.http}`,
    STOMPEDE__SERVER__STOMP_ADDR: `127.0.0.1:${ports.stomp}`,
    STOMPEDE__SERVER__OPS_ADDR: `127.0.0.1:${ports.ops}`,
    STOMPEDE__SERVER__DRAIN_GRACE_S: String(GRACE_S),
    STOMPEDE__SERVER__DRAIN_SPREAD_S: String(spread),
    STOMPEDE__STORE__PATH: store,
    STOMPEDE__CLUSTER__NATS_URL: nats.url,
    STOMPEDE__CLUSTER__NODE_NAME: `node-${name}`,
    STOMPEDE__TRADING__ENABLED: 'false',
    STOMPEDE__LOG__FILTER: 'warn,stompede::server=info',
  };
  const toml = '[server]\ntrusted_proxies = ["127.0.0.1"]\nproxy_protocol = true\n'
    + '[topics]\nhistory = ["/topic/kept"]\nhistory_max_messages = 100000\n'
    + '[limits]\nmax_connections_per_ip = 100000\n';
  const node = { name, http: `127.0.0.1:${ports.http}`, stomp: `127.0.0.1:${ports.stomp}`, ops: `127.0.0.1:${ports.ops}`, incarnation: 0 };
  node.start = async () => {
    node.process = await startBroker(env, toml);
    node.incarnation += 1;
    await ready(node.process);
  };
  await node.start();
  return node;
}

/** The node's stompede_connections_total (all transports). */
async function accepted(node) {
  const res = await fetch(`http://${node.ops}/metrics`).catch(() => null);
  if (!res?.ok) return null;
  const text = await res.text();
  return text.split('\n')
    .filter((l) => l.startsWith('stompede_connections_total{'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/** A stompjs client through the balancer that reconnects, timing its gaps. */
function client(url, gaps, onConnect) {
  let closedAt = null;
  const c = new Client({
    connectHeaders: { login: 'svc', passcode: 'svc-pw' },
    webSocketFactory: () => new WebSocket(url, ['v12.stomp']),
    reconnectDelay: 200,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: () => {},
  });
  c.onConnect = () => {
    if (closedAt !== null) gaps.push(Date.now() - closedAt);
    closedAt = null;
    onConnect(c);
  };
  c.onWebSocketClose = () => { closedAt ??= Date.now(); };
  c.onStompError = () => {};
  c.activate();
  return c;
}

async function run(spread) {
  const nats = await startNats();
  const nodes = [];
  for (const name of ['a', 'b', 'c']) nodes.push(await nodeOn(nats, name, spread));
  const haproxy = await startHaproxy(nodes);
  await sleep(2000); // HAProxy's first checks (rise 2, every second)
  const gaps = [];
  const queueSent = new Set();
  const topicSent = new Set();
  let unconfirmed = 0;
  let attempted = 0;
  const queueGot = new Map();
  const subscribers = [];
  const clients = [];
  for (let i = 0; i < CONSUMERS; i += 1) {
    clients.push(client(haproxy.url, gaps, (c) => {
      c.subscribe('/queue/rolling', (m) => {
        queueGot.set(m.body, (queueGot.get(m.body) ?? 0) + 1);
        m.ack();
      }, { ack: 'client-individual', 'prefetch-count': '50' });
    }));
  }
  for (let i = 0; i < SUBSCRIBERS; i += 1) {
    const sub = { seen: new Map(), last: null };
    subscribers.push(sub);
    clients.push(client(haproxy.url, gaps, (c) => {
      const from = sub.last === null ? 'first' : `offset=${sub.last + 1}`;
      c.subscribe('/topic/kept', (m) => {
        sub.seen.set(m.body, (sub.seen.get(m.body) ?? 0) + 1);
        sub.last = Number(m.headers['x-stream-offset']);
      }, { 'x-stream-offset': from });
    }));
  }
  let publishing = true;
  const publishers = [];
  for (let p = 0; p < PUBLISHERS; p += 1) {
    let seq = 0;
    const c = client(haproxy.url, gaps, () => {});
    clients.push(c);
    publishers.push((async () => {
      while (publishing) {
        await sleep(1000 / RATE);
        if (!c.connected) continue;
        seq += 1;
        for (const [destination, sent] of [['/queue/rolling', queueSent], ['/topic/kept', topicSent]]) {
          const body = `${destination}-${p}-${seq}`;
          const receipt = `r-${body}`;
          c.watchForReceipt(receipt, () => sent.add(body));
          try {
            attempted += 1;
            c.publish({ destination, body, headers: { receipt } });
          } catch {
            unconfirmed += 1;
          }
        }
      }
    })());
  }
  // Connections accepted per node over time, sampled every 100 ms.
  const samples = nodes.map(() => []);
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await Promise.all(nodes.map(async (n, i) => {
        const total = await accepted(n);
        if (total !== null) samples[i].push({ t: Date.now(), total, incarnation: n.incarnation });
      }));
      await sleep(100);
    }
  })();
  await sleep(3000);
  const restarts = [];
  for (const node of nodes) {
    const began = Date.now();
    const res = await fetch(`http://${node.ops}/api/drain`, { method: 'POST', headers: { Authorization: ROOT } });
    if (res.status !== 202) throw new Error(`drain of ${node.name}: ${res.status}`);
    await within(GRACE_S * 1000 + spread * 1000 + 30000, `node ${node.name} exits`, node.process.exited);
    const stopped = Date.now();
    await node.start();
    await sleep(2500); // HAProxy sees it up again (rise 2)
    restarts.push({ node: node.name, began, stopped, drain_ms: stopped - began, back_ms: Date.now() - began });
  }
  await sleep(3000);
  publishing = false;
  await Promise.all(publishers);
  // Everything receipted must arrive: wait (bounded) until it has.
  const settled = () => [...queueSent].every((b) => queueGot.has(b))
    && subscribers.every((s) => [...topicSent].every((b) => s.seen.has(b)));
  const deadline = Date.now() + 30000;
  while (!settled() && Date.now() < deadline) await sleep(200);
  sampling = false;
  await sampler;
  const queueLost = [...queueSent].filter((b) => !queueGot.has(b)).length;
  const queueDuplicates = [...queueGot.values()].reduce((n, k) => n + k - 1, 0);
  const topicMissed = subscribers.map((s) => [...topicSent].filter((b) => !s.seen.has(b)).length);
  const topicDuplicates = subscribers.reduce((n, s) => n + [...s.seen.values()].reduce((m, k) => m + k - 1, 0), 0);
  // The most connections any node not being restarted accepted in one second.
  let peak = 0;
  for (const { node, began, stopped } of restarts) {
    nodes.forEach((other, i) => {
      if (other.name === node) return;
      const s = samples[i].filter((x) => x.t >= began && x.t <= stopped + 1000);
      for (let j = 0; j < s.length; j += 1) {
        for (let k = j + 1; k < s.length && s[k].t - s[j].t <= 1000; k += 1) {
          if (s[k].incarnation === s[j].incarnation) peak = Math.max(peak, s[k].total - s[j].total);
        }
      }
    });
  }
  clients.forEach((c) => c.deactivate());
  await haproxy.stop();
  for (const n of nodes) await n.process.stop();
  nats.stop();
  return {
    drain: spread === 0 ? `all at once (grace ${GRACE_S} s)` : `spread over ${spread} s (grace ${GRACE_S} s)`,
    clients: clients.length,
    queue_receipted: queueSent.size,
    queue_lost: queueLost,
    queue_duplicates: queueDuplicates,
    topic_receipted: topicSent.size,
    topic_missed_total: topicMissed.reduce((a, b) => a + b, 0),
    topic_duplicates: topicDuplicates,
    // SENDs whose receipt never came (their connection closed first): the
    // publisher was not told they were taken, so they are not counted as lost.
    sends_without_receipt: attempted - queueSent.size - topicSent.size + unconfirmed,
    reconnections: gaps.length,
    longest_gap_ms: Math.max(0, ...gaps),
    median_gap_ms: gaps.sort((a, b) => a - b)[Math.floor(gaps.length / 2)] ?? 0,
    peak_reconnects_per_node_per_s: peak,
    restarts: restarts.map((r) => `${r.node}: drained in ${(r.drain_ms / 1000).toFixed(1)} s, back ${(r.back_ms / 1000).toFixed(1)} s`),
  };
}

const results = [];
for (const spread of [SPREAD_S, 0]) {
  const result = await run(spread);
  console.log(JSON.stringify(result));
  results.push(result);
}
console.log('| drain | receipted queue msgs | lost | queue duplicates | receipted kept-topic msgs | missed (all subscribers) | topic duplicates | longest gap | peak reconnects/s on one node |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(`| ${r.drain} | ${r.queue_receipted} | ${r.queue_lost} | ${r.queue_duplicates} | ${r.topic_receipted} | ${r.topic_missed_total} | ${r.topic_duplicates} | ${(r.longest_gap_ms / 1000).toFixed(1)} s | ${r.peak_reconnects_per_node_per_s} |`);
}
process.exit(0);
