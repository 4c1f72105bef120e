// gatelog receipt verification with WebCrypto: an independent implementation
// of the checks in translog/verify (Go), for browsers and Node.js ≥ 20.
//
// verifyReceipt(receipt, logKeyPEM, signerKeyPEM) checks, in the same order
// and under the same check names as verify.Receipt: the DSSE envelope
// signature with the decision signer key, the receipt summary against the
// signed record, the Rekor dsse v0.0.1 entry body and RFC 6962 leaf hash
// recomputed from the envelope, the entry UUID and log ID, the Signed Entry
// Timestamp, the inclusion proof up to the root (RFC 9162 §2.1.3.2) and the
// checkpoint's C2SP signed-note signature with the log key. It never throws
// for a failed check; it returns {ok: false, check, reason}.

const subtle = globalThis.crypto.subtle;
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

// The DSSE payload type and in-toto types of a gatelog decision record.
export const PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://gatelog.dev/decision/v1';
/** Record kinds by predicate type: only a decision carries an allow. */
export const RECORD_KINDS = Object.freeze({
  [PREDICATE_TYPE]: 'decision',
  'https://gatelog.dev/event/v1': 'event',
  'https://gatelog.dev/admin/v1': 'admin',
});

/** The record's kind as its signed predicate type names it. */
export function recordKind(st) {
  return Object.hasOwn(RECORD_KINDS, st?.predicateType ?? '') ? RECORD_KINDS[st.predicateType] : '';
}

/**
 * What a signed record says in the receipt's terms: an allow only for a
 * decision that allowed; an event's message or an administrative record's
 * authority as its reasons; the alerts a decision or an event raises.
 */
export function recordSays(st) {
  const kind = recordKind(st);
  const rec = st?.predicate ?? {};
  if (kind === 'event') {
    const ev = rec.event ?? {};
    return { kind, allow: false, reasons: ev.message ? [ev.message] : [], alerts: ev.alerts ?? [] };
  }
  if (kind === 'admin') return { kind, allow: false, reasons: [rec.admin?.reason ?? ''], alerts: [] };
  const dec = rec.decision ?? {};
  return { kind, allow: Boolean(dec.allow), reasons: dec.reasons ?? [], alerts: dec.alerts ?? [] };
}

/** A failed check: check names what was checked, reason says why it failed. */
export class VerificationError extends Error {
  constructor(check, reason) {
    super(`${check}: ${reason}`);
    this.check = check;
    this.reason = reason;
  }
}

function fail(check, reason) {
  throw new VerificationError(check, reason);
}

// ---- bytes ----------------------------------------------------------------

