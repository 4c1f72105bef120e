package receipt_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
)

// newKey returns a fresh P-256 signer-verifier, as the daemon loads its
// decision key.
func newKey(t testing.TB) *signature.ECDSASignerVerifier {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

func record() decision.Record {
	return decision.Record{
		Kind:       decision.KindDecision,
		DecisionID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		Request: decision.Request{
			Subject:  decision.Subject{ID: "alice", Kind: "user", MFA: true, Verified: true},
			Action:   "deploy",
			Resource: decision.Resource{System: "github", Kind: "environment", Environment: "production", Repository: "acme/shop"},
		},
		Caller:   decision.Caller{ID: "apikey:ci", Kind: "api_key"},
		Decision: decision.Decision{Allow: true, Reasons: []string{"alice may deploy"}},
		Policy:   decision.Policy{SHA256: strings.Repeat("ab", 32), Entrypoint: "data.gatelog.decision"},
		Time:     "2026-12-06T10:00:00Z",
	}
}

// signed returns a fresh key, its signer and the envelope of record()
// signed with it.
func signed(t testing.TB) (*signature.ECDSASignerVerifier, *receipt.Signer, []byte) {
	t.Helper()
	sv := newKey(t)
	s, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Sign(record())
	if err != nil {
		t.Fatal(err)
	}
	return sv, s, env
}

func TestSignThenOpenGivesTheRecordBack(t *testing.T) {
	sv := newKey(t)
	s, err := receipt.NewSigner(sv)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := sv.PublicKey()
	id, err := receipt.KeyID(pub)
	if err != nil || id != s.KeyID() || len(id) != 64 {
		t.Fatalf("key ID %q (signer says %q): %v", id, s.KeyID(), err)
	}
	rec := record()
	env, err := s.Sign(rec)
	if err != nil {
		t.Fatal(err)
	}
	st, err := receipt.Open(env, sv)
	if err != nil {
		t.Fatal(err)
	}
	rec.Daemon.KeyID = s.KeyID() // Sign stamps it
	if !reflect.DeepEqual(st.Predicate, rec) {
		t.Errorf("opened record differs:\n got %+v\nwant %+v", st.Predicate, rec)
	}
	digest, _ := receipt.RequestDigest(rec.Request)
	if len(st.Subject) != 1 || st.Subject[0].Name != "decision:"+rec.DecisionID || st.Subject[0].Digest["sha256"] != digest {
		t.Errorf("subject is %+v, want decision:%s with the request's digest %s", st.Subject, rec.DecisionID, digest)
	}
}

// resign replaces the envelope's payload by change(payload) and signs it
// again with sv: a validly signed envelope around whatever change makes.
func resign(t *testing.T, sv signature.Signer, env []byte, change func([]byte) []byte) []byte {
	t.Helper()
	e, err := receipt.ParseEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := sigdsse.WrapSigner(sv, receipt.PayloadType).SignMessage(bytes.NewReader(change(payload)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenRefusesWhatIsNotAnIntactRecord(t *testing.T) {
	sv, _, env := signed(t)
	var e receipt.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(e.Payload)
	withEnvelope := func(f func(*receipt.Envelope)) []byte {
		c := e
		c.Signatures = append([]receipt.EnvelopeSignature(nil), e.Signatures...)
		f(&c)
		b, _ := json.Marshal(c)
		return b
	}
	for name, tc := range map[string]struct {
		env  []byte
		with signature.Verifier
		want string
	}{
		"another key": {env, newKey(t), "does not verify"},
		"payload changed after signing": {withEnvelope(func(c *receipt.Envelope) {
			c.Payload = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte(`"allow":true`), []byte(`"allow":false`), 1))
		}), sv, "does not verify"},
		"signature dropped":  {withEnvelope(func(c *receipt.Envelope) { c.Signatures = nil }), sv, "no signatures"},
		"other payload type": {withEnvelope(func(c *receipt.Envelope) { c.PayloadType = "text/plain" }), sv, "payloadType"},
		"not JSON":           {[]byte("not an envelope"), sv, "not DSSE JSON"},
		"request changed, subject kept": {resign(t, sv, env, func(p []byte) []byte {
			return bytes.Replace(p, []byte(`"alice"`), []byte(`"mallory"`), 1)
		}), sv, "digest does not match"},
		"not a gatelog decision": {resign(t, sv, env, func(p []byte) []byte {
			return bytes.Replace(p, []byte(receipt.PredicateType), []byte("https://example.com/other"), 1)
		}), sv, "not a gatelog record"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := receipt.Open(tc.env, tc.with)
			if !errors.Is(err, receipt.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want ErrInvalid saying %q", err, tc.want)
			}
		})
	}
}

// FuzzOpen feeds Open arbitrary envelopes: it never panics, and what it
// accepts is a gatelog record whose subject matches its request.
func FuzzOpen(f *testing.F) {
	sv, _, env := signed(f)
	f.Add(env)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := receipt.Open(data, sv)
		if err != nil {
			if !errors.Is(err, receipt.ErrInvalid) {
				t.Fatalf("error not marked ErrInvalid: %v", err)
			}
			return
		}
		digest, err := receipt.RequestDigest(st.Predicate.Request)
		if err != nil || st.Subject[0].Digest["sha256"] != digest || st.PredicateType != receipt.PredicateType {
			t.Fatalf("accepted a statement that is not an intact record: %+v", st)
		}
	})
}

