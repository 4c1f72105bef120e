// The auditor console: a hash-routed single page over the daemon's API.
// Every decision it shows is verified here, in the browser, by verify.js
// against keys the auditor pins; nothing the server says about a decision
// is taken on trust.
import {
  verifyReceipt, verifyCheckpoint, verifyConsistency, importPublicKey, describe,
  base64Decode, hexEncode, hexDecode, treeIDOf, recordKind, recordSays,
} from './verify.js';

const LOG_KEY = 'gatelog.logKey';
const SIGNER_KEY = 'gatelog.signerKey';
const API_KEY = 'gatelog.apiKey';
const CHECKPOINTS = 'gatelog.checkpoints';

const main = document.getElementById('main');

// ---- DOM helpers (no innerHTML: every value is text) ----------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function render(...children) {
  main.replaceChildren();
  append(main, children);
}

function dl(pairs) {
  const el = h('dl');
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)) continue;
    el.append(h('dt', null, k), h('dd', null, v));
  }
  return el.children.length ? el : h('p', { class: 'muted' }, 'nothing recorded');
}

function card(title, ...body) {
  return h('section', { class: 'card' }, h('h2', null, title), ...body);
}

function outcomeBadge(allow) {
  return h('span', { class: `badge ${allow ? 'allow' : 'deny'}` }, allow ? 'allow' : 'deny');
}

function alertBadges(alerts) {
  return (alerts || []).map((a) => h('span', { class: `badge ${String(a.severity || '').toLowerCase()}`, title: a.message || '' }, `${a.severity || '?'} ${a.code || ''}`));
}

function fmtTime(t) {
  if (!t) return '';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/Z$/, ' UTC');
}

function fmtAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

function resourceText(r) {
  if (!r) return '';
  const name = [r.namespace, r.name].filter(Boolean).join('/');
  const parts = [r.system, r.kind, name].filter(Boolean).join(' ');
  const where = [r.environment && `env ${r.environment}`, r.repository, r.ref].filter(Boolean).join(', ');
  return where ? `${parts} (${where})` : parts;
}

// ---- settings ----------------------------------------------------------------

const settings = {
  get logKey() { return localStorage.getItem(LOG_KEY) || ''; },
  get signerKey() { return localStorage.getItem(SIGNER_KEY) || ''; },
  get apiKey() { return sessionStorage.getItem(API_KEY) || ''; },
};

// importAll imports every PEM public key block in text (a signer key
// list: the daemon rotates its decision signing key).
async function importAll(text) {
  const blocks = String(text || '').match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) || [];
  return Promise.all(blocks.map((b) => importPublicKey(b)));
}

async function pinnedKeys() {
  const out = { signers: [] };
  try {
    if (settings.logKey) out.log = await importPublicKey(settings.logKey);
    out.signers = await importAll(settings.signerKey);
    out.signer = out.signers[0];
  } catch (e) {
    out.error = e.message;
  }
  return out;
}

function updateStatus() {
  const el = document.getElementById('status');
  el.replaceChildren(
    h('span', { class: `pill ${settings.apiKey ? '' : 'off'}` }, settings.apiKey ? 'API key set' : 'no API key'),
    h('span', { class: `pill ${settings.logKey && settings.signerKey ? '' : 'off'}` }, settings.logKey && settings.signerKey ? 'keys pinned' : 'keys not pinned'),
  );
}

// ---- HTTP --------------------------------------------------------------------

class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { auth = true, text = false, method = 'GET', body } = {}) {
  const headers = {};
  if (auth && settings.apiKey) headers.Authorization = `Bearer ${settings.apiKey}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText}`;
    try {
      const j = await resp.json();
      if (j.message) msg = `${resp.status}: ${j.message}`;
    } catch {
      // not JSON: keep the status line
    }
    throw new HTTPError(resp.status, msg);
  }
  return text ? { text: await resp.text(), headers: resp.headers } : resp.json();
}

function apiKeyForm(message) {
  const input = h('input', { type: 'password', name: 'apikey', placeholder: 'gatelog API key (read permission)', autocomplete: 'off', size: 44 });
  return card(
    'API key needed',
    h('p', null, message || 'Reading decisions needs an API key with the read permission.'),
    h('form', {
      class: 'row-actions',
      onsubmit: (e) => {
        e.preventDefault();
        sessionStorage.setItem(API_KEY, input.value.trim());
        updateStatus();
        route();
      },
    }, input, h('button', { type: 'submit' }, 'Use this key')),
    h('p', { class: 'muted' }, 'The key is kept in this tab only (sessionStorage) and sent as Authorization: Bearer.'),
  );
}

function errorCard(title, err) {
  if (err instanceof HTTPError && err.status === 401) return apiKeyForm(`The daemon refused the request (${err.message}).`);
  return h('div', { class: 'banner bad' }, h('div', { class: 'headline' }, title), h('div', null, String(err.message || err)));
}

// ---- records -----------------------------------------------------------------

// decodeEnvelope reads the statement inside a DSSE envelope without
// verifying it, for display next to the verification result.
function decodeEnvelope(envelopeBytes) {
  const env = JSON.parse(new TextDecoder().decode(envelopeBytes));
  return { env, statement: JSON.parse(new TextDecoder().decode(base64Decode(env.payload))) };
}

