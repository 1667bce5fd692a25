// Behind real proxies: stompjs clients from several loopback addresses through
// nginx (WebSocket, X-Forwarded-For) and through HAProxy (send-proxy-v2 to the
// STOMP and HTTP listeners). Per-address limits, the failed-login throttle and
// the logs see each real client; a forged X-Forwarded-For changes nothing.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { USERS, startBroker, tcpClient, until, within } from './helpers.mjs';
import { startHaproxy, startNginx } from './proxies.mjs';

let broker;
let nginx;
let haproxy;

before(async () => {
  broker = await startBroker({}, `
[server]
trusted_proxies = ["127.0.0.1"]
proxy_protocol = true
[limits]
max_connections_per_ip = 2
max_failed_logins_per_ip = 2
failed_login_window_ms = 60000
`);
  nginx = await startNginx([broker.http]);
  haproxy = await startHaproxy([{ http: broker.http, stomp: broker.stomp }]);
});

after(async () => {
  await nginx?.stop();
  await haproxy?.stop();
  await broker?.stop();
});

const open = [];
after(() => open.forEach((c) => c.deactivate?.() ?? c.close?.()));

/**
 * A stompjs client at `url` from loopback address `localAddress`: resolves with
 * the client once CONNECTED, or rejects with the STOMP ERROR's message or the
 * HTTP status that refused the WebSocket.
 */
async function stompjs(url, localAddress, { login = null, headers = {} } = {}) {
  let refusal;
  const client = new Client({
    connectHeaders: login ? { login: login[0], passcode: login[1] } : {},
    webSocketFactory: () => {
      const ws = new WebSocket(url, ['v12.stomp'], { localAddress, headers });
      // ws says "Unexpected server response: 503" for a refused handshake.
      ws.on('error', (e) => { refusal = e.message.replace(/^Unexpected server response: /, 'HTTP '); });
      return ws;
    },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: () => {},
  });
  const outcome = new Promise((resolve, reject) => {
    client.onConnect = () => resolve(client);
    client.onStompError = (frame) => reject(new Error(frame.headers.message));
    client.onWebSocketClose = () => reject(new Error(refusal ?? 'closed'));
  });
  client.activate();
  try {
    const connected = await within(5000, `stompjs through ${url} from ${localAddress}`, outcome);
    open.push(connected);
    return connected;
  } catch (e) {
    client.deactivate();
    throw e;
  }
}

/** The broker's JSON log lines that say `message`. */
function logged(message) {
  return broker.logs
    .map((line) => { try { return JSON.parse(line); } catch { return null; } })
    .filter((entry) => entry?.fields?.message === message);
}

test('through nginx, each client has its own per-address limit', async () => {
  for (let i = 0; i < 2; i += 1) await stompjs(nginx.url, '127.0.0.2');
  await assert.rejects(stompjs(nginx.url, '127.0.0.2'), /HTTP 503/);
  // Another client through the same nginx (before: all had nginx's address).
  await stompjs(nginx.url, '127.0.0.3');
  await stompjs(nginx.url, '127.0.0.3');
});

test('through nginx, a forged X-Forwarded-For changes nothing', async () => {
  // nginx appends the real address; the broker takes the right-most hop it does not trust.
  for (const forged of ['10.9.9.1', '10.9.9.2']) {
    await stompjs(nginx.url, '127.0.0.4', { headers: { 'X-Forwarded-For': forged } });
  }
  await assert.rejects(
    stompjs(nginx.url, '127.0.0.4', { headers: { 'X-Forwarded-For': '10.9.9.3' } }),
    /HTTP 503/,
  );
  // Straight to the broker from an untrusted address: the header is ignored.
  for (const forged of ['10.9.9.4', '10.9.9.5']) {
    await stompjs(broker.url, '127.0.0.5', { headers: { 'X-Forwarded-For': forged } });
  }
  await assert.rejects(
    stompjs(broker.url, '127.0.0.5', { headers: { 'X-Forwarded-For': '10.9.9.6' } }),
    /HTTP 503/,
  );
});

test('through nginx, the failed-login throttle and the logs see the real client', async () => {
  const guess = ['alice', 'guess'];
  for (let i = 0; i < 2; i += 1) {
    await assert.rejects(stompjs(nginx.url, '127.0.0.6', { login: guess }), /authentication failed/);
  }
  await assert.rejects(
    stompjs(nginx.url, '127.0.0.6', { login: ['alice', USERS.alice[0]] }),
    /max_failed_logins_per_ip/,
  );
  // Another client through the same proxy logs in.
  const alice = await stompjs(nginx.url, '127.0.0.7', { login: ['alice', USERS.alice[0]] });
  assert.ok(alice.connected);
  await until('the refusals logged', () => logged('login refused').length >= 3);
  const peers = new Set(logged('login refused').map((e) => e.fields.peer));
  assert.deepEqual([...peers], ['127.0.0.6']);
});

test('through HAProxy (send-proxy-v2), STOMP over TCP and WebSocket see the real client', async () => {
  const held = [];
  for (let i = 0; i < 2; i += 1) {
    held.push(await tcpClient(haproxy.stomp, { localAddress: '127.0.0.8', login: null }));
  }
  const third = await tcpClient(haproxy.stomp, { localAddress: '127.0.0.8', connect: false });
  const refusal = await third.next('the refusal');
  assert.equal(refusal.command, 'ERROR');
  assert.match(refusal.headers.message, /limits\.max_connections_per_ip/);
  await within(5000, 'the refused connection closes', third.closed);
  // The same client over WebSocket through HAProxy: its limit too.
  await assert.rejects(stompjs(haproxy.url, '127.0.0.8'), /HTTP 503/);
  // Other clients through the same HAProxy, over both.
  held.push(await tcpClient(haproxy.stomp, { localAddress: '127.0.0.9' }));
  await stompjs(haproxy.url, '127.0.0.9');
  await stompjs(haproxy.url, '127.0.0.10');
  // The throttle over TCP, through HAProxy.
  for (let i = 0; i < 2; i += 1) {
    const c = await tcpClient(haproxy.stomp, { localAddress: '127.0.0.11', connect: false });
    c.send('CONNECT', { 'accept-version': '1.2', login: 'alice', passcode: 'guess' });
    assert.equal((await c.next('ERROR')).command, 'ERROR');
  }
  await assert.rejects(
    tcpClient(haproxy.stomp, { localAddress: '127.0.0.11', login: 'alice' }),
    /max_failed_logins_per_ip/,
  );
  held.push(await tcpClient(haproxy.stomp, { localAddress: '127.0.0.12', login: 'alice' }));
  await until('the refusals logged', () => logged('login refused').length >= 6);
  // Each refusal names the client, never the proxy.
  const peers = new Set(logged('login refused').map((e) => e.fields.peer));
  assert.deepEqual([...peers].sort(), ['127.0.0.11', '127.0.0.6']);
  held.forEach((c) => c.close());
});

test('HAProxy health checks see /readyz through the PROXY protocol', async () => {
  // The check connections come from HAProxy with a header, like its clients:
  // had they been refused, HAProxy would have no server to send anyone to.
  const res = await fetch(`http://${haproxy.http}/readyz`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'ready\n');
  assert.doesNotMatch(haproxy.log(), /is DOWN/);
});
