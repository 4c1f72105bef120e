// End to end in a real browser: a gatelog daemon started here with a few
// decisions, Debian's Chromium driven by playwright-core. An auditor pins
// the keys, finds a decision, sees it verified; a test proxy that tampers
// with receipts makes the same pages say NOT verified. Screenshots go to
// $UI_ARTIFACTS (default ui/artifacts, gitignored).
//
// Needs GATELOG_BIN (a built gatelog binary). Without Chromium the test is
// skipped, except under CI=true where it fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = process.env.UI_ARTIFACTS || join(here, '..', 'artifacts');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const gatelogBin = process.env.GATELOG_BIN;
const inCI = process.env.CI === 'true';
const chromiumFlags = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
];

const requests = [
  { subject: { id: 'alice', groups: ['release-managers'], mfa: true }, action: 'deploy',
    resource: { system: 'tekton', name: 'shop', environment: 'production', repository: 'acme/shop', ref: 'refs/tags/v1.4.0' },
    context: { unverified: { commit_author: 'mallory' } }, source: { adapter: 'tekton', request_id: 'run-81' } },
  { subject: { id: 'bob', groups: ['developers'] }, action: 'deploy', resource: { system: 'github', name: 'shop', environment: 'production' } },
  { subject: { id: 'carol', groups: ['sre'], mfa: true }, action: 'secret.read',
    resource: { system: 'gitlab', kind: 'secret', name: 'db-password', environment: 'production' } },
  { action: 'pipeline.trigger', resource: { system: 'jenkins', name: 'nightly' } },
];

let daemon, proxy, browser, dataDir, base, proxyBase, apiKey, logPEM, signerPEM;
const receipts = [];
let skipReason = '';

async function startDaemon() {
  dataDir = mkdtempSync(join(tmpdir(), 'gatelog-ui-'));
  const p = spawn(gatelogBin, ['serve', '--addr', '127.0.0.1:0', '--data', dataDir, '--checkpoint-interval', '200ms'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start:\n${log}`)), 60000);
    p.stderr.on('data', (d) => {
      log += d;
      const m = /gatelog listening"? addr=(\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    p.on('exit', (code) => reject(new Error(`daemon exited ${code}:\n${log}`)));
  });
  p.removeAllListeners('exit');
  return { p, url: `http://${addr}` };
}

// tamper decides how the proxy changes the receipt of the i-th decision.
const tamperings = [
  { name: 'envelope-byte', check: 'envelope', edit: (r) => {
    const env = Buffer.from(r.envelope, 'base64').toString('utf8');
    const i = env.indexOf('"payload":"') + 11 + 40;
    r.envelope = Buffer.from(env.slice(0, i) + (env[i] === 'A' ? 'B' : 'A') + env.slice(i + 1), 'utf8').toString('base64');
  } },
  { name: 'proof-hash-byte', check: 'inclusion proof', edit: (r) => {
    const h = r.inclusion_proof.hashes;
    h[0] = (h[0][0] === '0' ? '1' : '0') + h[0].slice(1);
  } },
  { name: 'checkpoint-size', check: 'checkpoint signature', edit: (r) => {
    const lines = r.inclusion_proof.checkpoint.split('\n');
    lines[1] = String(Number(lines[1]) + 1);
    r.inclusion_proof.checkpoint = lines.join('\n');
    r.inclusion_proof.tree_size += 1;
  } },
];

// startProxy forwards everything to the daemon and tampers with the
// receipts of the decisions tamperings names.
function startProxy(target) {
  const srv = http.createServer((req, res) => {
    const up = http.request(target + req.url, { method: req.method, headers: req.headers }, (ur) => {
      const m = /^\/v1\/decisions\/([0-9a-f-]+)$/.exec(req.url);
      const k = m ? receipts.findIndex((r) => r.decision_id === m[1]) : -1;
      if (k < 0 || k >= tamperings.length || ur.statusCode !== 200) {
        res.writeHead(ur.statusCode, ur.headers);
        ur.pipe(res);
        return;
      }
      const chunks = [];
      ur.on('data', (c) => chunks.push(c));
      ur.on('end', () => {
        const r = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        tamperings[k].edit(r);
        const body = JSON.stringify(r);
        const headers = { ...ur.headers, 'content-length': Buffer.byteLength(body) };
        res.writeHead(200, headers);
        res.end(body);
      });
    });
    up.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(up);
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

async function decide(body) {
  const resp = await fetch(`${base}/v1/decide?wait=checkpoint`, {
    method: 'POST', headers: { Authorization: `Bearer ${apiKey}` }, body: JSON.stringify(body),
  });
  assert.equal(resp.status, 200, await resp.clone().text());
  return resp.json();
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    skipReason = `playwright-core is not installed (run scripts/ui-test.sh): ${e.message}`;
  }
  if (!skipReason && !existsSync(chromiumPath)) skipReason = `no Chromium at ${chromiumPath} (scripts/ui-test.sh installs Debian's chromium)`;
  if (!skipReason) {
    try {
      browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumFlags });
    } catch (e) {
      skipReason = `Chromium did not start: ${e.message}`;
    }
  }
  if (skipReason) {
    if (inCI) throw new Error(`browser test cannot run under CI: ${skipReason}`);
    return;
  }
  assert.ok(gatelogBin, 'set GATELOG_BIN to a built gatelog binary');
  const d = await startDaemon();
  daemon = d.p;
  base = d.url;
  apiKey = readFileSync(join(dataDir, 'bootstrap-api-key'), 'utf8').trim();
  logPEM = readFileSync(join(dataDir, 'keys/log.pub'), 'utf8');
  signerPEM = readFileSync(join(dataDir, 'keys/decision.pub'), 'utf8');
  for (const r of requests) receipts.push(await decide(r));
  proxy = await startProxy(base);
  proxyBase = `http://127.0.0.1:${proxy.address().port}`;
});

after(async () => {
  await browser?.close();
  proxy?.close();
  if (daemon) {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.on('exit', resolve));
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// newPage opens a fresh browser context (its own storage) on origin,
// failing the test on any console error or CSP violation.
async function newPage(t, origin) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const problems = [];
  // A 404 from probing an API the daemon lacks is expected; anything else
  // (a script error, a CSP violation) is a bug.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  t.after(async () => {
    await ctx.close();
    assert.deepEqual(problems, [], 'the page logged errors');
  });
  await page.goto(`${origin}/ui/#/keys`);
  return page;
}

