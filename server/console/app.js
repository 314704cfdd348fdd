// The storeledger console: plain JavaScript, no framework, no CDN. Charts are
// SVG drawn here (a timeline and step lines need ~100 lines; a charting
// library would be a bundler, a lockfile and a dependency to keep for that).
// The token typed on the sign-in page lives in sessionStorage (this tab's
// session) and goes with every API call as `Authorization: Bearer`.
'use strict';

const TOKEN_KEY = 'storeledger.token';
const ZONE_MS = 8 * 3600 * 1000;  // the ledger's zone, +08:00 (DESIGN §1)
const SERIES = [
  ['pendingFen', 'pending', '#f4a261'],
  ['availableFen', 'available', '#2a9d8f'],
  ['withdrawingFen', 'withdrawing', '#e76f51'],
  ['paidOutFen', 'paid out', '#264653'],
  ['depositFen', 'deposit', '#8d99ae'],
];
const POLICY = [
  ['wechatStoreLaunch', 'WeChat Store launch'],
  ['channelsNoNewProducts', 'Channels: no new products'],
  ['officialAccountSales', 'official-account sales'],
  ['miniUpgradeOpen', 'mini upgrade open'],
  ['channelsLiveRoomClosed', 'live room closed'],
  ['miniEvoucherCutoff', 'e-voucher cutoff'],
  ['miniPhysicalCutoff', 'physical cutoff'],
];
const SVG = 'http://www.w3.org/2000/svg';

const main = document.getElementById('main');

// ------------------------------------------------------------------ helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick' || k === 'onsubmit') el[k] = v; else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// "2024-10-22 10:00" in the ledger's zone.
function chinaText(ms) {
  return new Date(ms + ZONE_MS).toISOString().slice(0, 16).replace('T', ' ');
}
function chinaDate(ms) { return chinaText(ms).slice(0, 10); }
// A datetime-local value ("2024-10-22T10:00") read in the ledger's zone.
function fromLocalInput(value) { return value ? value + ':00+08:00' : ''; }

function fen(v) { return (Number(v) / 100).toFixed(2); }

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  const res = await fetch(path, { headers });
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = '#/signin';
    throw new ApiError(401, 'sign in first');
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text;
    try { message = JSON.parse(text).error; } catch (e) { /* plain text */ }
    throw new ApiError(res.status, message);
  }
  return res.headers.get('Content-Type').startsWith('application/json') ? JSON.parse(text) : text;
}

function showError(where, e) {
  where.append(h('p', { class: 'error', id: 'error' }, e.message));
}

function table(headers, rows) {
  return h('table', {}, h('tr', {}, headers.map((x) => h('th', {}, x))),
    rows.map((r) => h('tr', {}, r.map((c) => (c instanceof Node ? h('td', {}, c)
      : h('td', typeof c === 'number' ? { class: 'num' } : {}, c))))));
}

// --------------------------------------------------------------- sign in

function signInPage(message) {
  main.replaceChildren(
    h('h2', {}, 'Sign in'),
    h('p', {}, 'Paste your storeledgerd token (investigator, auditor or merchant). ',
      'It is kept in this tab only, until you sign out or close it.'),
    h('form', { id: 'sign-in-form', onsubmit: async (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, document.getElementById('token').value.trim());
      try {
        await whoami();
        location.hash = '#/find';
      } catch (e) {
        sessionStorage.removeItem(TOKEN_KEY);
        signInPage(e.status === 401 ? 'unknown token' : e.message);
      }
    } }, h('input', { id: 'token', type: 'password', size: 40, autocomplete: 'off' }),
    ' ', h('button', { type: 'submit' }, 'Sign in')),
    // (replaceChildren prints a null as "null": no message, no node.)
    ...(message ? [h('p', { class: 'error', id: 'signin-error' }, message)] : []));
}

async function whoami() {
  const who = await api('/api/whoami');
  document.getElementById('who').textContent =
    (who.authenticated ? 'signed in as ' + who.role : 'no tokens (loopback)') +
    // A partitioned cluster: this node's console reads its own partition.
    (who.partitions ? ` — partition ${who.partition} of ${who.partitions}` : '');
  return who;
}