// ---- Decision page -----------------------------------------------------------

async function decisionPage(id) {
  render(h('h1', null, 'Decision ', h('span', { class: 'mono' }, id)), h('p', { class: 'muted' }, 'Fetching the receipt and verifying it…'));
  if (!settings.apiKey) return render(h('h1', null, 'Decision'), apiKeyForm());
  let receipt;
  try {
    receipt = await api(`/v1/decisions/${encodeURIComponent(id)}`);
  } catch (e) {
    return render(h('h1', null, 'Decision ', h('span', { class: 'mono' }, id)), errorCard('Could not fetch the decision', e));
  }
  const keys = await pinnedKeys();
  let rec = null;
  let statement = null;
  let envText = '';
  try {
    const env = base64Decode(receipt.envelope || '');
    envText = new TextDecoder().decode(env);
    statement = decodeEnvelope(env).statement;
    rec = statement.predicate || {};
  } catch {
    rec = null;
  }
  // The record names the key that signed it; use that one of the pinned
  // signer keys (the signature check still decides).
  keys.signer = keys.signers.find((k) => k.id === rec?.daemon?.key_id) || keys.signer;
  const result = await verifyReceipt(receipt, keys.log, keys.signer);
  render(
    h('h1', null, 'Decision ', h('span', { class: 'mono' }, id)),
    verificationBanner(result, keys),
    rec ? decisionDetails(rec, receipt, result, statement, envText)
      : card('Signed record', h('p', null, 'The envelope cannot be decoded as a decision record.'), h('pre', null, envText || receipt.envelope || '')),
  );
}

function verificationBanner(result, keys) {
  const fp = (k) => (k ? `${k.id.slice(0, 16)}…` : 'none');
  const keyLine = h('div', { class: 'keys' }, `log key ${fp(keys.log)} · signer key ${fp(keys.signer)} (pinned in this browser; `, h('a', { href: '#/keys' }, 'change'), ')');
  if (result.ok) {
    return h('div', { class: 'banner ok', 'data-verification': 'verified' },
      h('div', { class: 'headline' }, '✔ verified'),
      h('div', null, 'Checked in this browser with WebCrypto, independently of the daemon:'),
      h('ul', null, result.checks.map((c) => h('li', null, c))),
      keyLine);
  }
  const noKeys = !keys.log || !keys.signer;
  return h('div', { class: 'banner bad', 'data-verification': 'not-verified' },
    h('div', { class: 'headline' }, `✖ ${describe(result)}`),
    noKeys ? h('div', null, 'Pin the log key and the decision signer key on the ', h('a', { href: '#/keys' }, 'Keys'), ' page to verify decisions.') : null,
    result.checks.length ? h('div', null, 'Passed before the failure:', h('ul', null, result.checks.map((c) => h('li', null, c)))) : null,
    h('div', null, result.checks.length
      ? 'The record below is signed by the pinned signer key, but it is NOT proven to be in the log.'
      : 'Everything below is what the record claims; none of it is verified.'),
    keyLine);
}