/** Standard base64 with padding, as Go's base64.StdEncoding decodes it. */
export function base64Decode(s) {
  const t = String(s).replace(/[\r\n]/g, '');
  if (t.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(t)) {
    throw new Error('not standard base64');
  }
  const bin = atob(t);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function base64URLDecode(s) {
  return base64Decode(String(s).replace(/-/g, '+').replace(/_/g, '/'));
}

export function base64Encode(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

export function hexEncode(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Hex in either case, as Go's hex.DecodeString accepts it. */
export function hexDecode(s) {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new Error('not hex');
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle.digest('SHA-256', bytes));
}

// ---- canonical JSON (RFC 8785) ---------------------------------------------

/**
 * RFC 8785 (JCS) canonical JSON of a value parsed by JSON.parse: object keys
 * sorted by UTF-16 code units, ECMAScript number and string serialisation.
 */
export function canonicalJSON(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return '[' + v.map(canonicalJSON).join(',') + ']';
  return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonicalJSON(v[k])).join(',') + '}';
}

// ---- keys ------------------------------------------------------------------

/**
 * Imports an ECDSA P-256 public key from PEM ("PUBLIC KEY", PKIX). Returns
 * the WebCrypto key, its PKIX DER re-encoded as Go's x509 marshals it, the
 * PEM Rekor records for a verifier (cryptoutils.MarshalPublicKeyToPEM) and
 * its ID (hex SHA-256 of the DER: the log ID for a log key, the key_id in
 * a decision record for a signer key).
 */
export async function importPublicKey(pem) {
  const m = /-----BEGIN PUBLIC KEY-----([\s\S]*?)-----END PUBLIC KEY-----/.exec(String(pem || ''));
  if (!m) throw new Error('not a PEM "PUBLIC KEY" block');
  let der;
  try {
    der = base64Decode(m[1].replace(/\s+/g, ''));
  } catch {
    throw new Error('PEM body is not base64');
  }
  let key;
  try {
    key = await subtle.importKey('spki', der, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']);
  } catch (e) {
    throw new Error(`not an ECDSA P-256 public key (${e.message || e})`);
  }
  const canon = new Uint8Array(await subtle.exportKey('spki', key));
  const b64 = base64Encode(canon);
  const lines = b64.match(/.{1,64}/g).join('\n');
  const canonicalPEM = `-----BEGIN PUBLIC KEY-----\n${lines}\n-----END PUBLIC KEY-----\n`;
  const digest = await sha256(canon);
  return { key, der: canon, pem: canonicalPEM, id: hexEncode(digest), digest };
}

/** The log's tree ID: the first 8 bytes of SHA-256(PKIX DER) as a positive int64. */
export function treeIDOf(logKey) {
  let v = 0n;
  for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(logKey.digest[i]);
  return v & 0x7fffffffffffffffn;
}

/** Rekor's checkpoint key hint: the first 4 bytes of SHA-256(PKIX DER). */
function keyHint(key) {
  return key.digest.subarray(0, 4);
}

// ---- signatures --------------------------------------------------------------

/**
 * Converts an ASN.1 DER ECDSA signature to the IEEE P1363 r‖s form
 * WebCrypto verifies. Returns null for anything that is not strict DER.
 */
export function derToP1363(der, size = 32) {
  let i = 0;
  const readLen = () => {
    if (i >= der.length) return -1;
    let n = der[i++];
    if (n < 0x80) return n;
    if (n !== 0x81 || i >= der.length) return -1;
    n = der[i++];
    return n < 0x80 ? -1 : n;
  };
  const readInt = () => {
    if (der[i++] !== 0x02) return null;
    const n = readLen();
    if (n <= 0 || i + n > der.length) return null;
    let v = der.subarray(i, i + n);
    i += n;
    if (v[0] & 0x80) return null; // negative
    if (v.length > 1 && v[0] === 0 && !(v[1] & 0x80)) return null; // not minimal
    while (v.length > 0 && v[0] === 0) v = v.subarray(1);
    if (v.length === 0 || v.length > size) return null;
    const out = new Uint8Array(size);
    out.set(v, size - v.length);
    return out;
  };
  if (!(der instanceof Uint8Array) || der[i++] !== 0x30) return null;
  const total = readLen();
  if (total < 0 || i + total !== der.length) return null;
  const r = readInt();
  if (!r) return null;
  const s = readInt();
  if (!s || i !== der.length) return null;
  return concat(r, s);
}

/** ECDSA P-256 over SHA-256(message) with a DER signature, as Go's ecdsa.VerifyASN1. */
export async function verifyECDSA(key, message, derSig) {
  const sig = derToP1363(derSig);
  if (!sig) return false;
  return subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key.key, sig, message);
}

/** DSSE pre-authentication encoding. */
export function pae(payloadType, payload) {
  const t = utf8.encode(payloadType);
  return concat(utf8.encode(`DSSEv1 ${t.length} `), t, utf8.encode(` ${payload.length} `), payload);
}

// ---- the log entry -----------------------------------------------------------

function parseEnvelope(envelopeBytes) {
  let env;
  try {
    env = JSON.parse(utf8Strict.decode(envelopeBytes));
  } catch (e) {
    throw new Error(`envelope is not JSON: ${e.message}`);
  }
  if (env === null || typeof env !== 'object' || Array.isArray(env)) throw new Error('envelope is not a JSON object');
  return env;
}

/**
 * The canonical Rekor dsse v0.0.1 entry body for the exact envelope bytes,
 * every signature attributed to the signer key (translog/entry.DSSEBody).
 */
export async function dsseBody(envelopeBytes, signerKey) {
  const env = parseEnvelope(envelopeBytes);
  const sigs = Array.isArray(env.signatures) ? env.signatures : [];
  if (sigs.length === 0) throw new Error('envelope has no signatures');
  let payload;
  try {
    payload = base64Decode(env.payload ?? '');
  } catch {
    throw new Error('envelope payload is not base64');
  }
  const verifier = base64Encode(utf8.encode(signerKey.pem));
  const signatures = sigs
    .map((s) => ({ signature: String(s?.sig ?? ''), verifier }))
    .sort((a, b) => (a.signature < b.signature ? -1 : a.signature > b.signature ? 1 : 0));
  const body = {
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: hexEncode(await sha256(envelopeBytes)) },
      payloadHash: { algorithm: 'sha256', value: hexEncode(await sha256(payload)) },
      signatures,
    },
  };
  return utf8.encode(canonicalJSON(body));
}

