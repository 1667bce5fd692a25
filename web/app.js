// The stompede live trading page: a reference stompjs client.
// Quotes from /topic/stock-quotes, orders to /app/trade, confirmations from
// /user/queue/trade-confirmation, refusals from /user/queue/errors, and the public
// tape from /topic/market-activity.
'use strict';

const $ = (id) => document.getElementById(id);
const priceHistory = new Map(); // symbol -> recent prices, for sparklines
const rows = new Map(); // symbol -> <tr>
const orders = new Map(); // tradeId -> <tr>
const SPARK_POINTS = 30;
let client = null;
let who = null;
// The last x-stream-offset seen per destination: after a reconnect the page
// subscribes from the next one and gets what it missed (topics.history).
const lastOffset = new Map();

/** SUBSCRIBE headers that resume `destination` where this page stopped. */
function resumeFrom(destination) {
  return lastOffset.has(destination) ? { 'x-stream-offset': `offset=${lastOffset.get(destination) + 1}` } : {};
}

/** Notes a message's offset; false for one this page has shown already. */
function fresh(m) {
  const raw = m.headers['x-stream-offset'];
  if (raw !== undefined) {
    const offset = Number(raw);
    const last = lastOffset.get(m.headers.destination);
    if (last !== undefined && offset <= last) return false;
    lastOffset.set(m.headers.destination, offset);
  }
  if (m.headers['x-stream-gap'] === 'true') {
    $('gap').hidden = false;
    $('gap').textContent = `missed some updates while offline (${m.headers.destination.replace('/topic/', '')})`;
  }
  return true;
}

function setStatus(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text;
}

function fmt(n) { return Number(n).toFixed(2); }
function time(ts) { return ts ? new Date(ts).toLocaleTimeString() : ''; }

function sparkline(prices) {
  const min = Math.min(...prices), max = Math.max(...prices);
  const span = max - min || 1;
  const pts = prices.map((p, i) => `${(i / Math.max(prices.length - 1, 1)) * 88 + 1},${22 - ((p - min) / span) * 20}`).join(' ');
  const up = prices[prices.length - 1] >= prices[0];
  return `<svg class="spark" viewBox="0 0 90 24" aria-hidden="true"><polyline fill="none" stroke="${up ? '#2ea043' : '#f85149'}" stroke-width="1.5" points="${pts}"/></svg>`;
}

function showQuote(q) {
  const prices = priceHistory.get(q.symbol) ?? [];
  const changed = prices.length > 0 && prices[prices.length - 1] !== q.price;
  prices.push(q.price);
  if (prices.length > SPARK_POINTS) prices.shift();
  priceHistory.set(q.symbol, prices);
  let tr = rows.get(q.symbol);
  if (!tr) {
    tr = document.createElement('tr');
    tr.dataset.symbol = q.symbol;
    $('quotes').appendChild(tr);
    rows.set(q.symbol, tr);
    const opt = document.createElement('option');
    opt.value = opt.textContent = q.symbol;
    $('t-symbol').appendChild(opt);
  }
  const cls = q.change > 0 ? 'up' : q.change < 0 ? 'down' : '';
  tr.innerHTML = `<td>${q.symbol}</td><td class="price">${fmt(q.price)}</td><td class="${cls}">${q.change > 0 ? '+' : ''}${fmt(q.change)}</td>`
    + `<td class="${cls}">${q.changePercent > 0 ? '+' : ''}${fmt(q.changePercent)}%</td><td class="wide">${Number(q.volume).toLocaleString()}</td>`
    + `<td class="wide">${time(q.timestamp)}</td><td>${sparkline(prices)}</td>`;
  if (changed) {
    tr.classList.remove('flash');
    void tr.offsetWidth; // restart the highlight animation
    tr.classList.add('flash');
  }
}