// pinKeys does what an auditor does first: paste the keys obtained from
// the log operator, and the API key.
async function pinKeys(page, log = logPEM, signer = signerPEM) {
  await page.fill('textarea[name=log-key]', log);
  await page.fill('textarea[name=signer-key]', signer);
  await page.click('button:has-text("Pin keys")');
  await page.waitForSelector('text=Pinned.');
  await page.fill('input[name=apikey]', apiKey);
  await page.click('button:has-text("Use key")');
  await page.waitForSelector('text=API key set');
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

test('an auditor finds a decision and sees it verified', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const page = await newPage(t, base);
  await pinKeys(page);
  await shot(page, '01-keys');
  await page.click('header nav >> text=Search');
  // The newest log entries (or the audit search) list alice's deploy.
  const row = page.locator('tr.row', { hasText: 'alice' }).first();
  await row.waitFor();
  await shot(page, '02-search');
  await row.click();
  const banner = page.locator('[data-verification]');
  await banner.waitFor();
  assert.equal(await banner.getAttribute('data-verification'), 'verified', await banner.innerText());
  assert.match(await banner.innerText(), /✔ verified/);
  assert.ok(page.url().endsWith(`#/decision/${receipts[0].decision_id}`), page.url());
  const text = await page.locator('main').innerText();
  for (const want of [receipts[0].allow ? 'ALLOWED' : 'DENIED', 'alice', 'mallory', receipts[0].reasons[0], receipts[0].uuid]) assert.ok(text.includes(want), `decision page lacks ${want}`);
  await shot(page, '03-decision-verified');

  await page.goto(`${base}/ui/#/decision/${receipts[2].decision_id}`);
  await page.locator('[data-verification=verified]').waitFor();
  assert.match(await page.locator('main').innerText(), /DENIED/);
  await shot(page, '04-decision-with-alert');

  await page.click('header nav >> text=Log');
  const logBanner = page.locator('[data-verification]');
  await logBanner.waitFor();
  assert.equal(await logBanner.getAttribute('data-verification'), 'verified', await logBanner.innerText());
  // The log holds the daemon's start-up policy record and the decisions.
  assert.match(await page.locator('main').innerText(), new RegExp(`tree size\\s+${receipts.length + 1}`));
  await shot(page, '05-log');
  // The log grows; the browser asks for a consistency proof and checks it.
  receipts.push(await decide({ action: 'pipeline.trigger', resource: { system: 'tekton', name: 'release' } }));
  await page.reload();
  await page.waitForSelector('text=proved');
  await shot(page, '05-log-consistency');
});

