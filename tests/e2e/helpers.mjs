// Helpers for end-to-end tests: the real broker binary on ephemeral loopback ports,
// the real @stomp/stompjs client over `ws`, and a raw STOMP client over TCP.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

// For scripts outside this package (benches/rolling.mjs), which cannot resolve
// the packages themselves.
export { Client, WebSocket };

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.STOMPEDE_BIN ?? path.join(here, '..', '..', 'target', 'debug', 'stompede');

/** Bounded wait: rejects after `ms` with `what` in the message. */
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Test accounts: login -> [password, role]. */
export const USERS = {
  alice: ['alice-pw', 'trader'],
  bob: ['bob-pw', 'trader'],
  svc: ['svc-pw', 'service'],
  root: ['root-pw', 'admin'],
};

/**
 * A config file with the test accounts, hashed by the binary's own hash-password,
 * in a fresh directory that also holds the broker's queue store.
 */
function configWithUsers(extraToml) {
  const users = Object.entries(USERS).map(([login, [password, role]]) => {
    const hash = execFileSync(BIN, ['hash-password'], { input: `${password}\n` }).toString().trim();
    return `[[auth.users]]\nlogin = "${login}"\npassword_hash = "${hash}"\nroles = ["${role}"]\n`;
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stompede-e2e-'));
  const file = path.join(dir, 'broker.toml');
  writeFileSync(file, `${extraToml}\n${users.join('\n')}`);
  return { file, store: path.join(dir, 'data') };
}

/**
 * A fresh self-signed certificate for 127.0.0.1 (made by the selfsigned example):
 * `{ cert, key }` file paths and the certificate's PEM text.
 */
export function selfSignedCertificate() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stompede-tls-'));
  execFileSync(path.join(path.dirname(BIN), 'examples', 'selfsigned'), [dir]);
  const cert = path.join(dir, 'cert.pem');
  return { cert, key: path.join(dir, 'key.pem'), pem: readFileSync(cert) };
}

/**
 * Starts the broker with extra STOMPEDE__ environment (and optional TOML for keys
 * the environment cannot express); resolves once it listens.
 */
export async function startBroker(env = {}, extraToml = '') {
  const config = configWithUsers(extraToml);
  const child = spawn(BIN, ['--config', config.file], {
    env: {
      ...process.env,
      STOMPEDE__STORE__PATH: config.store,
      STOMPEDE__SERVER__HTTP_ADDR: '127.0.0.1:0',
      STOMPEDE__SERVER__STOMP_ADDR: '127.0.0.1:0',
      STOMPEDE__LOG__FORMAT: 'json',
      STOMPEDE__LOG__FILTER: 'info',
      // stop() sends SIGTERM: no drain unless a test asks for one.
      STOMPEDE__SERVER__DRAIN_GRACE_S: '0',
      STOMPEDE__SERVER__DRAIN_SPREAD_S: '0',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines = createInterface({ input: child.stderr });
  const logs = [];
  lines.on('line', (line) => logs.push(line));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const listening = new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`broker exited with ${code}`)));
    lines.on('line', (line) => {
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.fields?.message === 'stompede listening') {
        resolve({
          http: entry.fields.http_addr,
          stomp: entry.fields.stomp_addr,
          https: entry.fields.https_addr,
          ops: entry.fields.ops_addr,
        });
      }
    });
  });
  const addrs = await within(10000, 'broker start', listening);
  return {
    ...addrs,
    url: `ws://${addrs.http}/ws`,
    /** Log lines so far (JSON). */
    logs,
    /** Resolves with `{ code, signal }` when the process exits. */
    exited,
    /** Sends `signal` (default SIGTERM) without waiting. */
    signal(signal = 'SIGTERM') {
      child.kill(signal);
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await within(10000, 'broker exit', exited);
    },
  };
}

/**
 * A connected stompjs client. `options` go to the Client constructor; the
 * WebSocket is tapped so tests can count heart-beats received.
 */
