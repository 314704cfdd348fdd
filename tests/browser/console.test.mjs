// The console in a real browser: Debian's chromium, headless, driven by
// puppeteer-core, against a storeledgerd serving tests/data/
// console_scenario.jsonl (merchant m1's mini store L1 upgraded into WeChat
// Store W1 on 2024-10-22, and synced twice; merchant m2's Channels store
// S2). Screenshots of each page go to $BROWSER_TEST_OUTPUT.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const scenario = path.join(here, '..', 'data', 'console_scenario.jsonl');
const storeledger = process.env.STORELEDGER_BIN;
const storeledgerd = process.env.STORELEDGERD_BIN;
const output = process.env.BROWSER_TEST_OUTPUT || fs.mkdtempSync(path.join(os.tmpdir(), 'console-shots-'));
const TOKENS = {
  investigator: 'investigator-token-0123456789',
  auditor: 'auditor-token-0123456789',
  m1: 'merchant1-token-0123456789',
  m2: 'merchant2-token-0123456789',
};
// Bounded: every wait in this file gives up after this long.
const WAIT_MS = 20000;

let dir, daemon, base, browser;

before(async () => {
  assert.ok(storeledger && storeledgerd, 'STORELEDGER_BIN and STORELEDGERD_BIN must be set');
  fs.mkdirSync(output, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'console-test-'));
  const db = path.join(dir, 'db');
  execFileSync(storeledger, ['--db', db, 'apply', scenario], { stdio: ['ignore', 'ignore', 'inherit'] });
  // A second product sync, after W1 listed p1: it copies nothing (p1 already
  // synced, p2 third-party) and must still be linked and described.
  const resync = path.join(dir, 'resync.jsonl');
  fs.writeFileSync(resync, JSON.stringify({ commandId: 'c25', occurredAt: '2024-10-28T09:00:00+08:00',
    syncProducts: { sourceStoreId: 'L1', targetStoreId: 'W1' } }) + '\n');
  execFileSync(storeledger, ['--db', db, 'apply', resync], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tokens = path.join(dir, 'tokens');
  fs.writeFileSync(tokens, `${TOKENS.investigator} investigator\n${TOKENS.auditor} auditor\n` +
    `${TOKENS.m1} merchant:m1\n${TOKENS.m2} merchant:m2\n`, { mode: 0o600 });
  daemon = spawn(storeledgerd, ['--db', db, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0',
    '--tokens', tokens, '--no-sync'], { stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('storeledgerd did not start: ' + text)), WAIT_MS);
    daemon.stdout.on('data', (chunk) => {
      text += chunk;
      const m = text.match(/console on (http:\/\/[^\s]+)\//);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    daemon.on('exit', (code) => reject(new Error(`storeledgerd exited ${code}: ${text}`)));
  });
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    userDataDir: path.join(dir, 'chromium-profile'),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    protocolTimeout: 60000,
  });
});

