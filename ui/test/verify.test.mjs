// Runs the browser verification library (ui/web/verify.js) over the vectors
// that ui/vectors_test.go generates from a real daemon and checks with
// translog/verify: every case must pass or fail exactly as labelled, and a
// failure must name the same check the Go verifier names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  verifyReceipt, verifyInclusion, verifyConsistency, verifyCheckpoint, importPublicKey,
  derToP1363, canonicalJSON, hexDecode, describe,
} from '../web/verify.js';

const vectors = JSON.parse(readFileSync(new URL('../testdata/vectors.json', import.meta.url), 'utf8'));

test('receipt vectors', async (t) => {
  assert.ok(vectors.receipts.length > 30);
  for (const c of vectors.receipts) {
    await t.test(c.name, async () => {
      const res = await verifyReceipt(c.receipt, c.log_public_key || vectors.log_public_key, c.signer_public_key || vectors.signer_public_key);
      if (c.valid) {
        assert.equal(describe(res), 'verified');
        assert.equal(res.uuid, c.receipt.uuid);
        assert.equal(res.statement.predicate.decision_id, c.receipt.decision_id);
      } else {
        assert.equal(res.ok, false, `accepted a receipt labelled to fail ${c.check}`);
        assert.equal(res.check, c.check, describe(res));
        assert.match(describe(res), /^NOT verified: /);
      }
    });
  }
});

test('inclusion vectors', async () => {
  for (const c of vectors.inclusion) {
    let err = null;
    try {
      await verifyInclusion(c.index, c.size, hexDecode(c.leaf_hash), c.hashes.map(hexDecode), hexDecode(c.root));
    } catch (e) {
      err = e;
    }
    assert.equal(err === null, c.valid, `${c.name}: ${err}`);
  }
});

test('consistency vectors', async () => {
  for (const c of vectors.consistency) {
    let err = null;
    try {
      await verifyConsistency(c.size1, c.size2, c.hashes.map(hexDecode), hexDecode(c.root1), hexDecode(c.root2));
    } catch (e) {
      err = e;
    }
    assert.equal(err === null, c.valid, `${c.name}: ${err}`);
  }
});

test('checkpoint of a valid receipt parses', async () => {
  const key = await importPublicKey(vectors.log_public_key);
  const p = vectors.receipts.find((c) => c.valid).receipt.inclusion_proof;
  const cp = await verifyCheckpoint(p.checkpoint, key);
  assert.equal(cp.size, BigInt(p.tree_size));
  assert.equal(Buffer.from(cp.rootHash).toString('hex'), p.root_hash);
  assert.deepEqual(cp.otherSignatures, []);
});

test('pinned PEM with other line breaks gives the same key', async () => {
  const a = await importPublicKey(vectors.log_public_key);
  const b = await importPublicKey(vectors.log_public_key.replace(/\n/g, '\r\n').trimEnd());
  assert.equal(a.pem, vectors.log_public_key);
  assert.equal(b.pem, vectors.log_public_key);
  assert.equal(a.id, vectors.receipts[0].receipt.log_id);
  await assert.rejects(importPublicKey('not a key'));
});

test('DER to P1363 rejects what is not strict DER', () => {
  const good = Uint8Array.from([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]);
  assert.deepEqual([...derToP1363(good)].filter((x) => x !== 0), [1, 2]);
  assert.equal(derToP1363(Uint8Array.from([...good, 0])), null);
  assert.equal(derToP1363(Uint8Array.from([0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x02])), null);
  assert.equal(derToP1363(Uint8Array.from([0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x02])), null);
});

test('canonical JSON sorts keys by UTF-16 code units', () => {
  assert.equal(canonicalJSON({ logIndex: 1, logID: 'x', body: 'b', integratedTime: 2 }), '{"body":"b","integratedTime":2,"logID":"x","logIndex":1}');
  assert.equal(canonicalJSON({ b: [1, 1e21, 0.5, -0], a: '<&\u2028>' }), '{"a":"<&\u2028>","b":[1,1e+21,0.5,0]}');
});
