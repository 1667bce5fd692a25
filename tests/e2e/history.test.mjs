// Resuming after a reconnect with the helper from docs/examples/resume.mjs and the
// real stompjs client: what was published while the page was away arrives once,
// in order, then live messages; a wildcard subscription resumes too; a gap is said.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, stompClient, publishConfirmed, subscribed, within } from './helpers.mjs';
import { Resumer } from '../../docs/examples/resume.mjs';

let broker;
before(async () => {
  broker = await startBroker({}, '[topics]\nhistory = ["/topic/e2e.hist.#"]\nhistory_max_messages = 4');
});
after(async () => broker?.stop());

function until(what, ready) {
  return within(5000, what, (async () => {
    while (!ready()) await new Promise((r) => setTimeout(r, 10));
  })());
}

test('a page that lost its connection gets what it missed, once, in order', async () => {
  const gaps = [];
  const resumer = new Resumer({ onGap: (d) => gaps.push(d) });
  const exact = [];
  const wild = [];
  let connects = 0;
  const page = await stompClient(broker, { reconnectDelay: 300 }, 'alice');
  const subscribeAll = () => {
    connects += 1;
    resumer.subscribe(page, '/topic/e2e.hist.news', (m) => exact.push(m.body));
    resumer.subscribe(page, '/topic/e2e.hist.*', (m) => wild.push(`${m.headers.destination}:${m.body}`));
  };
  page.onConnect = subscribeAll;
  subscribeAll();
  // A receipted SUBSCRIBE after them: the broker has both subscriptions.
  await subscribed(page, '/topic/e2e.fence', () => {});
  const backend = await stompClient(broker, {}, 'svc');
  // The positive control: live messages reach both subscriptions.
  await publishConfirmed(backend, { destination: '/topic/e2e.hist.news', body: 'n1' });
  await until('n1 twice', () => exact.length === 1 && wild.length === 1);
  // Away: the socket drops; messages go on.
  page.forceDisconnect();
  await publishConfirmed(backend, { destination: '/topic/e2e.hist.news', body: 'n2' });
  await publishConfirmed(backend, { destination: '/topic/e2e.hist.sport', body: 's1' });
  await publishConfirmed(backend, { destination: '/topic/e2e.hist.news', body: 'n3' });
  await until('a reconnect', () => connects === 2);
  await publishConfirmed(backend, { destination: '/topic/e2e.hist.news', body: 'n4' });
  await until('n4 on both', () => exact.includes('n4') && wild.includes('/topic/e2e.hist.news:n4'));
  assert.deepEqual(exact, ['n1', 'n2', 'n3', 'n4']);
  assert.deepEqual(
    wild.filter((w) => w.includes('news')),
    ['n1', 'n2', 'n3', 'n4'].map((b) => `/topic/e2e.hist.news:${b}`),
  );
  assert.deepEqual(wild.filter((w) => w.includes('sport')), ['/topic/e2e.hist.sport:s1']);
  assert.deepEqual(gaps, []);

  // Away for longer than the history keeps (4 messages): the gap is said.
  page.forceDisconnect();
  for (let i = 5; i <= 10; i += 1) {
    await publishConfirmed(backend, { destination: '/topic/e2e.hist.news', body: `n${i}` });
  }
  await until('the second reconnect', () => connects === 3 && exact.includes('n10'));
  assert.deepEqual(exact.slice(4), ['n7', 'n8', 'n9', 'n10']);
  assert.ok(gaps.includes('/topic/e2e.hist.news'), `gaps: ${gaps}`);
  await page.deactivate();
  await backend.deactivate();
});