func ExampleSigner_Sign() {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, _ := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	s, _ := receipt.NewSigner(sv)

	env, _ := s.Sign(decision.Record{
		DecisionID: "d-1",
		Request:    decision.Request{Subject: decision.Subject{ID: "alice"}, Action: "deploy"},
		Decision:   decision.Decision{Allow: true},
	})
	// Anyone with the public key can open the envelope.
	st, err := receipt.Open(env, sv)
	fmt.Println(err, st.Subject[0].Name, st.Predicate.Decision.Allow)
	// Output: <nil> decision:d-1 true
}

// TestRecordKindsAreSigned: an event and an administrative record are
// signed as their own predicate types, read back as their kind, and never
// carry an allow; a record whose predicate says "event" but which carries
// an allow does not open, so an event cannot pass for a policy allow.
func TestRecordKindsAreSigned(t *testing.T) {
	sv, s, _ := signed(t)
	base := record()
	base.Decision, base.Policy = decision.Decision{}, decision.Policy{}
	ev, ad := base, base
	ev.Kind, ev.Event = decision.KindEvent, &decision.Event{Type: "login", Message: "alice logged in", Alerts: []decision.Alert{{Severity: "low", Code: "login", Message: "hi"}}}
	ad.Kind, ad.Admin = decision.KindAdmin, &decision.Admin{Reason: "admin holds the admin permission"}
	for _, tc := range []struct {
		rec  decision.Record
		pred string
	}{{ev, receipt.EventPredicateType}, {ad, receipt.AdminPredicateType}, {record(), receipt.PredicateType}} {
		env, err := s.Sign(tc.rec)
		if err != nil {
			t.Fatalf("sign %s: %v", tc.rec.Kind, err)
		}
		st, err := receipt.Open(env, sv)
		if err != nil {
			t.Fatalf("open %s: %v", tc.rec.Kind, err)
		}
		if st.PredicateType != tc.pred || st.Predicate.Kind != tc.rec.Kind {
			t.Errorf("%s record: predicate %q kind %q, want %q", tc.rec.Kind, st.PredicateType, st.Predicate.Kind, tc.pred)
		}
		if got, want := st.Predicate.Allowed(), tc.rec.Kind == decision.KindDecision; got != want {
			t.Errorf("%s record: Allowed() = %v, want %v", tc.rec.Kind, got, want)
		}
		if strings.Contains(string(mustPayload(t, env)), `"allow"`) != (tc.rec.Kind == decision.KindDecision) {
			t.Errorf("%s record: payload %s", tc.rec.Kind, mustPayload(t, env))
		}
	}
	if got := (decision.Record{Kind: decision.KindEvent, Event: ev.Event}).Alerts(); len(got) != 1 {
		t.Errorf("an event's alerts: %v", got)
	}
	// A signer refuses to sign an event that carries an allow, and a
	// reader refuses one signed anyway.
	bad := ev
	bad.Decision = decision.Decision{Allow: true}
	if _, err := s.Sign(bad); !errors.Is(err, receipt.ErrInvalid) {
		t.Errorf("signing an event with an allow: %v, want ErrInvalid", err)
	}
	env, _ := s.Sign(ev)
	forged := resign(t, sv, env, func(p []byte) []byte {
		return []byte(strings.Replace(string(p), `"event":{`, `"decision":{"allow":true,"reasons":["ok"]},"event":{`, 1))
	})
	if _, err := receipt.Open(forged, sv); !errors.Is(err, receipt.ErrInvalid) {
		t.Errorf("an event record carrying an allow opened: %v", err)
	}
}