// ------------------------------------------------------------------ find

async function findPage(q) {
  main.replaceChildren(
    h('h2', {}, 'Find'),
    h('form', { id: 'find-form', onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = '#/find/' + encodeURIComponent(document.getElementById('find-q').value.trim());
    } }, h('input', { id: 'find-q', size: 30, placeholder: 'store, merchant, order, withdrawal or command id', value: q || '' }),
    ' ', h('button', { type: 'submit' }, 'Find')));
  if (!q) return;
  try {
    const found = await api('/api/search?q=' + encodeURIComponent(q));
    main.append(h('ul', { id: 'find-results' }, found.results.map((r) => {
      if (r.kind === 'command') {
        return h('li', {}, `command ${r.id}: ${r.status} ${r.rule} `,
          h('a', { href: '#/explain/' + encodeURIComponent(r.id) }, 'explain'), ' — stores: ',
          r.storeIds.map((id) => h('a', { href: '#/store/' + encodeURIComponent(id), 'data-store': id }, id + ' ')));
      }
      return h('li', {}, `${r.kind} ${r.id}: `,
        h('a', { href: '#/store/' + encodeURIComponent(r.storeId), 'data-store': r.storeId },
          `${r.storeKind} ${r.storeId}`), ` (merchant ${r.merchantId}`,
        r.upgradedTo ? `, upgraded to ${r.upgradedTo}` : '',
        r.upgradedFrom ? `, upgraded from ${r.upgradedFrom}` : '', ')');
    })));
  } catch (e) { showError(main, e); }
}

// ---------------------------------------------------------------- explain

async function explainPanel(commandId, where) {
  where.replaceChildren(h('h2', {}, 'Command ' + commandId));
  try {
    const x = await api('/api/explain?commandId=' + encodeURIComponent(commandId));
    const o = x.outcome;
    where.append(h('p', { id: 'explain-outcome' }, `${o.status}`, o.rule ? ` by ${o.rule}` : '',
      o.message ? `: ${o.message}` : '', ` — positions ${o.firstPosition}..${o.lastPosition}`));
    if (o.syncedProductIds.length || o.skipped.length) {
      where.append(h('p', { id: 'explain-sync' }, 'copied: ', o.syncedProductIds.join(', ') || 'none',
        '; skipped: ', o.skipped.map((k) => `${k.productId} (${k.reason})`).join(', ') || 'none'));
    }
    where.append(h('pre', {}, JSON.stringify(x, null, 1)));
  } catch (e) { showError(where, e); }
}

// ------------------------------------------------------------- store page

function eventTime(e) { return Date.parse(e.occurredAt); }
function eventType(e) { return Object.keys(e.payload || {})[0] || e.eventType; }