function decisionDetails(rec, receipt, result, statement, envText) {
  const req = rec.request || {};
  const subj = req.subject || {};
  const ctx = req.context || {};
  const says = recordSays(statement);
  const dec = { ...(rec.decision || {}), reasons: says.reasons, alerts: says.alerts };
  const pol = rec.policy || {};
  const p = receipt.inclusion_proof || {};
  const outcome = { event: ['event', 'EVENT — reported by the caller, not a policy decision'], admin: ['event', 'ADMINISTRATIVE RECORD — not a policy decision'] }[says.kind]
    || (says.allow ? ['allow', 'ALLOWED'] : ['deny', 'DENIED']);
  const unverified = Object.entries(ctx.unverified || {}).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
  return [
    h('div', { class: 'card' },
      h('div', { class: `outcome ${outcome[0]}` }, outcome[1]),
      h('div', null, h('strong', null, subj.id || '?'), ' · ', h('code', null, req.action || '?'), ' on ', resourceText(req.resource) || '?'),
      h('div', { class: 'muted' }, fmtTime(rec.time))),
    h('div', { class: 'grid' },
      card('Who (verified by the daemon)', dl([
        ['subject', subj.id], ['kind', subj.kind], ['issuer', subj.issuer], ['groups', (subj.groups || []).join(', ')],
        ['MFA', subj.mfa ? 'yes' : 'no'], ['verified credential', subj.verified ? 'yes' : 'NO'], ['asserted by', subj.asserted_by],
        ['authenticated at', subj.auth_time], ['token age', subj.token_age_s ? `${subj.token_age_s} s` : ''],
        ['credential expires', subj.credential_expires_at], ['claims', subj.claims ? JSON.stringify(subj.claims) : ''],
        ['caller', rec.caller ? `${rec.caller.id} (${rec.caller.kind})` : ''],
      ])),
      card('What', dl([
        ['action', h('code', null, req.action || '')],
        ...Object.entries(req.resource || {}).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
        ['change', ctx.change ? JSON.stringify(ctx.change) : ''], ['break-glass reason', ctx.break_glass_reason],
      ])),
      card('When', dl([
        ['decided at (daemon clock)', fmtTime(rec.time)], ['logged at', receipt.integrated_time ? fmtTime(receipt.integrated_time) : ''],
        ['context.time', ctx.time], ['source IP', ctx.source_ip],
      ])),
      card('Unverified context', h('p', { class: 'muted' }, 'Claims from the payload that nobody vouched for. Policies must not trust them for identity.'),
        dl([...unverified, ['adapter', req.source?.adapter], ['adapter version', req.source?.adapter_version], ['request id', req.source?.request_id]])),
      card('Reasons', (dec.reasons || []).length ? h('ul', { class: 'plain' }, dec.reasons.map((r) => h('li', null, r))) : h('p', { class: 'muted' }, 'none')),
      card('Alerts', (dec.alerts || []).length
        ? h('ul', { class: 'plain' }, dec.alerts.map((a) => h('li', null, alertBadges([a]), ' ', a.message || '')))
        : h('p', { class: 'muted' }, 'none'),
      dec.obligations ? h('div', null, h('h2', null, 'Obligations'), h('pre', null, JSON.stringify(dec.obligations, null, 2))) : null),
      card('Policy', dl([
        ['revision', pol.revision || '(none)'], ['sha256', h('span', { class: 'mono' }, pol.sha256 || '')],
        ['entrypoint', pol.entrypoint], ['OPA version', pol.opa_version],
        ['daemon version', rec.daemon?.version], ['signer key id', h('span', { class: 'mono' }, rec.daemon?.key_id || '')],
      ]), pol.sha256 ? h('a', { href: `#/search?policy=${encodeURIComponent(pol.sha256)}` }, 'other decisions under this policy') : null),
      h('section', { class: 'card wide' }, h('h2', null, 'In the log'), dl([
        ['log index', String(receipt.log_index)], ['entry UUID', h('span', { class: 'mono' }, receipt.uuid || '')],
        ['leaf hash (recomputed)', result.leafHash ? h('span', { class: 'mono' }, result.leafHash) : ''],
        ['tree size', p.tree_size !== undefined ? String(p.tree_size) : ''], ['root hash', h('span', { class: 'mono' }, p.root_hash || '')],
        ['log ID', h('span', { class: 'mono' }, receipt.log_id || '')],
      ]), p.checkpoint ? h('details', null, h('summary', null, 'signed checkpoint'), h('pre', null, p.checkpoint)) : null,
      (p.hashes || []).length ? h('details', null, h('summary', null, `inclusion proof (${p.hashes.length} hashes)`), h('pre', null, p.hashes.join('\n'))) : null),
      h('section', { class: 'card wide' }, h('h2', null, 'The signed record'),
        h('p', { class: 'muted' }, 'An in-toto statement in a DSSE envelope, signed by the daemon. This is exactly what was logged.'),
        h('details', { open: true }, h('summary', null, 'statement (decoded payload)'), h('pre', null, JSON.stringify(statement, null, 2))),
        h('details', null, h('summary', null, 'DSSE envelope (exact bytes)'), h('pre', null, envText)),
        h('details', null, h('summary', null, 'receipt as served'), h('pre', null, JSON.stringify(receipt, null, 2))))),
  ];
}

// ---- Search page -------------------------------------------------------------

const FILTERS = [
  ['subject', 'Subject'], ['action', 'Action'], ['system', 'System'], ['environment', 'Environment'],
  ['repository', 'Repository'], ['alert', 'Alert code'], ['policy', 'Policy sha256'], ['since', 'Since (7d, RFC 3339)'], ['until', 'Until'],
];

async function searchPage(params) {
  const idInput = h('input', { name: 'decision', placeholder: 'decision id (UUID)', size: 40, autocomplete: 'off' });
  const lookup = card('Find a decision by id',
    h('form', {
      class: 'row-actions',
      onsubmit: (e) => {
        e.preventDefault();
        const v = idInput.value.trim();
        if (v) location.hash = `#/decision/${encodeURIComponent(v)}`;
      },
    }, idInput, h('button', { type: 'submit' }, 'Open')));
  const results = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  render(h('h1', null, 'Search decisions'), lookup, results);
  if (!settings.apiKey) {
    results.replaceChildren(apiKeyForm('Searching and opening decisions need an API key with the read permission.'), await recentFromLog());
    return;
  }
  let page;
  try {
    page = await api(`/v1/audit/search?${new URLSearchParams({ ...params, limit: params.limit || '50' })}`);
  } catch (e) {
    if (e instanceof HTTPError && (e.status === 404 || e.status === 503)) {
      results.replaceChildren(h('p', { class: 'muted' }, `The audit search is not available on this daemon (${e.message}); showing the newest entries of the log instead.`), await recentFromLog());
      return;
    }
    results.replaceChildren(searchForm(params), errorCard('Search failed', e));
    return;
  }
  const rows = [...(page.results || [])];
  const table = h('div');
  const more = h('div', { class: 'row-actions' });
  let cursor = page.next_cursor || '';
  const chart = h('div');
  let counts = null;
  try {
    const { cursor: _c, limit: _l, ...filters } = params;
    counts = (await api(`/v1/audit/counts?${new URLSearchParams({ ...filters, by: 'day' })}`)).counts || [];
  } catch {
    counts = null; // older daemon: chart the rows at hand instead
  }
  const refresh = () => {
    table.replaceChildren(rows.length ? resultsTable(rows) : h('p', { class: 'muted' }, 'No entries match.'));
    chart.replaceChildren(perDayChart(rows, counts));
    more.replaceChildren();
    append(more, [
      h('span', { class: 'muted' }, `${rows.length} result${rows.length === 1 ? '' : 's'}${cursor ? ', more available' : ''}`),
      cursor ? h('button', { class: 'secondary', onclick: loadMore }, 'Load more') : null,
      h('button', { class: 'secondary', onclick: () => exportCSV(rows) }, 'Export CSV')]);
  };
  async function loadMore() {
    try {
      const next = await api(`/v1/audit/search?${new URLSearchParams({ ...params, limit: params.limit || '50', cursor })}`);
      rows.push(...(next.results || []));
      cursor = next.next_cursor || '';
      refresh();
    } catch (e) {
      more.append(errorCard('Loading more failed', e));
    }
  }
  results.replaceChildren(searchForm(params), chart, card('Results', table, more),
    h('p', { class: 'muted' }, 'The index only finds entries; open one to verify it against the log.'));
  refresh();
}

