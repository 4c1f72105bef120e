package verify_test

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/verify"
)

// rotated is a log whose first entries are signed by key A and the rest,
// after a rotation, by key B.
type rotated struct {
	*testLog
	a, b       verify.SigningKey
	rcs        []decision.Receipt // 0..2 by A, 3..5 by B
	entries    []translog.Entry
	rotatedAt  time.Time
	aPub, bPub crypto.PublicKey
}

func newRotated(t *testing.T) *rotated {
	t.Helper()
	l := openLog(t)
	r := &rotated{testLog: l, aPub: l.signerKey(t)}
	var ids []string
	for i := range 3 {
		ids = append(ids, fmt.Sprintf("a-%d", i))
		r.entries = append(r.entries, l.append(t, ids[i]))
	}
	r.rotatedAt = time.Unix(r.entries[2].IntegratedTime, 0)
	bKey := newKey(t)
	sv, err := signature.LoadECDSASignerVerifier(bKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if l.sign, err = receipt.NewSigner(sv); err != nil {
		t.Fatal(err)
	}
	if l.signerPEM, err = entry.PublicKeyPEM(bKey.Public()); err != nil {
		t.Fatal(err)
	}
	r.bPub = bKey.Public()
	for i := range 3 {
		ids = append(ids, fmt.Sprintf("b-%d", i))
		r.entries = append(r.entries, l.append(t, ids[3+i]))
	}
	r.rcs = l.prove(t, r.entries, ids)
	r.a = signingKey(t, r.aPub)
	r.b = signingKey(t, r.bPub)
	return r
}

func signingKey(t *testing.T, pub crypto.PublicKey) verify.SigningKey {
	t.Helper()
	ks, err := verify.KeySet(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ks.Keys[0]
}

// TestKeySetRotationVerifiesEveryGoodEntry: with the key set a daemon
// publishes after a rotation (A retired when B took over), every receipt
// and every entry of either key verifies; an auditor with one key of the
// two would reject the other's.
func TestKeySetRotationVerifiesEveryGoodEntry(t *testing.T) {
	r := newRotated(t)
	a, b := r.a, r.b
	a.ValidFrom, a.ValidUntil = r.rotatedAt.Add(-time.Hour), r.rotatedAt
	b.ValidFrom = r.rotatedAt
	v, err := verify.New(r.key.Public(), verify.WithSigningKeys(verify.SigningKeys{Keys: []verify.SigningKey{a, b}}))
	if err != nil {
		t.Fatal(err)
	}
	for i, rc := range r.rcs {
		res, err := v.Receipt(rc)
		if err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		if res.Statement.Predicate.DecisionID != rc.DecisionID {
			t.Errorf("receipt %d verified as %s", i, res.Statement.Predicate.DecisionID)
		}
		e := r.entries[i]
		for _, env := range [][]byte{e.Envelope, nil} {
			got, err := v.Entry(verify.Entry{Body: e.Body, LogIndex: e.Index, IntegratedTime: e.IntegratedTime, LogID: rc.LogID, SET: e.SignedEntryTimestamp, Envelope: env})
			if err != nil {
				t.Fatalf("entry %d (envelope %v): %v", i, env != nil, err)
			}
			want := a.KeyID
			if i >= 3 {
				want = b.KeyID
			}
			if got.KeyID != want || (env != nil) != (got.Statement != nil) {
				t.Errorf("entry %d: key %s, statement %v; want key %s", i, got.KeyID, got.Statement != nil, want)
			}
		}
	}
	// One key alone: the other key's receipts do not verify with it, and
	// its entries name a key that is not the one.
	onlyA, err := verify.New(r.key.Public(), verify.WithSignerKey(r.aPub))
	if err != nil {
		t.Fatal(err)
	}
	_, err = onlyA.Receipt(r.rcs[4])
	wantFailure(t, "B's receipt with A alone", err, verify.CheckEnvelope)
	e := r.entries[4]
	_, err = onlyA.Entry(verify.Entry{Body: e.Body, LogIndex: e.Index, IntegratedTime: e.IntegratedTime, LogID: r.rcs[4].LogID, SET: e.SignedEntryTimestamp})
	wantFailure(t, "B's entry with A alone", err, verify.CheckSignerKey)
	if !errors.Is(err, verify.ErrUnknownKey) {
		t.Errorf("B's entry with A alone: %v, want ErrUnknownKey", err)
	}
	// In a key set the record names its key: B's receipt without B is an
	// unknown key, not a bad signature.
	setA, err := verify.New(r.key.Public(), verify.WithSigningKeys(verify.SigningKeys{Keys: []verify.SigningKey{a}}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = setA.Receipt(r.rcs[4])
	wantFailure(t, "B's receipt with the set of A", err, verify.CheckSignerKey)
	if !errors.Is(err, verify.ErrUnknownKey) {
		t.Errorf("B's receipt with the set of A: %v, want ErrUnknownKey", err)
	}
}

// TestKeySetRefusesAKeyOutsideItsWindow: a record signed by a key after it
// was retired (or before it took effect, or by a key never activated) does
// not verify, as a receipt or as an entry, public leaf or full record.
func TestKeySetRefusesAKeyOutsideItsWindow(t *testing.T) {
	r := newRotated(t)
	logged := time.Unix(r.entries[0].IntegratedTime, 0)
	retired, future, pending := r.a, r.b, r.b
	retired.ValidUntil = logged.Add(-verify.ValidityGrace - time.Minute)
	future.ValidFrom = logged.Add(verify.ValidityGrace + time.Hour)
	pending.Pending = true
	for _, tc := range []struct {
		name  string
		keys  []verify.SigningKey
		index int
	}{
		{"A after its retirement", []verify.SigningKey{retired, r.b}, 1},
		{"B before it took effect", []verify.SigningKey{r.a, future}, 4},
		{"B never activated", []verify.SigningKey{r.a, pending}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := verify.New(r.key.Public(), verify.WithSigningKeys(verify.SigningKeys{Keys: tc.keys}))
			if err != nil {
				t.Fatal(err)
			}
			rc, e := r.rcs[tc.index], r.entries[tc.index]
			_, err = v.Receipt(rc)
			wantFailure(t, "receipt", err, verify.CheckSignerKey)
			if !errors.Is(err, verify.ErrKeyNotValid) {
				t.Errorf("receipt: %v, want ErrKeyNotValid", err)
			}
			for _, env := range [][]byte{e.Envelope, nil} {
				_, err = v.Entry(verify.Entry{Body: e.Body, LogIndex: e.Index, IntegratedTime: e.IntegratedTime, LogID: rc.LogID, SET: e.SignedEntryTimestamp, Envelope: env})
				wantFailure(t, "entry", err, verify.CheckSignerKey)
				if !errors.Is(err, verify.ErrKeyNotValid) {
					t.Errorf("entry: %v, want ErrKeyNotValid", err)
				}
			}
			// The other key's records still verify.
			if _, err := v.Receipt(r.rcs[(tc.index+3)%6]); err != nil {
				t.Errorf("the other key's receipt: %v", err)
			}
		})
	}
}

// TestEntryChecksTheLogsPromises: an entry whose integrated time, SET or
// envelope was changed does not verify, and says which check failed.
func TestEntryChecksTheLogsPromises(t *testing.T) {
	r := newRotated(t)
	v, err := verify.New(r.key.Public(), verify.WithSigningKeys(verify.SigningKeys{Keys: []verify.SigningKey{r.a, r.b}}))
	if err != nil {
		t.Fatal(err)
	}
	e, rc := r.entries[1], r.rcs[1]
	good := verify.Entry{Body: e.Body, LogIndex: e.Index, IntegratedTime: e.IntegratedTime, LogID: rc.LogID, SET: e.SignedEntryTimestamp, Envelope: e.Envelope}
	for _, tc := range []struct {
		name  string
		edit  func(*verify.Entry)
		check verify.Check
	}{
		{"integrated time moved back into a window", func(x *verify.Entry) { x.IntegratedTime -= 3600 }, verify.CheckSET},
		{"another index", func(x *verify.Entry) { x.LogIndex++ }, verify.CheckSET},
		{"another log", func(x *verify.Entry) { x.LogID = "00" + x.LogID[2:] }, verify.CheckLogID},
		{"another entry's envelope", func(x *verify.Entry) { x.Envelope = r.entries[2].Envelope }, verify.CheckEnvelope},
		{"another entry's SET", func(x *verify.Entry) { x.SET = r.entries[2].SignedEntryTimestamp }, verify.CheckSET},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := good
			tc.edit(&x)
			_, err := v.Entry(x)
			wantFailure(t, tc.name, err, tc.check)
		})
	}
	if _, err := v.Entry(good); err != nil {
		t.Fatalf("the untouched entry: %v", err)
	}
}

func TestParseSigningKeysChecksKeyIDs(t *testing.T) {
	r := newRotated(t)
	good, _ := json.Marshal(verify.SigningKeys{Keys: []verify.SigningKey{r.a, r.b}})
	if _, err := verify.ParseSigningKeys(good); err != nil {
		t.Fatal(err)
	}
	swapped := r.a
	swapped.KeyID = r.b.KeyID
	bad, _ := json.Marshal(verify.SigningKeys{Keys: []verify.SigningKey{swapped}})
	if _, err := verify.ParseSigningKeys(bad); err == nil {
		t.Error("a key set whose key ID is another key's parsed")
	}
	for _, raw := range []string{`{"keys":[]}`, `[]`, `{"keys":[{"key_id":"x","public_key":"not pem"}]}`} {
		if _, err := verify.ParseSigningKeys([]byte(raw)); err == nil {
			t.Errorf("%s parsed", raw)
		}
	}
	if _, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(r.a.PublicKey)); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseSigningKeys(f *testing.F) {
	f.Add([]byte(`{"keys":[{"key_id":"ab","public_key":"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n","valid_until":"2026-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ks, err := verify.ParseSigningKeys(raw)
		if err != nil {
			return
		}
		for _, k := range ks.Keys {
			if _, err := ks.Select(k.KeyID, time.Unix(0, 0)); err != nil && !errors.Is(err, verify.ErrKeyNotValid) {
				t.Errorf("a parsed key set cannot select its own key %s: %v", k.KeyID, err)
			}
		}
	})
}