/** RFC 6962 leaf hash: SHA-256(0x00 ‖ leaf). */
export function leafHash(leaf) {
  return sha256(concat(Uint8Array.of(0), leaf));
}

function hashChildren(l, r) {
  return sha256(concat(Uint8Array.of(1), l, r));
}

/** The Rekor entry UUID: tree ID as 16 hex digits, then the leaf hash. */
export function entryUUID(treeID, leaf) {
  return treeID.toString(16).padStart(16, '0') + hexEncode(leaf);
}

/** The canonical JSON a Signed Entry Timestamp signs. */
export function setPayload(body, integratedTime, logID, logIndex) {
  return utf8.encode(canonicalJSON({ body: base64Encode(body), integratedTime, logID, logIndex }));
}

// ---- Merkle proofs (RFC 9162 §2.1.3.2 and §2.1.4.2) -----------------------------

/** Recomputes the root from an inclusion proof; throws when the proof is malformed. */
export async function rootFromInclusionProof(index, size, leaf, proof) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn < 0n || fn > sn) throw new Error(`index ${index} is beyond tree size ${size}`);
  if (leaf.length !== 32) throw new Error(`leaf hash has ${leaf.length} bytes, want 32`);
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new Error(`proof has ${proof.length} hashes, too many for index ${index} in tree size ${size}`);
    if ((fn & 1n) === 1n || fn === sn) {
      r = await hashChildren(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await hashChildren(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error(`proof has ${proof.length} hashes, too few for index ${index} in tree size ${size}`);
  return r;
}

/** Checks that leaf is at index in the tree of size whose root is root. */
export async function verifyInclusion(index, size, leaf, proof, root) {
  const got = await rootFromInclusionProof(index, size, leaf, proof);
  if (!equalBytes(got, root)) {
    throw new Error(`calculated root ${hexEncode(got)} does not match expected root ${hexEncode(root)}`);
  }
}

/** Checks that the tree of size1 (root1) is a prefix of the tree of size2 (root2). */
export async function verifyConsistency(size1, size2, proof, root1, root2) {
  let s1 = BigInt(size1);
  const s2 = BigInt(size2);
  if (s2 < s1) throw new Error(`size2 (${size2}) < size1 (${size1})`);
  if (s1 === s2) {
    if (proof.length > 0) throw new Error('size1 = size2 but the proof is not empty');
    if (!equalBytes(root1, root2)) throw new Error('size1 = size2 but the roots differ');
    return;
  }
  if (s1 === 0n) {
    if (proof.length > 0) throw new Error('size1 is 0 but the proof is not empty');
    return;
  }
  if (proof.length === 0) throw new Error('empty proof');
  let path = proof;
  if ((s1 & (s1 - 1n)) === 0n) path = [root1, ...proof];
  let fn = s1 - 1n;
  let sn = s2 - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new Error('proof is too long');
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await hashChildren(c, fr);
      sr = await hashChildren(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = await hashChildren(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  s1 = sn;
  if (s1 !== 0n) throw new Error('proof is too short');
  if (!equalBytes(fr, root1)) throw new Error('proof does not lead to the older root');
  if (!equalBytes(sr, root2)) throw new Error('proof does not lead to the newer root');
}

// ---- checkpoints (C2SP signed note) ----------------------------------------

const SIG_PREFIX = '\u2014 '; // "— "

/**
 * Verifies a C2SP checkpoint signed Rekor-style by the log key (ECDSA P-256
 * over SHA-256 of the note text, key hint = first 4 bytes of SHA-256 of the
 * PKIX DER, signer name = the origin line) and parses it. Other signature
 * lines (witness cosignatures) are returned unverified as otherSignatures.
 * Throws VerificationError("checkpoint" | "checkpoint signature", …).
 */
export async function verifyCheckpoint(text, logKey) {
  text = String(text ?? '');
  const nl = text.indexOf('\n');
  if (nl <= 0) fail('checkpoint', 'no origin line');
  const origin = text.slice(0, nl);
  const bad = (why) => fail('checkpoint signature', why);
  // Note text: valid UTF-8 (a JS string is), no control characters but newline.
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) bad('malformed note: control character');
  const split = text.lastIndexOf('\n\n');
  if (split < 0) bad('malformed note: no blank line before the signatures');
  const noteText = text.slice(0, split + 1);
  let sigs = text.slice(split + 2);
  if (sigs.length === 0 || !sigs.endsWith('\n')) bad('malformed note: signature block must end with a newline');
  const hint = keyHint(logKey);
  const message = utf8.encode(noteText);
  let logSigned = false;
  const otherSignatures = [];
  const seen = new Set();
  while (sigs.length > 0) {
    const i = sigs.indexOf('\n');
    const line = sigs.slice(0, i);
    sigs = sigs.slice(i + 1);
    if (!line.startsWith(SIG_PREFIX)) bad('malformed note: signature line does not start with "— "');
    const rest = line.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(' ');
    const name = sp < 0 ? rest : rest.slice(0, sp);
    const b64 = sp < 0 ? '' : rest.slice(sp + 1);
    let sig;
    try {
      sig = base64Decode(b64);
    } catch {
      sig = new Uint8Array(0);
    }
    if (name === '' || /\s|\+/.test(name) || b64 === '' || sig.length < 5) bad('malformed note: bad signature line');
    const h = sig.subarray(0, 4);
    if (name !== origin || !equalBytes(h, hint)) {
      otherSignatures.push({ name, keyHint: hexEncode(h), signature: b64 });
      continue;
    }
    if (seen.has(name)) continue;
    seen.add(name);
    if (!(await verifyECDSA(logKey, message, sig.subarray(4)))) bad('invalid signature for key ' + origin);
    logSigned = true;
  }
  if (!logSigned) bad(`no signature by the pinned log key (name ${origin}, key hint ${hexEncode(hint)})`);
  const lines = noteText.split('\n');
  if (lines.length < 4) bad('invalid checkpoint - too few newlines');
  if (!/^[0-9]+$/.test(lines[1]) || BigInt(lines[1]) > 0xffffffffffffffffn) bad('invalid checkpoint - size invalid');
  let root;
  try {
    root = base64Decode(lines[2]);
  } catch {
    bad('invalid checkpoint - invalid hash');
  }
  return { origin, size: BigInt(lines[1]), rootHash: root, extensions: lines.slice(3, -1), otherSignatures, text };
}

// ---- the receipt -------------------------------------------------------------

function sameStrings(a, b) {
  a = a ?? [];
  b = b ?? [];
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameAlerts(a, b) {
  a = a ?? [];
  b = b ?? [];
  return (
    a.length === b.length &&
    a.every((x, i) => (x.severity ?? '') === (b[i].severity ?? '') && (x.code ?? '') === (b[i].code ?? '') && (x.message ?? '') === (b[i].message ?? ''))
  );
}

async function openEnvelope(envelopeBytes, signerKey) {
  const env = parseEnvelope(envelopeBytes);
  if (env.payloadType !== PAYLOAD_TYPE) throw new Error(`envelope payloadType is ${JSON.stringify(env.payloadType)}, want ${JSON.stringify(PAYLOAD_TYPE)}`);
  const sigs = Array.isArray(env.signatures) ? env.signatures : [];
  if (sigs.length === 0) throw new Error('envelope has no signatures');
  let payload;
  try {
    payload = base64Decode(env.payload ?? '');
  } catch {
    throw new Error('payload is not base64');
  }
  const message = pae(env.payloadType, payload);
  let signed = false;
  for (const s of sigs) {
    let sig;
    try {
      sig = base64Decode(s?.sig ?? '');
    } catch {
      try {
        sig = base64URLDecode(s?.sig ?? '');
      } catch {
        throw new Error('signature is not base64');
      }
    }
    if (await verifyECDSA(signerKey, message, sig)) {
      signed = true;
      break;
    }
  }
  if (!signed) throw new Error('envelope signature does not verify with the signer key');
  let st;
  try {
    st = JSON.parse(utf8Strict.decode(payload));
  } catch (e) {
    throw new Error(`payload is not an in-toto statement: ${e.message}`);
  }
  if (st?._type !== STATEMENT_TYPE || !recordKind(st)) {
    throw new Error(`statement type ${JSON.stringify(st?._type)} / predicate ${JSON.stringify(st?.predicateType)} is not a gatelog record`);
  }
  const kind = recordKind(st);
  const p = st.predicate ?? {};
  const carries = (v) => v !== undefined && v !== null;
  if ((kind !== 'decision' && carries(p.decision)) || (kind === 'event') !== carries(p.event) || (kind === 'admin') !== carries(p.admin)) {
    throw new Error(`a ${kind} record must carry its ${kind} part and nothing else`);
  }
  if (!Array.isArray(st.subject) || st.subject.length !== 1) throw new Error(`statement has ${st.subject?.length ?? 0} subjects, want 1`);
  const digest = hexEncode(await sha256(utf8.encode(canonicalJSON(st.predicate?.request ?? null))));
  if (st.subject[0]?.digest?.sha256 !== digest) throw new Error('statement subject digest does not match the recorded request');
  return st;
}

/**
 * Verifies a decision receipt (the JSON of GET /v1/decisions/{id}) against
 * the pinned log key and decision signer key (PEM strings or the results
 * of importPublicKey). Resolves to
 *   {ok: true, statement, checkpoint, leafHash, uuid, checks}
 * or {ok: false, check, reason, checks} where checks lists what passed.
 */
export async function verifyReceipt(receipt, logKeyIn, signerKeyIn) {
  const checks = [];
  const passed = (name) => checks.push(name);
  try {
    const r = receipt ?? {};
    let signerKey, logKey;
    try {
      signerKey = typeof signerKeyIn === 'string' ? await importPublicKey(signerKeyIn) : signerKeyIn;
      if (!signerKey?.key) throw new Error('no signer key pinned');
    } catch (e) {
      fail('signer key', e.message);
    }
    let envelope;
    try {
      envelope = base64Decode(r.envelope ?? '');
    } catch {
      fail('envelope', 'receipt envelope is not base64');
    }
    let st;
    try {
      st = await openEnvelope(envelope, signerKey);
    } catch (e) {
      fail('envelope', e.message);
    }
    passed('envelope signature (decision signer key)');
    const rec = st.predicate ?? {};
    const says = recordSays(st);
    if (r.decision_id !== rec.decision_id) fail('decision_id', `receipt says ${JSON.stringify(r.decision_id)}, signed record says ${JSON.stringify(rec.decision_id)}`);
    if (r.kind !== undefined && r.kind !== '' && r.kind !== says.kind) fail('kind', `receipt says ${JSON.stringify(r.kind)}, signed record is a ${says.kind}`);
    if (Boolean(r.allow) !== says.allow) fail('allow', `receipt says ${Boolean(r.allow)}, signed ${says.kind} record says ${says.allow}`);
    if (!sameStrings(r.reasons, says.reasons)) fail('reasons', 'receipt reasons differ from the signed record');
    if (!sameAlerts(r.alerts, says.alerts)) fail('alerts', 'receipt alerts differ from the signed record');
    passed('receipt matches the signed record');
    try {
      logKey = typeof logKeyIn === 'string' ? await importPublicKey(logKeyIn) : logKeyIn;
      if (!logKey?.key) throw new Error('no log key pinned');
    } catch (e) {
      fail('log key', e.message);
    }
    let body;
    try {
      body = await dsseBody(envelope, signerKey);
    } catch (e) {
      fail('log entry', e.message);
    }
    const leaf = await leafHash(body);
    const treeID = treeIDOf(logKey);
    const uuid = entryUUID(treeID, leaf);
    if (r.uuid !== uuid) fail('uuid', `receipt says ${JSON.stringify(r.uuid)}, recomputed from the envelope and log key ${JSON.stringify(uuid)}`);
    passed('log entry and UUID recomputed from the envelope');
    if (r.log_id !== logKey.id) fail('log_id', `receipt says ${JSON.stringify(r.log_id)}, the log key's ID is ${JSON.stringify(logKey.id)}`);
    let set;
    try {
      set = base64Decode(r.signed_entry_timestamp ?? '');
    } catch {
      fail('signed entry timestamp', 'is not base64');
    }
    const setMsg = setPayload(body, r.integrated_time, r.log_id, r.log_index);
    if (!(await verifyECDSA(logKey, setMsg, set))) {
      fail('signed entry timestamp', 'does not verify with the log key (integrated time, log index, log ID or entry changed?)');
    }
    passed('signed entry timestamp (log key)');
    const p = r.inclusion_proof;
    if (!p) fail('inclusion proof', 'receipt has none (fetch it with gatelog decide --out or GET /v1/decisions/{id})');
    if (p.log_index !== r.log_index) fail('inclusion proof', `proof is for index ${p.log_index}, receipt for ${r.log_index}`);
    if (!(p.log_index >= 0) || !(p.tree_size > p.log_index)) fail('inclusion proof', `index ${p.log_index} is outside tree size ${p.tree_size}`);
    let root;
    try {
      root = hexDecode(p.root_hash ?? '');
    } catch {
      fail('inclusion proof', 'root hash is not hex');
    }
    const hashes = (p.hashes ?? []).map((h, i) => {
      try {
        return hexDecode(h);
      } catch {
        return fail('inclusion proof', `hash ${i} is not hex`);
      }
    });
    const cp = await verifyCheckpoint(p.checkpoint, logKey);
    passed('checkpoint signature (log key)');
    if (cp.size !== BigInt(p.tree_size)) fail('inclusion proof', `proof is for tree size ${p.tree_size} but the checkpoint is for ${cp.size}`);
    if (!equalBytes(cp.rootHash, root)) fail('inclusion proof', 'proof root hash does not match the checkpoint root');
    try {
      await verifyInclusion(p.log_index, p.tree_size, leaf, hashes, root);
    } catch (e) {
      fail('inclusion proof', e.message);
    }
    passed(`inclusion proof (index ${p.log_index} of ${p.tree_size})`);
    if (!cp.origin.endsWith(`/${treeID}`)) fail('checkpoint', `origin ${JSON.stringify(cp.origin)} is not this log's (tree ID ${treeID})`);
    passed('checkpoint origin is this log');
    return { ok: true, statement: st, checkpoint: cp, leafHash: hexEncode(leaf), uuid, checks };
  } catch (e) {
    if (e instanceof VerificationError) return { ok: false, check: e.check, reason: e.reason, checks };
    return { ok: false, check: 'internal', reason: String(e?.message ?? e), checks };
  }
}

/** One line for people: "verified" or "NOT verified: <check>: <reason>". */
export function describe(result) {
  return result.ok ? 'verified' : `NOT verified: ${result.check}: ${result.reason}`;
}