function searchForm(params) {
  const inputs = FILTERS.map(([name, label]) => h('label', null, label, h('input', { name, value: params[name] || '', autocomplete: 'off' })));
  const outcome = h('select', { name: 'outcome' }, ['', 'allow', 'deny'].map((v) => h('option', { value: v, selected: params.outcome === v }, v || 'any')));
  return card('Filters', h('form', {
    class: 'filters',
    onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(e.target)) if (String(v).trim()) q.set(k, String(v).trim());
      location.hash = `#/search?${q}`;
    },
  }, inputs, h('label', null, 'Outcome', outcome), h('button', { type: 'submit' }, 'Search')));
}

function resultsTable(rows) {
  return h('table', null,
    h('thead', null, h('tr', null, ['Time', 'Subject', 'Action', 'Resource', 'Outcome', 'Alerts', 'Log index'].map((c) => h('th', null, c)))),
    h('tbody', null, rows.map((r) => h('tr', {
      class: 'row',
      onclick: () => { if (r.kind === 'decision' || !r.kind) location.hash = `#/decision/${encodeURIComponent(r.id)}`; },
    },
    h('td', null, fmtTime(r.time)), h('td', null, r.subject), h('td', null, h('code', null, r.action)),
    h('td', null, resourceText(r.resource)), h('td', null, r.kind && r.kind !== 'decision' ? r.kind : outcomeBadge(r.allow)),
    h('td', null, alertBadges(r.alerts)), h('td', null, h('a', { href: `#/decision/${encodeURIComponent(r.id)}` }, String(r.log_index)))))));
}

function exportCSV(rows) {
  const cols = ['log_index', 'uuid', 'id', 'time', 'subject', 'caller', 'action', 'system', 'environment', 'repository', 'name', 'outcome', 'reasons', 'alerts', 'policy_sha256'];
  const cell = (v) => {
    let s = String(v ?? '');
    if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`; // keep spreadsheets from running formulas
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [cols.join(',')];
  for (const r of rows) {
    const res = r.resource || {};
    lines.push([r.log_index, r.uuid, r.id, r.time, r.subject, r.caller, r.action, res.system, res.environment, res.repository, res.name,
      r.outcome || (r.allow ? 'allow' : 'deny'), (r.reasons || []).join('; '), (r.alerts || []).map((a) => `${a.severity}:${a.code}`).join('; '), r.policy_sha256].map(cell).join(','));
  }
  const url = URL.createObjectURL(new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' }));
  const a = h('a', { href: url, download: 'gatelog-decisions.csv' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// perDayChart draws decisions per day by outcome: from the index's counts
// when the daemon has them, else from the rows at hand.
function perDayChart(rows, counts) {
  const days = new Map();
  for (const c of counts || []) days.set(c.key, { allow: c.allowed || 0, deny: c.denied || 0 });
  for (const r of counts ? [] : rows) {
    if (r.kind && r.kind !== 'decision') continue;
    const d = String(r.time || '').slice(0, 10);
    if (!d) continue;
    const c = days.get(d) || { allow: 0, deny: 0 };
    c[r.allow ? 'allow' : 'deny']++;
    days.set(d, c);
  }
  if (days.size === 0) return h('span');
  const entries = [...days.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).slice(-31);
  const max = Math.max(1, ...entries.map(([, c]) => c.allow + c.deny));
  const W = 900, H = 150, pad = 24, bw = Math.min(40, (W - pad) / entries.length - 4);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 20}`);
  svg.setAttribute('class', 'chart');
  const rect = (x, y, w, hh, cls) => {
    const r = document.createElementNS(ns, 'rect');
    for (const [k, v] of Object.entries({ x, y, width: w, height: hh, class: cls })) r.setAttribute(k, v);
    return r;
  };
  const text = (x, y, s) => {
    const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', x);
    t.setAttribute('y', y);
    t.textContent = s;
    return t;
  };
  entries.forEach(([day, c], i) => {
    const x = pad + i * (bw + 4);
    const ha = (c.allow / max) * (H - 10);
    const hd = (c.deny / max) * (H - 10);
    svg.append(rect(x, H - ha, bw, ha, 'allow'), rect(x, H - ha - hd, bw, hd, 'deny'));
    svg.append(text(x, H - ha - hd - 2, String(c.allow + c.deny)));
    if (entries.length <= 10 || i % Math.ceil(entries.length / 10) === 0) svg.append(text(x, H + 14, day.slice(5)));
  });
  return card(counts ? 'Decisions per day (all matching entries)' : 'Decisions per day (results loaded)', svg, h('div', { class: 'legend' }, h('i', { class: 'allow' }), 'allow', h('i', { class: 'deny' }), 'deny'));
}

