// stompjs over wss:// against the TLS listener, with a self-signed certificate made
// at run time that the client trusts explicitly.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startBroker, stompClient, subscribed, publishConfirmed, selfSignedCertificate, until, within } from './helpers.mjs';

let broker;
let tls;
before(async () => {
  tls = selfSignedCertificate();
  broker = await startBroker(
    {},
    `[tls]\ncert_file = ${JSON.stringify(tls.cert)}\nkey_file = ${JSON.stringify(tls.key)}\nhttps_addr = "127.0.0.1:0"\nstomp_addr = "127.0.0.1:0"\n`,
  );
});
after(async () => broker?.stop());

test('stompjs over wss:// receives what a plain ws:// client publishes', async () => {
  const secure = await stompClient(broker, {
    webSocketFactory: () => new WebSocket(`wss://${broker.https}/ws`, ['v12.stomp'], { ca: tls.pem }),
  });
  assert.equal(secure.webSocket.protocol, 'v12.stomp');
  const got = [];
  await subscribed(secure, '/topic/e2e.tls', (m) => got.push(m.body));
  const plain = await stompClient(broker);
  await publishConfirmed(plain, { destination: '/topic/e2e.tls', body: 'through TLS' });
  await until('the message over wss', () => got.length > 0);
  assert.deepEqual(got, ['through TLS']);
  await secure.deactivate();
  await plain.deactivate();
});

test('a client that does not trust the certificate cannot connect', async () => {
  const ws = new WebSocket(`wss://${broker.https}/ws`, ['v12.stomp']);
  const failed = await within(5000, 'the refused handshake', new Promise((resolve) => {
    ws.on('error', (e) => resolve(e.code ?? e.message));
    ws.on('open', () => resolve('opened'));
  }));
  assert.notEqual(failed, 'opened');
});
