// Real proxies for the end-to-end tests and the rolling-restart benchmark:
// Debian's nginx and HAProxy (installed by scripts/test), run in the
// foreground on loopback ports with the configurations docs/deployment/ gives.

import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, within } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const DOCS = path.join(here, '..', '..', 'docs', 'deployment');

/** Resolves once something accepts TCP connections at 127.0.0.1:`port` (at most 10 s). */
async function listening(port, what, child) {
  let exited = null;
  child.once('exit', (code) => { exited = code; });
  await within(10000, `${what} listening on ${port}`, (async () => {
    for (;;) {
      if (exited !== null) throw new Error(`${what} exited with ${exited}`);
      const up = await new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => { s.end(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (up) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  })());
}

/** A running proxy: its ports, its stderr so far, and `stop()`. */
function handle(child, ports, log) {
  return {
    ...ports,
    log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await gone;
    },
  };
}

/**
 * nginx with docs/deployment/nginx-stompede.conf, its upstreams the nodes'
 * HTTP addresses (`nodes`, one to three; repeated to fill the three places).
 */
export async function startNginx(nodes) {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stompede-nginx-'));
  chmodSync(dir, 0o755);
  const values = {
    LISTEN: `127.0.0.1:${port}`,
    NODE_A_HTTP: nodes[0],
    NODE_B_HTTP: nodes[1 % nodes.length],
    NODE_C_HTTP: nodes[2 % nodes.length],
  };
  const site = readFileSync(path.join(DOCS, 'nginx-stompede.conf'), 'utf8')
    .replace(/\$\{(\w+)\}/g, (_, name) => values[name]);
  writeFileSync(path.join(dir, 'stompede.conf'), site);
  // The main file a packaged nginx has, with this run's own paths.
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `${t}_temp_path ${dir}/${t};`).join(' ');
  writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http { access_log off; ${temp} include ${dir}/stompede.conf; }
`);
  const child = spawn('/usr/sbin/nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  await listening(port, 'nginx', child);
  return handle(child, { port, url: `ws://127.0.0.1:${port}/ws` }, () => readFileSync(path.join(dir, 'error.log'), 'utf8'));
}

/**
 * HAProxy with docs/deployment/haproxy.cfg in front of `nodes` (one to three
 * `{ http, stomp }` address pairs, repeated to fill the three places):
 * resolves once both frontends listen.
 */
export async function startHaproxy(nodes) {
  const [wsPort, stompPort] = [await freePort(), await freePort()];
  const node = (i) => nodes[i % nodes.length];
  const host = (addr) => addr.slice(0, addr.lastIndexOf(':'));
  const port = (addr) => addr.slice(addr.lastIndexOf(':') + 1);
  const env = {
    WS_BIND: `127.0.0.1:${wsPort}`,
    STOMP_BIND: `127.0.0.1:${stompPort}`,
  };
  ['A', 'B', 'C'].forEach((name, i) => {
    env[`NODE_${name}_HTTP`] = node(i).http;
    env[`NODE_${name}_STOMP`] = node(i).stomp;
    env[`NODE_${name}_HOST`] = host(node(i).http);
    env[`NODE_${name}_HTTP_PORT`] = port(node(i).http);
  });
  const cfg = readFileSync(path.join(DOCS, 'haproxy.cfg'), 'utf8');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stompede-haproxy-'));
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  const child = spawn('/usr/sbin/haproxy', ['-f', file, '-db'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = [];
  child.stderr.on('data', (chunk) => log.push(chunk.toString()));
  await listening(wsPort, 'haproxy', child);
  await listening(stompPort, 'haproxy', child);
  return handle(child, {
    wsPort,
    stompPort,
    url: `ws://127.0.0.1:${wsPort}/ws`,
    stomp: `127.0.0.1:${stompPort}`,
    http: `127.0.0.1:${wsPort}`,
  }, () => log.join(''));
}
