// Resuming stompede topic subscriptions after a reconnect, for @stomp/stompjs.
//
// Topics listed in `topics.history` number their messages: each MESSAGE carries
// `x-stream-offset`. This helper remembers the last offset seen per destination and,
// on every (re)connect, subscribes again from the next one, so a page that lost its
// connection gets what it missed, in order, then live messages. For a wildcard
// subscription (each destination has its own offsets) it resumes from the time of
// the last message seen, a little earlier to be safe, and drops what it had
// already seen. `onGap(destination)` is called when the broker says that some of
// what was asked for is no longer kept (`x-stream-gap: true`).
//
//   import { Resumer } from './resume.mjs';
//   const resumer = new Resumer();
//   client.onConnect = () => {
//     resumer.subscribe(client, '/topic/news', (m) => show(m.body));
//     resumer.subscribe(client, '/topic/prices.*', (m) => show(m.body));
//   };

/** Seconds of overlap when resuming a wildcard subscription by time. */
const OVERLAP_S = 5;

export class Resumer {
  constructor({ onGap = () => {} } = {}) {
    /** subscribed pattern -> (destination -> last offset seen) */
    this.offsets = new Map();
    /** subscribed pattern -> seconds since the epoch of the last message seen */
    this.seenAt = new Map();
    this.onGap = onGap;
  }

  /** Subscribes (again) to `destination`, from where this page stopped. */
  subscribe(client, destination, onMessage, headers = {}) {
    const wildcard = destination.split('.').some((w) => w === '*' || w === '#' || w.endsWith('/*') || w.endsWith('/#'));
    if (!this.offsets.has(destination)) this.offsets.set(destination, new Map());
    const seen = this.offsets.get(destination);
    const resume = {};
    if (wildcard && this.seenAt.has(destination)) {
      resume['x-stream-offset'] = `timestamp=${Math.max(0, this.seenAt.get(destination) - OVERLAP_S)}`;
    } else if (!wildcard && seen.has(destination)) {
      resume['x-stream-offset'] = `offset=${seen.get(destination) + 1}`;
    }
    return client.subscribe(destination, (message) => {
      const from = message.headers.destination;
      const raw = message.headers['x-stream-offset'];
      if (raw !== undefined) {
        const offset = Number(raw);
        if (seen.has(from) && offset <= seen.get(from)) return; // seen already
        seen.set(from, offset);
        this.seenAt.set(destination, Math.floor(Date.now() / 1000));
      }
      if (message.headers['x-stream-gap'] === 'true') this.onGap(from);
      onMessage(message);
    }, { ...headers, ...resume });
  }
}