function timelineSvg(lanes, policy, domain, syncLinks) {
  const width = 1200, left = 90, right = 20, laneH = 70, top = 70;
  const height = top + lanes.length * laneH + 20;
  const x = (ms) => left + (ms - domain[0]) / (domain[1] - domain[0]) * (width - left - right);
  const svg = s('svg', { width, height, id: 'timeline', 'data-from': domain[0], 'data-to': domain[1] });
  // Date ticks: every month start.
  const d = new Date(domain[0] + ZONE_MS);
  for (let m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)); m.getTime() - ZONE_MS < domain[1];
    m = new Date(Date.UTC(m.getUTCFullYear(), m.getUTCMonth() + 1, 1))) {
    const ms = m.getTime() - ZONE_MS;
    if (ms < domain[0]) continue;
    svg.append(s('line', { x1: x(ms), x2: x(ms), y1: top - 5, y2: height - 15, stroke: '#eee' }),
      s('text', { x: x(ms) + 2, y: height - 4 }, chinaDate(ms)));
  }
  policy.forEach(([name, label, ms], i) => {
    if (ms < domain[0] || ms > domain[1]) return;
    const nearEnd = x(ms) > width - 160;  // label to the left of its line
    svg.append(s('g', { class: 'policy', 'data-name': name, 'data-date': chinaDate(ms) },
      s('line', { x1: x(ms), x2: x(ms), y1: 8 + (i % 4) * 14, y2: height - 15 }),
      s('text', { x: x(ms) + (nearEnd ? -3 : 3), y: 18 + (i % 4) * 14, 'text-anchor': nearEnd ? 'end' : 'start' },
        `${label} ${chinaDate(ms).slice(5)}`)));
  });
  const positions = {};
  lanes.forEach((lane, li) => {
    const y = top + li * laneH + laneH / 2;
    svg.append(s('line', { x1: left, x2: width - right, y1: y, y2: y, stroke: '#bbb' }),
      s('text', { class: 'lane-label', x: 4, y: y + 4 }, lane.state.storeId),
      s('text', { x: 4, y: y + 16 }, lane.state.kind.replace('_STORE', '').toLowerCase()));
    lane.events.forEach((e, i) => {
      const type = eventType(e);
      const ms = eventTime(e);
      const refused = type === 'commandRejected';
      const cy = y + ((i % 3) - 1) * 9;
      const g = s('g', { class: 'event', 'data-store': lane.state.storeId, 'data-type': type,
        'data-date': chinaDate(ms), 'data-position': e.position, 'data-command': e.commandId });
      const title = refused
        ? `${chinaText(ms)} REFUSED ${e.payload.commandRejected.rule}: ${e.payload.commandRejected.message} (${e.commandId})`
        : `${chinaText(ms)} ${type} (${e.commandId}, position ${e.position})`;
      if (refused) {
        g.append(s('line', { class: 'refusal', x1: x(ms) - 5, x2: x(ms) + 5, y1: cy - 5, y2: cy + 5 }),
          s('line', { class: 'refusal', x1: x(ms) - 5, x2: x(ms) + 5, y1: cy + 5, y2: cy - 5 }));
      } else {
        g.append(s('circle', { cx: x(ms), cy, r: 4, fill: colorOf(type) }));
      }
      g.append(s('title', {}, title));
      g.addEventListener('click', () => explainPanel(e.commandId, document.getElementById('explain')));
      svg.append(g);
      positions[`${lane.state.storeId}/${type}`] = [x(ms), y];
    });
  });
  if (lanes.length === 2) {
    const [a, b] = lanes.map((l) => l.state.storeId);
    const up = positions[`${a}/storeUpgraded`], opened = positions[`${b}/storeOpened`];
    if (up && opened) {
      svg.append(s('line', { class: 'link', 'data-kind': 'upgrade', x1: up[0], y1: up[1], x2: opened[0], y2: opened[1] }),
        s('text', { x: up[0] - 4, y: (up[1] + opened[1]) / 2, 'text-anchor': 'end' }, 'upgrade'));
    }
    for (const ms of syncLinks) {
      svg.append(s('line', { class: 'link', 'data-kind': 'sync', x1: x(ms), y1: top + laneH / 2, x2: x(ms),
        y2: top + laneH * 1.5, 'stroke-dasharray': '3 2' }),
      s('text', { x: x(ms) + 4, y: top + laneH + 4 }, 'product sync'));
    }
  }
  return svg;
}

function colorOf(type) {
  if (type.startsWith('store')) return '#7b2cbf';
  if (type.startsWith('product')) return '#4361ee';
  if (type.startsWith('order')) return '#2a9d8f';
  if (type.startsWith('withdrawal')) return '#e76f51';
  return '#8d99ae';
}

