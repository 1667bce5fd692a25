// Token logins with stompjs: a JWT as the passcode, and a token that expires while
// connected: ERROR "token expired", then stompjs reconnects with a fresh token that
// its beforeConnect fetched.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { startBroker, stompClient, subscribed, publishConfirmed, until, within } from './helpers.mjs';

const SECRET = 'the single sign-on secret';

/** An HS256 JWT, made the way any identity provider makes one. */
function jwt(claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  const signature = createHmac('sha256', SECRET).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}

const now = () => Math.floor(Date.now() / 1000);

let broker;
before(async () => {
  broker = await startBroker({}, `[auth.jwt]\nsecret = "${SECRET}"\nleeway_s = 0\n`);
});
after(async () => broker?.stop());

test('a JWT in the passcode logs in as its subject, with its roles', async () => {
  const token = jwt({ sub: 'carol', roles: ['trader'], exp: now() + 600 });
  const carol = await stompClient(broker, { connectHeaders: { passcode: token } }, null);
  const got = [];
  await subscribed(carol, '/user/queue/notes', (m) => got.push(m.body));
  const svc = await stompClient(broker);
  await publishConfirmed(svc, { destination: '/user/carol/queue/notes', body: 'for carol' });
  await until('carol gets her note', () => got.length > 0);
  assert.deepEqual(got, ['for carol']);
  await carol.deactivate();
  await svc.deactivate();
});

test('a bad token is refused with "authentication failed"', async () => {
  // A real token with its signature's end changed.
  const token = jwt({ sub: 'carol', roles: ['admin'], exp: now() + 600 });
  const forged = `${token.slice(0, -4)}AAAA`;
  await assert.rejects(
    stompClient(broker, { connectHeaders: { passcode: forged } }, null),
    /authentication failed/,
  );
});

test('an expiring token ends the connection; beforeConnect brings a fresh one', async () => {
  const errors = [];
  let tokens = 0;
  let connects = 0;
  const received = [];
  let reconnected;
  const second = new Promise((resolve) => { reconnected = resolve; });
  const client = new Client({
    webSocketFactory: () => new WebSocket(broker.url, ['v12.stomp']),
    // What a browser app does: fetch a fresh token before every (re)connect.
    beforeConnect: () => {
      tokens += 1;
      client.connectHeaders = { passcode: jwt({ sub: 'carol', roles: ['trader'], exp: now() + 2 }) };
    },
    reconnectDelay: 200,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: () => {},
  });
  client.onStompError = (frame) => errors.push(frame.headers.message);
  client.onConnect = () => {
    connects += 1;
    client.subscribe('/user/queue/notes', (m) => received.push(m.body));
    if (connects === 2) reconnected();
  };
  client.activate();
  await within(8000, 'a second connection after the token expired', second);
  assert.deepEqual(errors, ['token expired']);
  assert.equal(tokens, 2);
  // The fresh connection works: carol's subscription is back.
  const svc = await stompClient(broker);
  await within(5000, 'the note after reconnecting', (async () => {
    for (;;) {
      await publishConfirmed(svc, { destination: '/user/carol/queue/notes', body: 'after' });
      if (received.includes('after')) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  })());
  await client.deactivate();
  await svc.deactivate();
});