// recentFromLog lists the newest log entries through the Rekor API,
// decoding each attestation for a one-line summary. Records are private by
// default: without a read key an entry is its leaf only, listed as such.
async function recentFromLog(n = 10) {
  let info;
  try {
    info = await api('/api/v1/log', { auth: false });
  } catch {
    return h('p', { class: 'muted' }, 'This daemon serves no Rekor API to list entries; open a decision by its id.');
  }
  const size = Number(info.treeSize || 0);
  const idx = [];
  for (let i = size - 1; i >= 0 && idx.length < n; i--) idx.push(i);
  const rows = await Promise.all(idx.map(async (i) => {
    try {
      const e = await api(`/api/v1/log/entries?logIndex=${i}`);
      const [uuid, anon] = Object.entries(e)[0];
      if (!anon.attestation) {
        return { log_index: i, uuid, kind: 'record private', id: '', time: new Date(Number(anon.integratedTime) * 1000).toISOString() };
      }
      const st = decodeEnvelope(base64Decode(anon.attestation?.data || '')).statement;
      const rec = st.predicate || {};
      return { log_index: i, uuid, id: rec.decision_id, time: rec.time, subject: rec.request?.subject?.id, action: rec.request?.action,
        resource: rec.request?.resource, allow: recordSays(st).allow, alerts: recordSays(st).alerts, kind: recordKind(st) || 'entry' };
    } catch {
      return { log_index: i, kind: 'unreadable', id: '' };
    }
  }));
  return card(`Newest entries in the log (${size} in all)`,
    rows.length ? resultsTable(rows) : h('p', { class: 'muted' }, 'The log is empty.'),
    h('p', { class: 'muted' }, 'Read from the Rekor API: anyone sees the leaves (hashes, signature, key); the records need a read key. Open one to verify it.'));
}

// ---- Log page ----------------------------------------------------------------

async function logPage() {
  render(h('h1', null, 'Transparency log'), h('p', { class: 'muted' }, 'Reading /checkpoint…'));
  let resp;
  try {
    resp = await api('/checkpoint', { auth: false, text: true });
  } catch (e) {
    return render(h('h1', null, 'Transparency log'), errorCard('Could not read the checkpoint', e));
  }
  const keys = await pinnedKeys();
  const lastModified = resp.headers.get('Last-Modified');
  let cp = null;
  let status;
  if (!keys.log) {
    status = h('div', { class: 'banner warn', 'data-verification': 'no-key' }, h('div', { class: 'headline' }, 'Signature not checked'),
      h('div', null, 'Pin the log public key on the ', h('a', { href: '#/keys' }, 'Keys'), ' page to check the checkpoint signature.'));
  } else {
    try {
      cp = await verifyCheckpoint(resp.text, keys.log);
      const tid = treeIDOf(keys.log);
      if (!cp.origin.endsWith(`/${tid}`)) throw new Error(`origin ${cp.origin} is not the pinned key's log (tree ID ${tid})`);
      status = h('div', { class: 'banner ok', 'data-verification': 'verified' }, h('div', { class: 'headline' }, '✔ checkpoint signature verified'),
        h('div', { class: 'keys' }, `with the pinned log key ${keys.log.id.slice(0, 16)}…`));
    } catch (e) {
      status = h('div', { class: 'banner bad', 'data-verification': 'not-verified' }, h('div', { class: 'headline' }, `✖ NOT verified: ${e.message}`));
      cp = null;
    }
  }
  const lines = resp.text.split('\n');
  const size = cp ? cp.size : BigInt(/^\d+$/.test(lines[1] || '') ? lines[1] : 0);
  let rootHex = '';
  try {
    rootHex = hexEncode(base64Decode(lines[2] || ''));
  } catch {
    rootHex = '(not base64)';
  }
  const history = cp ? await updateHistory(cp, keys.log) : loadHistory();
  render(
    h('h1', null, 'Transparency log'),
    status,
    h('div', { class: 'grid' },
      card('Latest checkpoint', dl([
        ['origin', lines[0]], ['tree size', String(size)], ['root hash', h('span', { class: 'mono' }, rootHex)],
        ['published', lastModified ? `${fmtTime(lastModified)} (${fmtAge(Date.now() - Date.parse(lastModified))} ago)` : 'unknown'],
        ['log ID (pinned key)', keys.log ? h('span', { class: 'mono' }, keys.log.id) : ''],
      ])),
      card('Witness cosignatures', cp && cp.otherSignatures.length
        ? h('ul', { class: 'plain' }, cp.otherSignatures.map((s) => h('li', null, `${s.name} (key hint ${s.keyHint})`)))
        : h('p', { class: 'muted' }, 'None on this checkpoint. Cosignatures from witnesses would appear here; they are listed, not verified, since the console pins no witness keys.'))),
    card('Signed checkpoint', h('pre', null, resp.text)),
    card('Consistency history (this browser)',
      h('p', { class: 'muted' }, 'Each checkpoint this browser has seen, and whether the log proved it a prefix of the next one (RFC 9162 consistency proof from /api/v1/log/proof). A fork or a rollback shows here.'),
      history.length ? h('table', null, h('thead', null, h('tr', null, ['Seen', 'Tree size', 'Root hash', 'Consistent with the previous'].map((c) => h('th', null, c)))),
        h('tbody', null, history.slice().reverse().map((e) => h('tr', null, h('td', null, fmtTime(e.seen)), h('td', null, String(e.size)),
          h('td', { class: 'mono' }, `${e.root.slice(0, 16)}…`), h('td', null, e.check === 'ok' ? h('span', { class: 'badge allow' }, 'proved')
            : e.check ? h('span', { class: 'badge deny', title: e.check }, e.check) : h('span', { class: 'muted' }, 'first seen')))))) : h('p', { class: 'muted' }, 'Nothing yet.')),
  );
}

