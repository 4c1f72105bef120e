package translog

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/tessera/storage/posix"
	bolt "go.etcd.io/bbolt"

	"github.com/gatelog/gatelog/internal/envrecord"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/verify"
)

// seqFixture signs decision records and opens the embedded log in dir.
type seqFixture struct {
	t      *testing.T
	dir    string
	logKey *ecdsa.PrivateKey
	signer *receipt.Signer
	pem    []byte
}

func newSeqFixture(t *testing.T) *seqFixture {
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	decKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, err := signature.LoadECDSASignerVerifier(decKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := entry.PublicKeyPEM(decKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &seqFixture{t: t, dir: t.TempDir(), logKey: logKey, signer: signer, pem: pem}
}

func (f *seqFixture) open() *Log {
	f.t.Helper()
	d, err := posix.New(context.Background(), posix.Config{Path: TilesDir(f.dir)})
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := Open(context.Background(), Config{Driver: d, Dir: f.dir, Key: f.logKey, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

func (f *seqFixture) envelope(id string) []byte {
	f.t.Helper()
	env, err := f.signer.Sign(decision.Record{DecisionID: id, Decision: decision.Decision{Allow: true}})
	if err != nil {
		f.t.Fatal(err)
	}
	return env
}

// appendN appends decisions from..from+n-1 concurrently and returns the
// entries by decision ID.
func (f *seqFixture) appendN(l *Log, from, n int) map[string]Entry {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out = map[string]Entry{}
	)
	for i := from; i < from+n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("decision-", i)
			e, err := l.Append(context.Background(), id, f.envelope(id), f.pem)
			if err != nil {
				f.t.Error(err)
				return
			}
			mu.Lock()
			out[id] = e
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// check finds every entry by its key as it was acknowledged, with a SET
// that verifies for its index and an inclusion proof that verifies.
func (f *seqFixture) check(l *Log, want map[string]Entry) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for id, w := range want {
		e, err := l.Lookup(id)
		if err != nil {
			f.t.Fatalf("%s: %v", id, err)
		}
		if e.Index != w.Index || string(e.Envelope) != string(w.Envelope) || string(e.SignedEntryTimestamp) != string(w.SignedEntryTimestamp) || e.IntegratedTime != w.IntegratedTime {
			f.t.Fatalf("%s: read back at %d, acknowledged at %d (or with another envelope or SET)", id, e.Index, w.Index)
		}
		if err := verify.SET(e.SignedEntryTimestamp, e.Body, e.IntegratedTime, l.LogID(), e.Index, f.logKey.Public()); err != nil {
			f.t.Fatalf("%s: SET: %v", id, err)
		}
		p, err := l.InclusionProof(ctx, e.Index, true)
		if err != nil {
			f.t.Fatalf("%s: inclusion proof: %v", id, err)
		}
		if _, err := verify.Inclusion(p.Checkpoint, f.logKey.Public(), uint64(p.Index), uint64(p.TreeSize), p.RootHash, e.LeafHash, p.Hashes); err != nil {
			f.t.Fatalf("%s: inclusion proof does not verify: %v", id, err)
		}
	}
}

// Appends get distinct indexes 0..n-1 from the store, each with a SET for
// that index; Tessera integrates them at those indexes, and a reopened
// log sequences on from where the last one stopped.
func TestAppendSequencesInTheStoreAndTesseraFollows(t *testing.T) {
	f := newSeqFixture(t)
	l := f.open()
	want := f.appendN(l, 0, 40)
	seen := map[int64]bool{}
	for _, e := range want {
		if e.Index < 0 || e.Index >= 40 || seen[e.Index] {
			t.Fatalf("index %d given twice or outside 0..39", e.Index)
		}
		seen[e.Index] = true
	}
	f.check(l, want)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l = f.open()
	defer l.Close(context.Background())
	more := f.appendN(l, 40, 25)
	for id, e := range more {
		if e.Index < 40 {
			t.Fatalf("%s sequenced at %d after a restart at 40", id, e.Index)
		}
		want[id] = e
	}
	f.check(l, want)
}

// Entries the store sequenced but Tessera never integrated (the daemon
// stopped in between) are integrated after the next Open, at the indexes
// their SETs promise.
func TestIntegrationResumesFromTheStore(t *testing.T) {
	f := newSeqFixture(t)
	l := f.open()
	want := f.appendN(l, 0, 10)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Sequence 30 more with the store alone, as a daemon killed before
	// its integrator ran leaves them.
	st, err := openStore(filepath.Join(f.dir, storeDir, storeFile), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	signer := &Log{cfg: Config{Key: f.logKey}, logID: l.LogID()}
	st.signSET = signer.signSET
	for i := 10; i < 40; i++ {
		id := fmt.Sprint("decision-", i)
		env := f.envelope(id)
		body, err := entry.DSSEBody(env, f.pem)
		if err != nil {
			t.Fatal(err)
		}
		sw := &sequenceWrite{rec: storedEntry{Key: id, IntegratedTime: time.Now().Unix(), Envelope: env, SignerPEM: f.pem, Body: body}, leaf: entry.LeafHash(body)}
		sw.block = envrecord.Block(sw.rec)
		if err := st.sequence(context.Background(), sw); err != nil {
			t.Fatal(err)
		}
		if sw.index != uint64(i) {
			t.Fatalf("%s sequenced at %d, want %d", id, sw.index, i)
		}
		want[id] = Entry{Index: int64(sw.index), Envelope: env, SignedEntryTimestamp: sw.rec.SET, IntegratedTime: sw.rec.IntegratedTime}
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	l = f.open()
	defer l.Close(context.Background())
	f.check(l, want)
	if n, err := l.integratedSize(context.Background()); err != nil || n != 40 {
		t.Fatalf("tiles hold %d entries (%v), want 40", n, err)
	}
}

// The search keys Append records from the entry it just made are the ones
// searchKeys reads back from a stored body and envelope.
func TestAppendSearchKeysMatchStoredOnes(t *testing.T) {
	f := newSeqFixture(t)
	env := f.envelope("decision-search")
	d, err := entry.NewDSSE(env, f.pem)
	if err != nil {
		t.Fatal(err)
	}
	got, want := dsseSearchKeys(d), searchKeys(d.Body, env)
	if len(want) != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Append records %v, stored entries give %v (want payload, envelope and subject digests)", got, want)
	}
}

// An envelope appended with the parts its signer made it of gets the
// leaf, the search keys and the stored envelope it gets appended alone,
// and its entry verifies like any other.
func TestAppendEnvelopeIsAppend(t *testing.T) {
	f := newSeqFixture(t)
	signed, err := f.signer.SignRecord(context.Background(), decision.Record{DecisionID: "decision-parts", Decision: decision.Decision{Allow: true}})
	if err != nil {
		t.Fatal(err)
	}
	env := Envelope{JSON: signed.Envelope, Payload: signed.Statement, Signatures: []string{signed.Signature}, SubjectDigests: []string{signed.SubjectDigest}}
	parts, err := entry.NewDSSEParts(env.JSON, env.Payload, env.Signatures, f.pem)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := entry.NewDSSE(env.JSON, f.pem)
	if err != nil {
		t.Fatal(err)
	}
	if string(parts.Body) != string(whole.Body) || parts.PayloadHash != whole.PayloadHash || parts.EnvelopeHash != whole.EnvelopeHash {
		t.Fatalf("body from parts:\n%s\nfrom the envelope:\n%s", parts.Body, whole.Body)
	}
	if got, want := searchKeysOf(parts, env.SubjectDigests), searchKeys(whole.Body, env.JSON); len(want) != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AppendEnvelope records %v, stored entries give %v", got, want)
	}
	l := f.open()
	defer l.Close(context.Background())
	e, err := l.AppendEnvelope(context.Background(), "decision-parts", env, f.pem)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Body) != string(whole.Body) || string(e.Envelope) != string(env.JSON) {
		t.Fatalf("entry holds body %s / envelope %s", e.Body, e.Envelope)
	}
	f.check(l, map[string]Entry{"decision-parts": e})
	if _, err := l.AppendEnvelope(context.Background(), "decision-none", Envelope{JSON: env.JSON, Payload: env.Payload}, f.pem); !errors.Is(err, entry.ErrMalformed) {
		t.Fatalf("an envelope without signatures: %v, want ErrMalformed", err)
	}
}

// A store in the layout written before the store became the sequencer
// (records keyed by arrival, leaves → arrival, no SETs) is carried over by
// Open: every entry in the tiles gets its log record, with a SET signed
// once, and appends continue after them.
func TestOpenMigratesTheEarlierLayout(t *testing.T) {
	f := newSeqFixture(t)
	l := f.open()
	want := f.appendN(l, 0, 12)
	f.check(l, want)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Rewrite the store as the earlier layout had it.
	db, err := bolt.Open(filepath.Join(f.dir, storeDir, storeFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		records, err := tx.CreateBucket(bucketRecords)
		if err != nil {
			return err
		}
		leaves, err := tx.CreateBucket(bucketLeaves)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			rec, err := envrecord.Decode(v)
			if err != nil {
				return err
			}
			arrival := []byte{0, 0, 0, 0, 0, 0, 1, k[7]}
			if err := records.Put(arrival, envrecord.Encode(storedEntry{Key: rec.Key, IntegratedTime: rec.IntegratedTime, Envelope: rec.Envelope, SignerPEM: rec.SignerPEM})); err != nil {
				return err
			}
			if err := leaves.Put(entry.LeafHash(rec.Body), arrival); err != nil {
				return err
			}
		}
		return tx.DeleteBucket(bucketLog)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	l = f.open()
	defer l.Close(context.Background())
	// The SETs are new (signed at migration), so compare all but them.
	for id, e := range want {
		got, err := l.Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Index != e.Index || string(got.Envelope) != string(e.Envelope) || got.SignedEntryTimestamp == nil {
			t.Fatalf("%s after migration: index %d (want %d), SET %x", id, got.Index, e.Index, got.SignedEntryTimestamp)
		}
		e.SignedEntryTimestamp = got.SignedEntryTimestamp
		want[id] = e
	}
	more := f.appendN(l, 12, 3)
	for id, e := range more {
		if e.Index < 12 {
			t.Fatalf("%s appended at %d, inside the migrated entries", id, e.Index)
		}
		want[id] = e
	}
	f.check(l, want)
}