// Balances of one store over business time, as step lines: one chart per
// store, side by side, on the same scale; never summed across stores.
function balanceSvg(storeId, points, domain, maxFen) {
  const width = 590, height = 220, left = 60, bottom = 20, top = 10;
  const x = (ms) => left + (ms - domain[0]) / (domain[1] - domain[0]) * (width - left - 10);
  const y = (v) => top + (1 - v / maxFen) * (height - top - bottom);
  const svg = s('svg', { width, height, class: 'balance-chart', 'data-store': storeId });
  svg.append(s('line', { x1: left, x2: width - 10, y1: y(0), y2: y(0), stroke: '#999' }),
    s('text', { x: 2, y: y(maxFen) + 8 }, fen(maxFen)), s('text', { x: 2, y: y(0) }, '0.00'),
    s('text', { x: left, y: height - 4 }, storeId + ' (CNY)'));
  for (const [field, label, color] of SERIES) {
    let d = `M ${x(domain[0])} ${y(0)}`;
    let last = 0;
    for (const p of points) {
      const v = Number(p.balances[field]);
      d += ` H ${x(Date.parse(p.occurredAt))} V ${y(v)}`;
      last = v;
    }
    d += ` H ${x(domain[1])}`;
    svg.append(s('path', { d, fill: 'none', stroke: color, 'stroke-width': 2, 'data-series': field,
      'data-store': storeId, 'data-last': last }, s('title', {}, `${storeId} ${label}: ${fen(last)} now`)));
  }
  return svg;
}

function stateView(state, historyFilter) {
  const b = state.balances;
  return h('div', { id: 'state', 'data-status': state.status, 'data-version': state.version },
    h('p', {}, `${state.kind} ${state.storeId}, merchant ${state.merchantId} (${state.subject}), status `,
      h('b', { id: 'state-status' }, state.status),
      state.upgradedTo ? ` → ${state.upgradedTo}` : '', state.upgradedFrom ? ` ← ${state.upgradedFrom}` : '',
      `, stream version ${state.version}`),
    table(SERIES.map(([, label]) => label + ' (CNY)'),
      [SERIES.map(([field]) => h('span', { 'data-field': field, 'data-fen': b[field] }, fen(b[field])))]),
    h('div', { class: 'row' },
      h('div', { id: 'products' }, h('h2', {}, 'Products'), table(['product', 'kind', 'origin', 'status', 'effective', 'synced from'],
        state.products.map((p) => [p.productId, p.kind, p.origin, p.status, p.effectiveStatus, p.syncedFrom]))),
      h('div', {}, h('h2', {}, 'Orders'), h('div', { id: 'orders' }, table(['order', 'status', 'total', 'paid', 'refunded', ''],
        state.orders.map((o) => [o.orderId, o.status, fen(o.totalFen), fen(o.paidFen), fen(o.refundedFen),
          h('a', { href: '#', 'data-order': o.orderId, onclick: (ev) => { ev.preventDefault(); historyFilter('orderId', o.orderId); } }, 'history')])))),
      h('div', {}, h('h2', {}, 'Withdrawals'), h('div', { id: 'withdrawals' }, table(['withdrawal', 'status', 'amount', ''],
        state.withdrawals.map((w) => [w.withdrawalId, w.status, fen(w.amountFen),
          h('a', { href: '#', 'data-withdrawal': w.withdrawalId, onclick: (ev) => { ev.preventDefault(); historyFilter('withdrawalId', w.withdrawalId); } }, 'history')]))))));
}

// Does this event (or refused command) name the order / withdrawal?
function names(e, key, id) { return JSON.stringify(e.payload).includes(`"${key}":"${id}"`); }

function historyTable(events) {
  return table(['position', 'business time (+08:00)', 'event', 'command', 'detail'], events.map((e) => {
    const type = eventType(e);
    const body = e.payload[type];
    const detail = type === 'commandRejected' ? `REFUSED ${body.rule}: ${body.message}` : JSON.stringify(body);
    return [e.position, chinaText(eventTime(e)), type,
      h('a', { href: '#', 'data-command': e.commandId, onclick: (ev) => { ev.preventDefault(); explainPanel(e.commandId, document.getElementById('explain')); } }, e.commandId),
      detail.length > 140 ? detail.slice(0, 140) + '…' : detail];
  }));
}