function loadHistory() {
  try {
    return JSON.parse(localStorage.getItem(CHECKPOINTS) || '[]');
  } catch {
    return [];
  }
}

async function updateHistory(cp, logKey) {
  const all = loadHistory().filter((e) => e.log === logKey.id);
  const root = hexEncode(cp.rootHash);
  const last = all[all.length - 1];
  if (last && last.size === String(cp.size) && last.root === root) return all;
  const entry = { log: logKey.id, size: String(cp.size), root, seen: new Date().toISOString(), check: '' };
  if (last) {
    const oldSize = BigInt(last.size);
    if (oldSize > cp.size) entry.check = `ROLLBACK: size went from ${last.size} to ${cp.size}`;
    else if (oldSize === cp.size) entry.check = 'FORK: same size, different root';
    else if (oldSize === 0n) entry.check = 'ok';
    else {
      try {
        const p = await api(`/api/v1/log/proof?firstSize=${oldSize}&lastSize=${cp.size}`, { auth: false });
        await verifyConsistency(oldSize, cp.size, (p.hashes || []).map(hexDecode), hexDecode(last.root), cp.rootHash);
        entry.check = 'ok';
      } catch (e) {
        entry.check = e instanceof HTTPError && e.status === 404 ? 'no proof API' : `NOT consistent: ${e.message}`;
      }
    }
  }
  all.push(entry);
  localStorage.setItem(CHECKPOINTS, JSON.stringify([...loadHistory().filter((e) => e.log !== logKey.id), ...all.slice(-50)]));
  return all;
}

// ---- Alerts and Policies (from the audit index) ------------------------------

async function indexRows(params) {
  if (!settings.apiKey) return { needKey: true };
  try {
    const page = await api(`/v1/audit/search?${new URLSearchParams({ limit: '500', ...params })}`);
    return { rows: page.results || [] };
  } catch (e) {
    if (e instanceof HTTPError && e.status === 404) return { missing: true };
    return { error: e };
  }
}

// pageAbort ends the current page's long-lived requests (the alert
// stream) when the route changes.
let pageAbort = null;