test('the search filters, counts, pages and exports; alerts stream live', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const page = await newPage(t, base);
  await pinKeys(page);
  await page.goto(`${base}/ui/#/`);
  const form = page.locator('form.filters');
  await form.waitFor();
  await form.locator('input[name=subject]').fill('bob');
  await form.locator('button[type=submit]').click();
  await page.waitForFunction(() => location.hash.includes('subject=bob'));
  const rows = page.locator('tr.row');
  await rows.first().waitFor();
  assert.equal(await rows.count(), 1);
  assert.match(await rows.first().innerText(), /bob[\s\S]*deny/);
  await page.locator('svg.chart').waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('button:has-text("Export CSV")')]);
  const csv = readFileSync(await download.path(), 'utf8');
  assert.match(csv, /^log_index,uuid,id,time,subject/);
  assert.equal(csv.trim().split('\r\n').length, 2, csv);
  assert.ok(csv.includes(receipts[1].decision_id));
  await shot(page, '08-search-filtered');
  await page.goto(`${base}/ui/#/?limit=2`);
  await page.click('button:has-text("Load more")');
  await page.waitForFunction(() => document.querySelectorAll('tr.row').length === 4);

  await page.click('header nav >> text=Alerts');
  await page.locator('[data-stream=live]').waitFor();
  await shot(page, '09-alerts');
  await page.click('header nav >> text=Policies');
  await page.waitForSelector('text=In force at the newest decision');
  assert.ok((await page.locator('main').innerText()).includes(JSON.parse(Buffer.from(
    JSON.parse(Buffer.from(receipts[0].envelope, 'base64')).payload, 'base64')).predicate.policy.sha256.slice(0, 16)));
  await shot(page, '10-policies');
});

test('lookup by id works and an unknown id says so', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const page = await newPage(t, base);
  await pinKeys(page);
  await page.goto(`${base}/ui/#/`);
  await page.fill('input[name=decision]', receipts[3].decision_id);
  await page.click('button:has-text("Open")');
  await page.locator('[data-verification=verified]').waitFor();
  await page.goto(`${base}/ui/#/decision/00000000-0000-4000-8000-000000000000`);
  await page.waitForSelector('text=Could not fetch the decision');
});

test('tampered receipts from a proxy show NOT verified, naming the check', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const page = await newPage(t, proxyBase);
  await pinKeys(page);
  for (const [i, tm] of tamperings.entries()) {
    await page.goto(`${proxyBase}/ui/#/decision/${receipts[i].decision_id}`);
    const banner = page.locator('[data-verification]');
    await banner.waitFor();
    const text = await banner.innerText();
    assert.equal(await banner.getAttribute('data-verification'), 'not-verified', text);
    assert.ok(text.includes(`NOT verified: ${tm.check}:`), `${tm.name}: ${text}`);
    await shot(page, `06-tampered-${tm.name}`);
  }
  // The untouched decision through the same proxy still verifies.
  await page.goto(`${proxyBase}/ui/#/decision/${receipts[3].decision_id}`);
  await page.locator('[data-verification=verified]').waitFor();
});

test('a receipt checked against the wrong pinned key is NOT verified', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const page = await newPage(t, base);
  await pinKeys(page, signerPEM, signerPEM); // the signer key pinned as the log key
  await page.goto(`${base}/ui/#/decision/${receipts[0].decision_id}`);
  const banner = page.locator('[data-verification]');
  await banner.waitFor();
  assert.match(await banner.innerText(), /NOT verified: uuid:/);
  await shot(page, '07-wrong-log-key');
  await page.click('header nav >> text=Log');
  await page.locator('[data-verification=not-verified]').waitFor();
});