after(async () => {
  if (browser) await browser.close();
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.on('exit', resolve));
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function api(pathAndQuery, token) {
  const res = await fetch(base + pathAndQuery, { headers: { Authorization: 'Bearer ' + token } });
  assert.equal(res.status, 200, `${pathAndQuery}: ${await res.clone().text()}`);
  return res.json();
}

// A page signed in with `token` (a screenshot of the sign-in page to
// `shot`, if given).
async function signedInPage(token, shot) {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.setViewport({ width: 1280, height: 900 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.errors = errors;
  // Nothing but this server: no CDN, nothing fetched elsewhere at run time.
  const elsewhere = [];
  page.on('request', (r) => {
    // (data: URLs are chromium's own, such as the date picker's icon.)
    const url = r.url();
    if (!url.startsWith(base + '/') && !url.startsWith('blob:' + base + '/') && !url.startsWith('data:')) elsewhere.push(url);
  });
  page.elsewhere = elsewhere;
  await page.goto(base + '/#/signin');
  await page.waitForSelector('#sign-in-form');
  if (shot) {
    await noStrayText(page);
    await page.screenshot({ path: path.join(output, shot) });
  }
  await page.type('#token', token);
  await Promise.all([page.waitForSelector('#find-form'), page.click('#sign-in-form button')]);
  return page;
}

// No "null" or "undefined" printed where a value (or nothing) belongs.
async function noStrayText(page) {
  assert.doesNotMatch(await page.$eval('#main', (el) => el.innerText), /\b(null|undefined|NaN)\b/);
}

async function ready(page, hash) {
  await page.waitForFunction((h) => document.getElementById('main').getAttribute('data-ready') === h, {}, hash);
}

async function attr(page, selector, name) {
  return page.$eval(selector, (el, n) => el.getAttribute(n), name);
}

test('an investigator finds a legacy store by an order id and reads its page', async () => {
  const page = await signedInPage(TOKENS.investigator, 'sign-in.png');
  await page.type('#find-q', 'o1');
  await page.click('#find-form button');
  await page.waitForSelector('#find-results a[data-store="L1"]');
  await noStrayText(page);
  await page.screenshot({ path: path.join(output, 'find.png') });
  await page.click('#find-results a[data-store="L1"]');
  await ready(page, '#/store/L1');

  // Both stores on one axis, on the right (China) dates, and the upgrade.
  const date = (store, type) => attr(page, `#timeline g.event[data-store="${store}"][data-type="${type}"]`, 'data-date');
  assert.equal(await date('L1', 'storeOpened'), '2024-10-01');
  assert.equal(await date('L1', 'orderPlaced'), '2024-10-02');
  assert.equal(await date('L1', 'storeUpgraded'), '2024-10-22');
  assert.equal(await date('W1', 'storeOpened'), '2024-10-22');
  assert.equal(await date('W1', 'orderPaid'), '2024-10-25');
  assert.equal(await date('L1', 'commandRejected'), '2024-11-05');
  assert.match(await page.$eval('#timeline g.event[data-type="commandRejected"] title', (el) => el.textContent),
    /^2024-11-05 09:00 REFUSED R2: store L1 was upgraded to W1; it adds no products \(c19\)$/);
  assert.ok(await page.$('#timeline line.link[data-kind="upgrade"]'), 'the upgrade links the two lanes');
  // Each sync links the two lanes, the one that copied nothing too.
  assert.equal((await page.$$('#timeline line.link[data-kind="sync"]')).length, 2);
  assert.equal((await page.$$('#timeline g.policy')).length, 7);
  assert.equal(await attr(page, '#timeline g.policy[data-name="miniUpgradeOpen"]', 'data-date'), '2024-10-21');
  // Each policy line on its instant's date (+08:00), labelled.
  const policy = await api('/api/policy', TOKENS.investigator);
  for (const name of ['wechatStoreLaunch', 'channelsNoNewProducts', 'officialAccountSales', 'miniUpgradeOpen',
    'channelsLiveRoomClosed', 'miniEvoucherCutoff', 'miniPhysicalCutoff']) {
    const china = new Date(Date.parse(policy[name]) + 8 * 3600e3).toISOString().slice(0, 10);
    assert.equal(await attr(page, `#timeline g.policy[data-name="${name}"]`, 'data-date'), china, name);
    assert.match(await page.$eval(`#timeline g.policy[data-name="${name}"] text`, (el) => el.textContent),
      new RegExp(`${china.slice(5)}$`), name);
  }
  // One axis: the upgrade (L1) and the WeChat Store's opening (W1), one
  // command at one instant, are drawn at the same x.
  const cx = (store, type) => page.$eval(`#timeline g.event[data-store="${store}"][data-type="${type}"] circle`,
    (el) => el.getAttribute('cx'));
  assert.equal(await cx('L1', 'storeUpgraded'), await cx('W1', 'storeOpened'));
  const sync = (command) => page.$eval(`#sync-details li[data-command="${command}"]`, (el) => el.textContent);
  assert.match(await sync('c13'), /2024-10-22 10:30.*copied: p1; skipped: p2 \(third-party product\)/);
  assert.match(await sync('c25'), /2024-10-28 09:00.*copied: none; skipped: p1 \(already synced\), p2 \(third-party product\)/);

  // The balance chart: one per store (never a sum of the two), every
  // series, ending on what the ledger reports.
  assert.deepEqual(await page.$$eval('#balance-charts svg', (svgs) => svgs.map((el) => el.getAttribute('data-store'))),
    ['L1', 'W1']);
  assert.equal((await page.$$('#balance-charts path[data-series]')).length, 2 * 5);
  for (const store of ['L1', 'W1']) {
    const state = await api('/api/store?id=' + store, TOKENS.investigator);
    for (const field of ['pendingFen', 'availableFen', 'withdrawingFen', 'paidOutFen', 'depositFen']) {
      const last = await attr(page, `#balance-charts path[data-store="${store}"][data-series="${field}"]`, 'data-last');
      assert.equal(last, String(state.balances[field]), `${store} ${field}`);
    }
  }
  assert.equal(await attr(page, '#balance-charts path[data-store="L1"][data-series="availableFen"]', 'data-last'), '14000');
  assert.equal(await attr(page, '#balance-charts path[data-store="W1"][data-series="depositFen"]', 'data-last'), '50000');
  await noStrayText(page);
  await page.screenshot({ path: path.join(output, 'store.png'), fullPage: false });

  // Each row of the orders and withdrawals tables opens its own history.
  const historyRows = () => page.$$eval('#history tr', (rows) => rows.slice(1).map((r) =>
    [...r.children].map((c) => c.textContent)));
  await page.click('#orders a[data-order="o1"]');
  await page.waitForSelector('#history h2[data-filter="o1"]');
  assert.deepEqual((await historyRows()).map((r) => r[2]),
    ['orderPlaced', 'orderPaid', 'orderShipped', 'orderSettled']);
  await page.click('#withdrawals a[data-withdrawal="w1"]');
  await page.waitForSelector('#history h2[data-filter="w1"]');
  assert.deepEqual((await historyRows()).map((r) => r[2]), ['withdrawalRequested', 'withdrawalCompleted']);
  // A command's explain: from its id in the history, and from the timeline.
  const explained = (command) => page.waitForFunction((c) => document.querySelector('#explain h2')?.textContent ===
    'Command ' + c && document.getElementById('explain-outcome'), {}, command);
  await page.click('#history a[data-command="c11"]');
  await explained('c11');
  assert.match(await page.$eval('#explain-outcome', (el) => el.textContent), /^ACCEPTED/);
  await page.click('#timeline g.event[data-type="commandRejected"]');
  await explained('c19');
  assert.match(await page.$eval('#explain-outcome', (el) => el.textContent), /^REJECTED by R2: /);

  // As known at a position: right after c02 (the first product), before c03
  // (the second).
  const c02 = (await api('/api/explain?commandId=c02', TOKENS.investigator)).outcome.lastPosition;
  await page.$eval('#asof-position', (el, p) => { el.value = p; }, c02);
  await page.click('#asof-show');
  await page.waitForSelector('#state[data-version="2"]');
  assert.deepEqual(await page.$$eval('#products tr', (rows) => rows.slice(1).map((r) => r.children[0].textContent)), ['p1']);
  await page.$eval('#asof-position', (el) => { el.value = ''; });
  await page.click('#asof-show');
  await page.waitForSelector('#state[data-status="UPGRADED"]');

  // The as-of control changes the state shown.
  assert.equal(await attr(page, '#state', 'data-status'), 'UPGRADED');
  await page.$eval('#asof-time', (el) => { el.value = '2024-10-11T00:00'; });
  await page.click('#asof-show');
  await page.waitForSelector('#state[data-status="OPEN"]');
  assert.equal(await attr(page, '#state span[data-field="availableFen"]', 'data-fen'), '19000');
  assert.equal(await attr(page, '#state span[data-field="paidOutFen"]', 'data-fen'), '0');
  // ... and a diff of two instants.
  await page.$eval('#diff-from', (el) => { el.value = '2024-10-11T00:00'; });
  await page.$eval('#diff-to', (el) => { el.value = '2024-10-23T00:00'; });
  await page.click('#diff-form button');
  await page.waitForSelector('#diff-result table');
  assert.match(await page.$eval('#diff-result', (el) => el.textContent), /OPEN → UPGRADED/);
  const diffRows = await page.$$eval('#diff-result tr', (rows) => rows.slice(1).map((r) =>
    [...r.children].map((c) => c.textContent).join(' | ')));
  assert.ok(diffRows.includes('withdrawal | w1 | ADDED | '), diffRows.join('\n'));
  assert.ok(diffRows.includes('balance | available | CHANGED | 190.00 → 140.00'), diffRows.join('\n'));
  assert.ok(diffRows.includes('balance | paid out | CHANGED | 0.00 → 50.00'), diffRows.join('\n'));
  const asOf = await page.$('#asof-state');
  await noStrayText(page);
  await asOf.screenshot({ path: path.join(output, 'as-of.png') });
  assert.deepEqual(page.errors, []);
  assert.deepEqual(page.elsewhere, []);
  await page.close();
});

test('finance sees balances per kind, a statement with CSV, the audit and a verified digest', async () => {
  const page = await signedInPage(TOKENS.auditor);
  await page.goto(base + '/#/finance');
  await ready(page, '#/finance');
  await page.waitForSelector('#audit-result');
  assert.equal(await page.$eval('#audit-result', (el) => el.textContent), 'OK');
  assert.equal(await page.$eval('#totals span[data-kind="WECHAT_STORE"][data-field="depositFen"]', (el) => el.textContent), '500.00');
  // Every kind in its own row (the legacy kinds and the WeChat Store
  // apart), as the ledger reports them.
  const report = await api('/api/balances', TOKENS.auditor);
  assert.deepEqual(report.totals.map((t) => [t.kind, t.legacy]),
    [['MINI_STORE', true], ['CHANNELS_STORE', true], ['WECHAT_STORE', false]]);
  for (const t of report.totals) {
    for (const field of ['pendingFen', 'availableFen', 'withdrawingFen', 'paidOutFen', 'depositFen']) {
      assert.equal(await page.$eval(`#totals span[data-kind="${t.kind}"][data-field="${field}"]`, (el) => el.textContent),
        (Number(t.balances[field]) / 100).toFixed(2), `${t.kind} ${field}`);
    }
  }
  await page.type('#st-store', 'L1');
  await page.$eval('#st-from', (el) => { el.value = '2024-10-01'; });
  await page.$eval('#st-to', (el) => { el.value = '2024-11-01'; });
  await page.click('#statement-form button');
  await page.waitForSelector('#statement-csv');
  // The download is the CSV of `storeledger statement --format csv`.
  assert.equal(await attr(page, '#statement-csv', 'download'), 'statement-L1.csv');
  const downloads = path.join(dir, 'downloads');
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads });
  await page.click('#statement-csv');
  const saved = path.join(downloads, 'statement-L1.csv');
  for (const until = Date.now() + WAIT_MS; !fs.existsSync(saved) && Date.now() < until;) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const csv = fs.readFileSync(saved, 'utf8');
  assert.match(csv, /^section,account,position,event_id,occurred_at,/);
  assert.match(csv, /\nclosing,L1\/available,,,,,,14000,,\n/);
  const digest = await page.$eval('#head-digest', (el) => el.textContent);
  const head = await api('/api/digest', TOKENS.auditor);
  assert.equal(digest, `${head.position}:${head.hash}`);
  // A digest of another log fails; the head's verifies.
  const wrong = digest.slice(0, -1) + (digest.endsWith('0') ? '1' : '0');
  await page.type('#verify-digest', wrong);
  await page.click('#verify-form button');
  await page.waitForSelector('#verify-result p.error');
  assert.match(await page.$eval('#verify-result', (el) => el.textContent), /^FAILED: /);
  await page.$eval('#verify-digest', (el) => { el.value = ''; });
  await page.type('#verify-digest', digest);
  await page.click('#verify-form button');
  await page.waitForSelector('#verify-result p.ok');
  await page.evaluate(() => window.scrollTo(0, 0));
  await noStrayText(page);
  await page.screenshot({ path: path.join(output, 'finance.png') });
  assert.deepEqual(page.errors, []);
  assert.deepEqual(page.elsewhere, []);
  await page.close();
});

test("a merchant token cannot open another merchant's store", async () => {
  const page = await signedInPage(TOKENS.m2);
  await page.goto(base + '/#/store/L1');
  await page.waitForSelector('#error');
  assert.match(await page.$eval('#error', (el) => el.textContent), /may not read store L1/);
  assert.equal(await page.$('#timeline'), null);
  await noStrayText(page);
  await page.screenshot({ path: path.join(output, 'merchant-denied.png') });
  await page.goto(base + '/#/find/o1');
  await page.waitForSelector('#error');
  assert.equal(await page.$('#find-results'), null);
  await page.goto(base + '/#/store/S2');
  await ready(page, '#/store/S2');
  assert.ok(await page.$('#timeline g.event[data-store="S2"]'));
  await page.close();
});

test('no token, no data; an unknown token is refused at sign-in and not kept', async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  // A store's page without a token: the sign-in page, nothing of the store.
  await page.goto(base + '/#/store/L1');
  await page.waitForSelector('#sign-in-form');
  assert.equal(await page.$('#timeline'), null);
  assert.doesNotMatch(await page.$eval('body', (el) => el.innerText), /W1|o1|MINI_STORE/);
  await page.type('#token', 'not-a-token-0123456789');
  await page.click('#sign-in-form button');
  await page.waitForSelector('#signin-error');
  assert.equal(await page.$eval('#signin-error', (el) => el.textContent), 'unknown token');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await noStrayText(page);
  await page.close();
});