async function storePage(storeId) {
  main.replaceChildren(h('h2', { id: 'store-title' }, 'Store ' + storeId));
  let state;
  try {
    state = await api('/api/store?id=' + encodeURIComponent(storeId));
  } catch (e) { showError(main, e); return; }
  // An upgraded pair: the legacy store first, the WeChat Store below it.
  const ids = state.upgradedTo ? [storeId, state.upgradedTo]
    : state.upgradedFrom ? [state.upgradedFrom, storeId] : [storeId];
  const lanes = [];
  try {
    for (const id of ids) {
      const [st, history, series] = await Promise.all([
        id === storeId ? state : api('/api/store?id=' + encodeURIComponent(id)),
        api('/api/history?store=' + encodeURIComponent(id)),
        api('/api/balance-series?store=' + encodeURIComponent(id))]);
      lanes.push({ state: st, events: history.events, points: series.points });
    }
  } catch (e) { showError(main, e); return; }
  const policyDoc = await api('/api/policy');
  const policy = POLICY.map(([name, label]) => [name, label, Date.parse(policyDoc[name])]);
  const times = lanes.flatMap((l) => l.events.map(eventTime));
  const lo = Math.min(...times, policy[0][2]) - 3 * 86400e3;
  const hi = Math.max(...times, policy[policy.length - 1][2]) + 3 * 86400e3;
  const domain = [lo, hi];
  // The product syncs: each leaves a ProductsSynced on the WeChat Store's
  // stream (R9), with what it copied and what it skipped and why, even when
  // it copied nothing.
  const syncs = lanes.length === 2 ? lanes[1].events.filter((e) => e.payload.productsSynced) : [];
  main.append(h('h2', {}, 'Timeline (business time, +08:00; ✕ = refused command, dashed = policy instants)'),
    timelineSvg(lanes, policy, domain, syncs.map(eventTime)),
    h('div', { class: 'legend' }, ['store', 'product', 'order', 'withdrawal', 'deposit'].map((k) =>
      h('span', {}, h('i', { class: 'kind-' + k }), k))));
  if (syncs.length) {
    main.append(h('h2', {}, 'Product syncs'), h('ul', { id: 'sync-details' }, syncs.map((e) => {
      const sync = e.payload.productsSynced;
      return h('li', { 'data-command': e.commandId }, `${chinaText(eventTime(e))} `,
        h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); explainPanel(e.commandId, document.getElementById('explain')); } },
          e.commandId),
        ` ${sync.sourceStoreId} → ${sync.storeId}: copied: ${sync.copiedProductIds.join(', ') || 'none'}; skipped: `,
        sync.skipped.map((k) => `${k.productId} (${k.reason})`).join(', ') || 'none');
    })));
  }
  for (const k of ['store', 'product', 'order', 'withdrawal', 'deposit']) {
    for (const el of main.querySelectorAll('.kind-' + k)) el.style.background = colorOf(k);
  }
  const maxFen = Math.max(1, ...lanes.flatMap((l) => l.points.flatMap((p) => SERIES.map(([f]) => Number(p.balances[f])))));
  main.append(h('h2', {}, 'Balances over business time (each store apart, same scale)'),
    h('div', { class: 'legend' }, SERIES.map(([, label, color]) => h('span', {}, h('i', { class: 'swatch-' + label.replace(' ', '-') }), label))),
    h('div', { class: 'row', id: 'balance-charts' }, lanes.map((l) => balanceSvg(l.state.storeId, l.points, domain, maxFen))));
  for (const [, label, color] of SERIES) {
    for (const el of main.querySelectorAll('.swatch-' + label.replace(' ', '-'))) el.style.background = color;
  }
  const explain = h('div', { id: 'explain', class: 'panel' }, 'Click an event or a command id to explain it.');

  // As of / diff.
  const stateBox = h('div', { id: 'asof-state' });
  const historyBox = h('div', { id: 'history' });
  const own = lanes.find((l) => l.state.storeId === storeId);
  const showHistory = (key, id) => {
    const events = key ? own.events.filter((e) => names(e, key, id)) : own.events;
    historyBox.replaceChildren(h('h2', { 'data-filter': id || '' }, key ? `History of ${id}` : 'History (events and refused commands)'),
      historyTable(events));
  };
  const renderState = (st) => stateBox.replaceChildren(stateView(st, showHistory));
  renderState(state);
  const diffBox = h('div', { id: 'diff-result' });
  main.append(
    h('h2', {}, 'As of'),
    h('form', { id: 'asof-form', onsubmit: async (ev) => {
      ev.preventDefault();
      const t = fromLocalInput(document.getElementById('asof-time').value);
      const p = document.getElementById('asof-position').value.trim();
      const q = new URLSearchParams({ id: storeId });
      if (t) q.set('asOf', t);
      if (p) q.set('position', p);
      try { renderState(await api('/api/store?' + q)); } catch (e) { stateBox.replaceChildren(); showError(stateBox, e); }
    } }, 'business time (+08:00) ', h('input', { id: 'asof-time', type: 'datetime-local' }),
    ' as known at position ', h('input', { id: 'asof-position', size: 8, placeholder: 'head' }),
    ' ', h('button', { type: 'submit', id: 'asof-show' }, 'Show')),
    stateBox,
    h('h2', {}, 'Diff of two instants'),
    h('form', { id: 'diff-form', onsubmit: async (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams({ store: storeId,
        from: fromLocalInput(document.getElementById('diff-from').value),
        to: fromLocalInput(document.getElementById('diff-to').value) });
      diffBox.replaceChildren();
      try {
        const d = await api('/api/diff?' + q);
        const rows = [
          ...d.products.map((c) => ['product', c.productId, c.change, c.fields.join(', ')]),
          ...d.orders.map((c) => ['order', c.orderId, c.change, c.fields.join(', ')]),
          ...d.withdrawals.map((c) => ['withdrawal', c.withdrawalId, c.change, c.fields.join(', ')]),
          ...SERIES.filter(([f]) => Number(d.balances.delta[f]) !== 0).map(([f, label]) =>
            ['balance', label, 'CHANGED', `${fen(d.balances.before[f])} → ${fen(d.balances.after[f])}`])];
        diffBox.append(h('p', {}, `status ${d.statusBefore} → ${d.statusAfter}`), table(['what', 'id', 'change', 'detail'], rows));
      } catch (e) { showError(diffBox, e); }
    } }, 'from ', h('input', { id: 'diff-from', type: 'datetime-local' }), ' to ',
    h('input', { id: 'diff-to', type: 'datetime-local' }), ' ', h('button', { type: 'submit' }, 'Diff')),
    diffBox, explain, historyBox);
  showHistory();
}