// alertsPage follows GET /v1/alerts/stream (server-sent events, read with
// fetch so the API key can go in a header) and falls back to the alerts in
// the audit index on daemons without the stream.
async function alertsPage() {
  if (!settings.apiKey) return render(h('h1', null, 'Alerts'), apiKeyForm());
  const body = h('tbody');
  const status = h('span', { class: 'muted', 'data-stream': 'connecting' }, 'connecting…');
  const bySeverity = new Map();
  const sevBox = h('div', null, h('p', { class: 'muted' }, 'No alerts yet.'));
  const seen = new Set();
  const add = (a) => {
    if (seen.has(a.id)) return;
    seen.add(a.id);
    bySeverity.set(a.severity, (bySeverity.get(a.severity) || 0) + 1);
    sevBox.replaceChildren(dl([...bySeverity.entries()].map(([k, n]) => [h('span', { class: `badge ${k}` }, k), String(n)])));
    body.prepend(h('tr', { class: 'alert-row' }, h('td', null, fmtTime(a.time)), h('td', null, alertBadges([a])), h('td', null, a.message),
      h('td', null, a.subject || ''), h('td', null, a.action ? h('code', null, a.action) : ''), h('td', null, a.source || ''),
      h('td', null, a.decision_id ? h('a', { href: `#/decision/${encodeURIComponent(a.decision_id)}` }, a.log_index !== undefined ? `#${a.log_index}` : 'decision') : '')));
  };
  render(h('h1', null, 'Alerts'),
    card('Live feed', h('p', null, status, ' · newest first; the 100 most recent alerts, then each new one as the daemon queues it.'),
      h('table', null, h('thead', null, h('tr', null, ['Time', 'Severity / code', 'Message', 'Subject', 'Action', 'Source', 'Decision'].map((c) => h('th', null, c)))), body)),
    card('By severity (this feed)', sevBox));
  const ctrl = new AbortController();
  pageAbort = ctrl;
  let resp;
  try {
    resp = await fetch('/v1/alerts/stream?recent=100', { headers: { Authorization: `Bearer ${settings.apiKey}` }, signal: ctrl.signal, cache: 'no-store' });
  } catch (e) {
    if (!ctrl.signal.aborted) status.textContent = `stream failed: ${e.message}`;
    return;
  }
  if (resp.status === 401) return render(h('h1', null, 'Alerts'), apiKeyForm('The daemon refused the API key.'));
  if (resp.status === 404 || resp.status === 503) return alertsFromIndex();
  if (!resp.ok) {
    status.textContent = `stream failed: ${resp.status}`;
    return;
  }
  status.textContent = '● live';
  status.dataset.stream = 'live';
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n?/g, '\n');
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (event === 'alert' && data.length) {
          try {
            add(JSON.parse(data.join('\n')));
          } catch {
            // a malformed event is skipped; the stream goes on
          }
        }
      }
    }
    status.textContent = 'stream ended; reload to reconnect';
  } catch (e) {
    if (!ctrl.signal.aborted) status.textContent = `stream failed: ${e.message}`;
  }
  status.dataset.stream = 'ended';
}

async function alertsFromIndex() {
  render(h('h1', null, 'Alerts'), h('p', { class: 'muted' }, 'Loading…'));
  const r = await indexRows({});
  if (r.needKey) return render(h('h1', null, 'Alerts'), apiKeyForm());
  if (r.missing) return render(h('h1', null, 'Alerts'), h('p', { class: 'muted' }, 'This daemon has no audit search API yet (/v1/audit/search); alerts appear on each decision page.'));
  if (r.error) return render(h('h1', null, 'Alerts'), errorCard('Could not read alerts', r.error));
  const rows = r.rows.filter((x) => (x.alerts || []).length);
  const bySeverity = new Map();
  for (const x of rows) for (const a of x.alerts) bySeverity.set(a.severity, (bySeverity.get(a.severity) || 0) + 1);
  render(h('h1', null, 'Alerts'),
    card('By severity (newest 500 entries)', bySeverity.size ? dl([...bySeverity.entries()].map(([s, n]) => [h('span', { class: `badge ${s}` }, s), String(n)])) : h('p', { class: 'muted' }, 'No alerts.')),
    card('Decisions that raised alerts', rows.length ? resultsTable(rows) : h('p', { class: 'muted' }, 'None.')));
}

async function policiesPage() {
  render(h('h1', null, 'Policies'), h('p', { class: 'muted' }, 'Loading…'));
  const r = await indexRows({});
  if (r.needKey) return render(h('h1', null, 'Policies'), apiKeyForm());
  if (r.missing) return render(h('h1', null, 'Policies'), h('p', { class: 'muted' }, 'This daemon has no audit search API yet (/v1/audit/search); each decision page shows the policy revision and digest it was made under.'));
  if (r.error) return render(h('h1', null, 'Policies'), errorCard('Could not read the index', r.error));
  // Rows come newest first; walk oldest first to find when each policy took over.
  const changes = [];
  for (const x of r.rows.slice().reverse()) {
    if (!x.policy_sha256) continue;
    const cur = changes[changes.length - 1];
    if (cur && cur.sha === x.policy_sha256) {
      cur.last = x;
      cur.count++;
    } else changes.push({ sha: x.policy_sha256, rev: x.policy_revision, first: x, last: x, count: 1 });
  }
  const current = changes[changes.length - 1];
  render(h('h1', null, 'Policies'),
    card('In force at the newest decision', current ? dl([['sha256', h('span', { class: 'mono' }, current.sha)], ['revision', current.rev || '(none)'],
      ['since log index', String(current.first.log_index)]]) : h('p', { class: 'muted' }, 'No decisions yet.')),
    card('Policy changes seen in the log (newest 500 entries)', changes.length ? h('table', null,
      h('thead', null, h('tr', null, ['Policy sha256', 'Revision', 'First decision', 'Last decision', 'Decisions'].map((c) => h('th', null, c)))),
      h('tbody', null, changes.slice().reverse().map((c) => h('tr', null, h('td', { class: 'mono' }, h('a', { href: `#/search?policy=${c.sha}` }, `${c.sha.slice(0, 16)}…`)),
        h('td', null, c.rev || ''), h('td', null, h('a', { href: `#/decision/${c.first.id}` }, `#${c.first.log_index}`), ' ', fmtTime(c.first.time)),
        h('td', null, h('a', { href: `#/decision/${c.last.id}` }, `#${c.last.log_index}`), ' ', fmtTime(c.last.time)), h('td', null, String(c.count))))))
      : h('p', { class: 'muted' }, 'None.')));
}

