// /app routes with real backends of other languages: a browser client
// (stompjs) sends to /app/chat.room1, a Python backend written with stomp.py
// (examples/backends/chat.py) consumes the route's queue and answers on the room's
// topic and on the sender's user queue; an HTTP route is served by a Node
// backend (examples/backends/ask-http.mjs); forbidden routes are refused and a
// dead backend is reported, not a hang.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  USERS, freePort, publishConfirmed, startBroker, stompClient, subscribed, within,
} from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');

let broker;
const children = [];

/**
 * Subscribes (waiting for the broker's receipt, so nothing sent later is
 * missed); returns a function that waits for the first `n` messages.
 */
async function gather(client, destination, n) {
  const got = [];
  let resolve;
  const done = new Promise((r) => { resolve = r; });
  await subscribed(client, destination, (m) => {
    got.push(m);
    if (got.length === n) resolve(got);
  });
  return (what = destination, ms = 10000) => within(ms, `${n} messages on ${what}`, done);
}

/** Starts `command args` and resolves once it prints a line starting with `word`. */
async function started(command, args, env, word) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const lines = createInterface({ input: child.stdout });
  return within(15000, `${path.basename(args[0])} says ${word}`, new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
    lines.on('line', (line) => { if (line.startsWith(word)) resolve(line); });
  }));
}

before(async () => {
  const askPort = await freePort();
  const deadPort = await freePort();
  broker = await startBroker({}, `
[[app.routes]]
match = "/app/chat.#"
queue = "chat"
[[app.routes]]
match = "/app/ask.#"
url = "http://127.0.0.1:${askPort}/ask"
publish = ["/topic/answers.#"]
[[app.routes]]
match = "/app/dead.#"
url = "http://127.0.0.1:${deadPort}/nobody-listens"
timeout_ms = 2000
[[app.routes]]
match = "/app/admin.#"
queue = "admin"
[[auth.acl]]
match = "/app/admin.#"
send = ["admin"]
`);
  const pythonPath = process.env.STOMPEDE_PYTHONPATH
    ?? execFileSync(path.join(root, 'scripts', 'python-deps')).toString().trim();
  const [host, port] = broker.stomp.split(':');
  await started('python3', [path.join(root, 'examples', 'backends', 'chat.py'), host, port, 'svc', USERS.svc[0]],
    { PYTHONPATH: pythonPath }, 'ready');
  await started('node', [path.join(root, 'examples', 'backends', 'ask-http.mjs'), String(askPort)], {}, 'listening');
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await broker?.stop();
});

test('a stompjs client chats through a stomp.py backend behind a queue route', async () => {
  const alice = await stompClient(broker, {}, 'alice');
  const bob = await stompClient(broker, {}, 'bob');
  const room = await gather(bob, '/topic/chat.room1', 1);
  const replies = await gather(alice, '/user/queue/replies', 1);
  // The RECEIPT: the route's queue holds it.
  await publishConfirmed(alice, { destination: '/app/chat.room1', body: 'hello from the browser' });
  const [line] = await room('the room');
  assert.deepEqual(JSON.parse(line.body), { room: 'room1', from: 'alice', text: 'hello from the browser' });
  const [reply] = await replies('the reply');
  assert.deepEqual(JSON.parse(reply.body), { posted: true, room: 'room1' });
  alice.deactivate();
  bob.deactivate();
});

test('an HTTP route answers the sender and the topic, in order, then the receipt', async () => {
  const alice = await stompClient(broker, {}, 'alice');
  const replies = await gather(alice, '/user/queue/replies', 1);
  const answers = await gather(alice, '/topic/answers.weather', 1);
  await publishConfirmed(alice, { destination: '/app/ask.weather', body: 'rain?' });
  const [reply] = await replies();
  assert.equal(reply.body, 'alice asked about weather: rain?');
  const [answer] = await answers();
  assert.equal(answer.headers['asked-by'], 'alice');
  alice.deactivate();
});

test('a dead backend is reported on the sender\'s error queue, and the session goes on', async () => {
  const alice = await stompClient(broker, {}, 'alice');
  const errors = await gather(alice, '/user/queue/errors', 1);
  alice.publish({ destination: '/app/dead.x', body: 'anyone?', headers: { receipt: 'd1' } });
  const [error] = await errors('the failure');
  assert.equal(error.headers['receipt-id'], 'd1');
  assert.equal(JSON.parse(error.body).error, 'BACKEND_FAILED');
  // Still connected: an HTTP route that works answers.
  const replies = await gather(alice, '/user/queue/replies', 1);
  await publishConfirmed(alice, { destination: '/app/ask.tides', body: 'when?' });
  assert.equal((await replies())[0].body, 'alice asked about tides: when?');
  alice.deactivate();
});

test('a route the access rules close is refused with an ERROR', async () => {
  const alice = await stompClient(broker, {}, 'alice');
  const refused = new Promise((resolve) => { alice.onStompError = resolve; });
  alice.publish({ destination: '/app/admin.reindex', body: 'go' });
  const frame = await within(5000, 'the ERROR', refused);
  assert.match(frame.headers.message, /not allowed to SEND to \/app\/admin\.reindex/);
  alice.deactivate();
});