// --------------------------------------------------------------- finance

async function financePage() {
  main.replaceChildren(h('h2', {}, 'Finance'));
  const balancesBox = h('div', { id: 'totals' });
  const auditBox = h('div', { id: 'audit', class: 'panel' });
  const statementBox = h('div', { id: 'statement' });
  const verifyBox = h('div', { id: 'verify-result' });
  main.append(h('h2', {}, 'Balances per store kind (legacy and WeChat Store apart)'), balancesBox,
    h('h2', {}, 'Audit and digest'), auditBox,
    h('h2', {}, 'Verify a digest'),
    h('form', { id: 'verify-form', onsubmit: async (ev) => {
      ev.preventDefault();
      verifyBox.replaceChildren();
      try {
        const v = await api('/api/verify?digest=' + encodeURIComponent(document.getElementById('verify-digest').value.trim()));
        verifyBox.append(h('p', { class: v.verified ? 'ok' : 'error' }, (v.verified ? 'VERIFIED: ' : 'FAILED: ') + v.message));
      } catch (e) { showError(verifyBox, e); }
    } }, h('input', { id: 'verify-digest', size: 80, placeholder: 'POSITION:HEX as printed by storeledger digest' }),
    ' ', h('button', { type: 'submit' }, 'Verify')), verifyBox,
    h('h2', {}, 'Statement'),
    h('form', { id: 'statement-form', onsubmit: async (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams({ store: document.getElementById('st-store').value.trim(),
        from: document.getElementById('st-from').value, to: document.getElementById('st-to').value });
      statementBox.replaceChildren();
      try {
        const st = await api('/api/statement?' + q);
        const csv = await api('/api/statement?' + q + '&format=csv');
        const link = h('a', { id: 'statement-csv', download: `statement-${q.get('store')}.csv`,
          href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })) }, 'Download CSV');
        statementBox.append(link,
          h('h2', {}, 'Opening'), table(['account', 'balance'], st.opening.map((r) => [r.account, fen(r.balanceFen)])),
          h('h2', {}, 'Postings'), table(['position', 'business time', 'account', 'debit', 'credit', 'balance after', 'order', 'withdrawal'],
            st.lines.map((l) => [l.posting.position, chinaText(Date.parse(l.posting.occurredAt)), l.posting.account,
              fen(l.posting.debitFen), fen(l.posting.creditFen), fen(l.balanceAfterFen), l.posting.orderId, l.posting.withdrawalId])),
          h('h2', {}, 'Closing'), table(['account', 'balance'], st.closing.map((r) => [r.account, fen(r.balanceFen)])));
      } catch (e) { showError(statementBox, e); }
    } }, 'store ', h('input', { id: 'st-store', size: 12 }), ' from ', h('input', { id: 'st-from', type: 'date' }),
    ' to ', h('input', { id: 'st-to', type: 'date' }), ' (dates are +08:00; the period is [from, to)) ',
    h('button', { type: 'submit' }, 'Statement')), statementBox);
  try {
    const report = await api('/api/balances');
    balancesBox.append(table(['kind', 'legacy', 'stores', ...SERIES.map(([, l]) => l)],
      report.totals.map((t) => [t.kind, t.legacy ? 'legacy' : 'new', t.stores,
        ...SERIES.map(([f]) => h('span', { 'data-kind': t.kind, 'data-field': f }, fen(t.balances[f])))])));
  } catch (e) { showError(balancesBox, e); }
  const runAudit = async (run) => {
    auditBox.replaceChildren('auditing…');
    try {
      const [a, d] = await Promise.all([api('/api/audit' + (run ? '?run=1' : '')), api('/api/digest')]);
      auditBox.replaceChildren(
        h('p', {}, 'Last audit ', chinaText(Date.parse(a.ranAt)), ` (${a.seconds.toFixed(2)} s): `,
          h('span', { id: 'audit-result', class: a.report.ok ? 'ok' : 'error' },
            a.report.ok ? 'OK' : `FAILED, ${a.report.violationsTotal} violations`),
          ` — ${a.report.eventsChecked} events, ${a.report.postingsChecked} postings checked`),
        a.report.violations.length ? table(['check', 'position', 'message'], a.report.violations.map((v) => [v.check, v.position, v.message])) : '',
        h('p', {}, 'Head digest: ', h('code', { id: 'head-digest' }, `${d.position}:${d.hash}`)),
        h('button', { type: 'button', onclick: () => runAudit(true) }, 'Audit again'));
    } catch (e) { auditBox.replaceChildren(); showError(auditBox, e); }
  };
  runAudit(false);
}

// ---------------------------------------------------------------- routing

async function route() {
  const hash = location.hash || '#/find';
  const [, page, arg] = hash.match(/^#\/([a-z]*)\/?(.*)$/) || [];
  if (page === 'signin') { signInPage(); return; }
  try {
    await whoami();
  } catch (e) {
    if (e.status !== 401) signInPage(e.message);
    return;
  }
  const id = decodeURIComponent(arg || '');
  if (page === 'store') await storePage(id);
  else if (page === 'finance') await financePage();
  else if (page === 'explain') { main.replaceChildren(); const box = h('div', { id: 'explain' }); main.append(box); await explainPanel(id, box); }
  else await findPage(id);
  main.setAttribute('data-ready', hash);
}

document.getElementById('sign-out').onclick = () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = '#/signin';
};
window.addEventListener('hashchange', route);
route();