func mustPayload(t *testing.T, env []byte) []byte {
	t.Helper()
	e, err := receipt.ParseEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	p, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// memoSigner is a real key that signs each message once and gives the
// same signature for it again, so two routes to an envelope can be
// compared byte for byte.
type memoSigner struct {
	signature.Signer
	mu   sync.Mutex
	sigs map[string][]byte
}

func (m *memoSigner) SignMessage(r io.Reader, opts ...signature.SignOption) ([]byte, error) {
	msg, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if sig, ok := m.sigs[string(msg)]; ok {
		return sig, nil
	}
	sig, err := m.Signer.SignMessage(bytes.NewReader(msg), opts...)
	if err == nil {
		m.sigs[string(msg)] = sig
	}
	return sig, err
}

// SignRecord's envelope is byte for byte the one sigstore's DSSE signer
// makes of the same statement and signature, and the parts it returns are
// the envelope's.
func TestSignRecordIsSigstoresEnvelope(t *testing.T) {
	sv := newKey(t)
	memo := &memoSigner{Signer: sv, sigs: map[string][]byte{}}
	s, err := receipt.NewSigner(memo)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []decision.Record{record(), {Kind: decision.KindEvent, DecisionID: "e", Event: &decision.Event{Type: "t", Message: "<&>\"\u2028"}, Time: "2026-12-06T10:00:00Z"}} {
		signed, err := s.SignRecord(context.Background(), rec)
		if err != nil {
			t.Fatal(err)
		}
		want, err := sigdsse.WrapSigner(memo, receipt.PayloadType).SignMessage(bytes.NewReader(signed.Statement))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(signed.Envelope, want) {
			t.Fatalf("envelope differs from sigstore's:\n got %s\nwant %s", signed.Envelope, want)
		}
		e, err := receipt.ParseEnvelope(signed.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if e.Payload != base64.StdEncoding.EncodeToString(signed.Statement) || len(e.Signatures) != 1 || e.Signatures[0].Sig != signed.Signature {
			t.Errorf("parts differ from the envelope: payload %t, signatures %+v vs %q", e.Payload == base64.StdEncoding.EncodeToString(signed.Statement), e.Signatures, signed.Signature)
		}
		st, err := receipt.Open(signed.Envelope, sv)
		if err != nil {
			t.Fatal(err)
		}
		if st.Subject[0].Digest["sha256"] != signed.SubjectDigest {
			t.Errorf("subject digest %s, SignRecord says %s", st.Subject[0].Digest["sha256"], signed.SubjectDigest)
		}
	}
}

// BenchmarkSign: one record signed (statement, digest, signature,
// envelope).
func BenchmarkSign(b *testing.B) {
	s, err := receipt.NewSigner(newKey(b))
	if err != nil {
		b.Fatal(err)
	}
	rec := record()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignRecord(context.Background(), rec); err != nil {
			b.Fatal(err)
		}
	}
}

// A key loaded into this process is in-process (signed on the caller's
// goroutine); a signer of another type, such as a KMS client, is not.
func TestInProcess(t *testing.T) {
	local, err := receipt.NewSigner(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	other, err := receipt.NewSigner(&memoSigner{Signer: newKey(t), sigs: map[string][]byte{}})
	if err != nil {
		t.Fatal(err)
	}
	if !local.InProcess() || other.InProcess() {
		t.Errorf("InProcess: loaded key %t (want true), wrapped signer %t (want false)", local.InProcess(), other.InProcess())
	}
}

// Every in-process key type signs an envelope its verifier opens: ECDSA
// and RSA sign the encoding's digest, Ed25519 the encoding itself (a
// digest handed to it would be ignored, and the empty message signed).
func TestSignRecordWithEachKeyType(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := signature.LoadED25519SignerVerifier(edKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := signature.LoadRSAPKCS1v15SignerVerifier(rsaKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	for name, sv := range map[string]signature.SignerVerifier{"ecdsa": newKey(t), "ed25519": ed, "rsa": rs} {
		s, err := receipt.NewSigner(sv)
		if err != nil {
			t.Fatal(err)
		}
		rec := decision.Record{DecisionID: "d-" + name, Kind: decision.KindDecision, Time: "2026-12-07T10:00:00Z",
			Request: decision.Request{Action: "deploy", Subject: decision.Subject{ID: "alice"}}, Decision: decision.Decision{Allow: true, Reasons: []string{"ok"}}}
		signed, err := s.SignRecord(context.Background(), rec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st, err := receipt.Open(signed.Envelope, sv)
		if err != nil {
			t.Errorf("%s: the envelope does not verify with its key: %v", name, err)
			continue
		}
		if st.Predicate.DecisionID != rec.DecisionID {
			t.Errorf("%s: opened statement is about %q", name, st.Predicate.DecisionID)
		}
	}
}