// ---- Keys page ---------------------------------------------------------------

async function keysPage() {
  const logArea = h('textarea', { name: 'log-key', spellcheck: 'false', placeholder: '-----BEGIN PUBLIC KEY-----\n… (gatelog-data/keys/log.pub)' });
  const signerArea = h('textarea', { name: 'signer-key', spellcheck: 'false', placeholder: '-----BEGIN PUBLIC KEY-----\n… (gatelog-data/keys/decision.pub)' });
  logArea.value = settings.logKey;
  signerArea.value = settings.signerKey;
  const info = h('div');
  const apiInput = h('input', { type: 'password', name: 'apikey', value: settings.apiKey, size: 44, autocomplete: 'off', placeholder: 'API key with the read permission' });
  const showFingerprints = async () => {
    const rows = [];
    for (const [label, area] of [['log key', logArea], ['signer key', signerArea]]) {
      if (!area.value.trim()) {
        rows.push([label, 'not set']);
        continue;
      }
      try {
        const ks = label === 'log key' ? [await importPublicKey(area.value)] : await importAll(area.value);
        if (ks.length === 0) throw new Error('no PEM "PUBLIC KEY" block');
        for (const k of ks) rows.push([label, h('span', { class: 'fp' }, `sha256 ${k.id}`)]);
        if (label === 'log key') rows.push(['tree ID', String(treeIDOf(ks[0]))]);
      } catch (e) {
        rows.push([label, h('span', { class: 'badge deny' }, e.message)]);
      }
    }
    info.replaceChildren(dl(rows));
  };
  const pin = async (e) => {
    e.preventDefault();
    for (const [name, area] of [[LOG_KEY, logArea], [SIGNER_KEY, signerArea]]) {
      const v = area.value.trim();
      if (!v) localStorage.removeItem(name);
      else {
        try {
          const ks = name === LOG_KEY ? [await importPublicKey(v)] : await importAll(v);
          if (ks.length === 0) throw new Error('no key');
          localStorage.setItem(name, ks.map((k) => k.pem).join(''));
        } catch {
          await showFingerprints();
          return;
        }
      }
    }
    updateStatus();
    await showFingerprints();
    saved.textContent = 'Pinned.';
  };
  const saved = h('span', { class: 'muted' });
  const apiSaved = h('span', { class: 'muted' });
  const fetchKeys = async () => {
    try {
      const k = await api('/ui/keys', { auth: false });
      logArea.value = k.log_public_key || '';
      signerArea.value = k.decision_public_key || '';
      saved.textContent = 'Loaded from this daemon, not pinned yet: compare the fingerprints with keys you obtained another way, then pin.';
      await showFingerprints();
    } catch (err) {
      saved.textContent = `Could not load the daemon's keys: ${err.message}`;
    }
  };
  render(h('h1', null, 'Keys'),
    card('Pinned public keys',
      h('p', null, 'Decisions are verified against these keys, in this browser. Pin the keys you got from the log operator (',
        h('code', null, 'keys/log.pub'), ' and ', h('code', null, 'keys/decision.pub'), ' in the daemon\'s data directory), not keys a server hands you.'),
      h('form', { onsubmit: pin },
        h('div', { class: 'grid' }, h('label', null, 'Log public key (signs checkpoints and SETs)', logArea), h('label', null, 'Decision signer public keys (sign records; one PEM block per key, older keys too)', signerArea)),
        h('div', { class: 'row-actions' }, h('button', { type: 'submit' }, 'Pin keys'), h('button', { type: 'button', class: 'secondary', onclick: fetchKeys }, 'Load this daemon\'s keys (trust on first use)'), saved)),
      info),
    card('API key',
      h('form', {
        class: 'row-actions',
        onsubmit: (e) => {
          e.preventDefault();
          if (apiInput.value.trim()) sessionStorage.setItem(API_KEY, apiInput.value.trim());
          else sessionStorage.removeItem(API_KEY);
          updateStatus();
          apiSaved.textContent = 'Saved for this tab.';
        },
      }, apiInput, h('button', { type: 'submit' }, 'Use key'), apiSaved),
      h('p', { class: 'muted' }, 'Kept in this tab only (sessionStorage), sent as Authorization: Bearer. The log pages need none.')),
  );
  await showFingerprints();
}

// ---- router ------------------------------------------------------------------

async function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean);
  const params = Object.fromEntries(new URLSearchParams(query || ''));
  const page = parts[0] || 'search';
  pageAbort?.abort();
  pageAbort = null;
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.nav === (page === 'decision' ? 'search' : page));
  updateStatus();
  try {
    switch (page) {
      case 'decision': return await decisionPage(decodeURIComponent(parts[1] || ''));
      case 'log': return await logPage();
      case 'alerts': return await alertsPage();
      case 'policies': return await policiesPage();
      case 'keys': return await keysPage();
      case 'search': return await searchPage(params);
      default: return render(h('h1', null, 'Not found'), h('p', null, h('a', { href: '#/' }, 'Back to search')));
    }
  } catch (e) {
    render(errorCard('Something went wrong', e));
  }
}

window.addEventListener('hashchange', route);
route();