export async function stompClient(broker, options = {}, login = 'svc') {
  const tap = { heartbeats: 0, messages: 0 };
  const client = new Client({
    connectHeaders: login ? { login, passcode: USERS[login][0] } : {},
    webSocketFactory: () => {
      const ws = new WebSocket(broker.url, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
      ws.addEventListener('message', (ev) => {
        tap.messages += 1;
        if (ev.data === '\n' || (ev.data?.toString && ev.data.toString() === '\n')) tap.heartbeats += 1;
      });
      return ws;
    },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: () => {},
    ...options,
  });
  const connected = new Promise((resolve, reject) => {
    client.onConnect = resolve;
    client.onStompError = (frame) => reject(new Error(`STOMP error: ${frame.headers.message}`));
    client.onWebSocketError = () => reject(new Error('WebSocket error'));
  });
  client.activate();
  const frame = await within(5000, 'stompjs connect', connected);
  client.tap = tap;
  client.connectedFrame = frame;
  return client;
}

/** Waits (at most 5 s) until `ready()` is true, checking every 10 ms. */
export function until(what, ready) {
  return within(5000, what, new Promise((resolve) => {
    const poll = setInterval(() => {
      if (ready()) {
        clearInterval(poll);
        resolve();
      }
    }, 10);
  }));
}

/** Resolves with the next `n` messages of a subscription (bodies and frames). */
export function collect(client, destination, n, headers = {}) {
  const got = [];
  let sub;
  const done = new Promise((resolve) => {
    sub = client.subscribe(
      destination,
      (message) => {
        got.push(message);
        if (got.length === n) resolve(got);
      },
      headers,
    );
  });
  return { sub, done: (what = destination, ms = 5000) => within(ms, `${n} messages on ${what}`, done), got };
}

/** Subscribes and waits for the broker's receipt, so later publishes reach it. */
export async function subscribed(client, destination, onMessage, headers = {}) {
  const receipt = `sub-${Math.random().toString(36).slice(2)}`;
  const acked = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
  const sub = client.subscribe(destination, onMessage, { ...headers, receipt });
  await within(5000, `receipt for SUBSCRIBE ${destination}`, acked);
  return sub;
}

/** Publishes with a receipt and waits for it. */
export async function publishConfirmed(client, params) {
  const receipt = `pub-${Math.random().toString(36).slice(2)}`;
  const acked = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
  client.publish({ ...params, headers: { ...(params.headers ?? {}), receipt } });
  return within(5000, `receipt for SEND ${params.destination}`, acked);
}

/**
 * A minimal STOMP 1.2 client over plain TCP, as a backend service would use.
 * Options: `localAddress` (a loopback address to connect from), `login`
 * (default `svc`; `null` for anonymous), `connect: false` to send nothing yet.
 */
export async function tcpClient(address, options = {}) {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const socket = net.connect({ host, port, localAddress: options.localAddress });
  let closedResolve;
  const closed = new Promise((resolve) => { closedResolve = resolve; });
  socket.once('close', () => closedResolve());
  await within(5000, 'TCP connect', new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  }));
  let buffer = Buffer.alloc(0);
  const frames = [];
  const waiters = [];
  const parse = () => {
    for (;;) {
      while (buffer.length && (buffer[0] === 0x0a || buffer[0] === 0x0d)) buffer = buffer.subarray(1);
      const headEnd = buffer.indexOf('\n\n');
      if (headEnd < 0) return;
      const [command, ...lines] = buffer.subarray(0, headEnd).toString('utf8').split('\n');
      const headers = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        const name = line.slice(0, i);
        if (!(name in headers)) headers[name] = line.slice(i + 1);
      }
      const start = headEnd + 2;
      let end;
      if (headers['content-length'] !== undefined) {
        end = start + Number(headers['content-length']);
        if (buffer.length < end + 1) return;
      } else {
        end = buffer.indexOf(0, start);
        if (end < 0) return;
      }
      frames.push({ command, headers, body: buffer.subarray(start, end) });
      buffer = buffer.subarray(end + 1);
    }
  };
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    parse();
    while (waiters.length && frames.length) waiters.shift()(frames.shift());
  });
  const client = {
    send(command, headers = {}, body = '') {
      const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
      const head = Object.entries({ ...headers, 'content-length': bytes.length })
        .map(([k, v]) => `${k}:${v}\n`)
        .join('');
      socket.write(Buffer.concat([Buffer.from(`${command}\n${head}\n`, 'utf8'), bytes, Buffer.from([0])]));
    },
    next(what = 'a frame') {
      if (frames.length) return Promise.resolve(frames.shift());
      return within(5000, what, new Promise((resolve) => waiters.push(resolve)));
    },
    async expect(command) {
      const frame = await client.next(command);
      if (frame.command !== command) throw new Error(`expected ${command}, got ${frame.command}: ${frame.body}`);
      return frame;
    },
    close() {
      socket.destroy();
    },
    /** Resolves when the connection has closed. */
    closed,
  };
  if (options.connect === false) return client;
  const login = options.login === undefined ? 'svc' : options.login;
  const credentials = login ? { login, passcode: options.passcode ?? USERS[login][0] } : {};
  client.send('CONNECT', { 'accept-version': '1.2', host: 'localhost', ...credentials });
  await client.expect('CONNECTED');
  return client;
}

/** A free loopback port (asked of the kernel, then released). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * One nats-server with JetStream on a loopback port, for cluster tests: the binary
 * installed by the project's scripts/nats-server (STOMPEDE_NATS_SERVER names it
 * when the test command has installed it already). Resolves once it takes clients.
 */
export async function startNats() {
  const binary = process.env.STOMPEDE_NATS_SERVER
    ?? execFileSync(path.join(here, '..', '..', 'scripts', 'nats-server')).toString().trim();
  const port = await freePort();
  const store = mkdtempSync(path.join(os.tmpdir(), 'stompede-nats-'));
  const child = spawn(binary, ['--addr', '127.0.0.1', '--port', String(port), '--jetstream', '--store_dir', store], {
    stdio: 'ignore',
  });
  await within(10000, 'nats-server start', (async () => {
    for (;;) {
      const up = await new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => { s.end(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (up) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  })());
  return {
    url: `nats://127.0.0.1:${port}`,
    stop() {
      child.kill('SIGKILL');
    },
  };
}

/** Waits (at most 30 s) until the broker's /readyz answers 200. */
export async function ready(broker) {
  await within(30000, `readyz of ${broker.http}`, (async () => {
    for (;;) {
      const res = await fetch(`http://${broker.http}/readyz`).catch(() => null);
      if (res?.status === 200) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  })());
}