function showConfirmation(c) {
  let tr = orders.get(c.tradeId);
  if (!tr) {
    tr = document.createElement('tr');
    tr.dataset.tradeId = c.tradeId;
    $('blotter').prepend(tr);
    orders.set(c.tradeId, tr);
  }
  tr.dataset.status = c.status;
  tr.innerHTML = `<td><span class="badge ${c.status}">${c.status}</span></td><td>${c.orderType}</td><td>${c.quantity}</td>`
    + `<td>${c.symbol}</td><td>${c.executedPrice == null ? '' : fmt(c.executedPrice)}</td><td class="wide">${time(c.executionTime)}</td>`;
  tr.title = c.message;
}

function showTape(t) {
  const li = document.createElement('li');
  li.innerHTML = `<span class="${t.side === 'BUY' ? 'up' : 'down'}">${t.side}</span> ${t.quantity} ${t.symbol} @ ${fmt(t.price)} <span class="hint">${time(t.timestamp)}</span>`;
  $('tape').prepend(li);
  while ($('tape').children.length > 30) $('tape').lastChild.remove();
}

function connect(login, passcode) {
  who = login || null;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  client = new StompJs.Client({
    brokerURL: `${scheme}://${location.host}/ws`,
    connectHeaders: login ? { login, passcode } : {},
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    reconnectDelay: 1000,
    maxReconnectDelay: 15000,
    reconnectTimeMode: StompJs.ReconnectionTimeMode.EXPONENTIAL,
  });
  client.onConnect = (frame) => {
    const beats = frame.headers['heart-beat'] && frame.headers['heart-beat'] !== '0,0' ? ', heart-beats on' : '';
    setStatus('connected', `connected as ${who ?? 'anonymous'}${beats}`);
    $('login').hidden = true;
    $('desk').hidden = false;
    $('trade-form').hidden = !who;
    $('t-anon').hidden = !!who;
    document.querySelector('.blotter').hidden = !who;
    client.subscribe('/topic/stock-quotes', (m) => {
      if (!fresh(m)) return;
      const quotes = JSON.parse(m.body);
      quotes.forEach(showQuote);
      $('last-tick').textContent = quotes.length ? `last tick ${time(quotes[0].timestamp)}` : '';
      $('last-tick').dataset.ticks = String(Number($('last-tick').dataset.ticks ?? 0) + 1);
    }, resumeFrom('/topic/stock-quotes'));
    client.subscribe('/topic/market-activity', (m) => {
      if (fresh(m)) showTape(JSON.parse(m.body));
    }, resumeFrom('/topic/market-activity'));
    if (who) {
      client.subscribe('/user/queue/trade-confirmation', (m) => showConfirmation(JSON.parse(m.body)));
      client.subscribe('/user/queue/errors', (m) => { $('t-error').textContent = JSON.parse(m.body).message; });
    }
  };
  client.onStompError = (frame) => {
    const message = frame.headers.message ?? 'error';
    setStatus('error', message);
    if (message.includes('authentication')) {
      // Wrong credentials: stop retrying and ask again.
      client.deactivate();
      $('login').hidden = false;
      $('desk').hidden = true;
    }
  };
  client.onWebSocketClose = () => {
    if (client.active) setStatus('reconnecting', 'reconnecting…');
  };
  client.beforeConnect = () => setStatus('connecting', 'connecting…');
  client.activate();
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  connect($('login-name').value.trim(), $('login-pass').value);
});
$('anonymous').addEventListener('click', () => connect(null, null));

document.querySelectorAll('input[name=kind]').forEach((r) => r.addEventListener('change', () => {
  $('t-limit').disabled = document.querySelector('input[name=kind]:checked').value !== 'limit';
}));

$('trade-form').addEventListener('submit', (e) => {
  e.preventDefault();
  $('t-error').textContent = '';
  const order = {
    symbol: $('t-symbol').value,
    quantity: Number($('t-qty').value),
    orderType: document.querySelector('input[name=side]:checked').value,
  };
  if (document.querySelector('input[name=kind]:checked').value === 'limit') order.limitPrice = Number($('t-limit').value);
  // The broker validates; its refusals come back on /user/queue/errors.
  client.publish({ destination: '/app/trade', body: JSON.stringify(order), headers: { 'content-type': 'application/json' } });
});
