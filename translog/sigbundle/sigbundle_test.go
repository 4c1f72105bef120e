package sigbundle_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/internal/daemontest"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/sigbundle"
)

const policy = `package gatelog

default decision := {"allow": false, "reasons": ["no rule allows this action"]}

decision := {"allow": true, "reasons": ["authenticated subjects may trigger pipelines"]} if {
	input.action == "pipeline.trigger"
	input.subject.verified
}
`

// fixture is a real daemon with decisions in its log, and their bundles
// and the log's trusted root as gatelog log bundle and gatelog log
// trusted-root write them.
type fixture struct {
	logKey, signKey crypto.PublicKey
	bundleJSON      []byte   // the first decision's bundle
	tesseraJSON     []byte   // the same, with the log's own checkpoint
	more            [][]byte // every decision's bundle, fetched after the last
	rootJSON        []byte
}

// newFixture starts a daemon and makes 1+extra decisions.
func newFixture(t *testing.T, extra int) *fixture {
	t.Helper()
	d := daemontest.Open(t, daemon.Config{Policies: fstest.MapFS{"decision.rego": {Data: []byte(policy)}}})
	hs, ctx := d.HTTP, context.Background()
	f := &fixture{logKey: d.LogKey, signKey: d.SignerKey}
	// Records are private: without a read key there is no envelope to
	// bundle, and Fetch says why.
	anon, err := rekorapi.NewClient(hs.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rekorapi.NewClient(hs.URL, nil, rekorapi.WithBearer(d.Key))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := sigbundle.Fetch(ctx, anon, 0); !errors.Is(err, sigbundle.ErrIncomplete) || !errors.Is(err, rekorapi.ErrRecordsPrivate) {
			t.Errorf("bundle without a read key: %v, want ErrIncomplete and ErrRecordsPrivate", err)
		}
	}()
	var first rekorapi.LogEntryAnon
	for i := range 1 + extra {
		index := decide(t, hs.URL, d.Key)
		if i > 0 {
			continue
		}
		if _, first, err = c.EntryByIndex(ctx, index); err != nil {
			t.Fatal(err)
		}
		b, err := sigbundle.Fetch(ctx, c, index)
		if err != nil {
			t.Fatal(err)
		}
		if f.bundleJSON, err = sigbundle.Marshal(b); err != nil {
			t.Fatal(err)
		}
		tb, err := sigbundle.FromEntry(first)
		if err != nil {
			t.Fatal(err)
		}
		if f.tesseraJSON, err = sigbundle.Marshal(tb); err != nil {
			t.Fatal(err)
		}
	}
	for i := range int64(1 + extra) {
		b, err := sigbundle.Fetch(ctx, c, i)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := sigbundle.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		f.more = append(f.more, raw)
	}
	// The root's log is valid from its first entry (the daemon's own
	// record of its policy, which may be a second older than the first
	// decision): every bundle above must fall inside it.
	_, zero, err := c.EntryByIndex(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := sigbundle.TrustedRoot(f.logKey, hs.URL, time.Unix(zero.IntegratedTime, 0))
	if err != nil {
		t.Fatal(err)
	}
	if f.rootJSON, err = sigbundle.Marshal(tr); err != nil {
		t.Fatal(err)
	}
	return f
}

// decide makes one decision and returns its log index once a checkpoint
// covers it.
func decide(t *testing.T, url, apiKey string) int64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/decide?wait=checkpoint",
		strings.NewReader(`{"subject":{"id":"alice"},"action":"pipeline.trigger","resource":{"system":"github","repository":"acme/shop"}}`))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("decide: %d %s", resp.StatusCode, raw)
	}
	var rc struct {
		LogIndex int64 `json:"log_index"`
	}
	if err := json.Unmarshal(raw, &rc); err != nil {
		t.Fatal(err)
	}
	return rc.LogIndex
}

// sigstoreVerify verifies a bundle offline with sigstore-go, as an auditor
// would: the log from the trusted root, the decision key supplied as a
// trusted public key.
func sigstoreVerify(rootJSON, bundleJSON []byte, signKey crypto.PublicKey) error {
	tr, err := root.NewTrustedRootFromJSON(rootJSON)
	if err != nil {
		return err
	}
	sv, err := signature.LoadVerifier(signKey, crypto.SHA256)
	if err != nil {
		return err
	}
	keys := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(sv, time.Time{}, time.Time{}), nil
	})
	v, err := sgverify.NewVerifier(root.TrustedMaterialCollection{tr, keys},
		sgverify.WithTransparencyLog(1), sgverify.WithIntegratedTimestamps(1))
	if err != nil {
		return err
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return err
	}
	_, err = v.Verify(&b, sgverify.NewPolicy(sgverify.WithoutArtifactUnsafe(), sgverify.WithKey()))
	return err
}

func TestSigstoreGoVerifiesBundle(t *testing.T) {
	f := newFixture(t, 0)
	if err := sigstoreVerify(f.rootJSON, f.bundleJSON, f.signKey); err != nil {
		t.Fatalf("sigstore-go rejects the bundle: %v\n%s", err, f.bundleJSON)
	}

	// sigstore-go v1.3.0 takes a checkpoint whose origin does not end in
	// " - <tree id>" for a Rekor v2 one; the log's own "<host>/<tree id>"
	// checkpoints therefore do not verify, which is why Fetch has the log
	// restate them.
	err := sigstoreVerify(f.rootJSON, f.tesseraJSON, f.signKey)
	if err == nil || !strings.Contains(err.Error(), "checkpoint") {
		t.Errorf("a bundle with the log's own checkpoint: err = %v, want sigstore-go to reject its checkpoint", err)
	}

	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wrongRoot, err := sigbundle.TrustedRoot(otherKey.Public(), "http://127.0.0.1", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	wrongRootJSON, err := sigbundle.Marshal(wrongRoot)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoreVerify(wrongRootJSON, f.bundleJSON, f.signKey); err == nil {
		t.Error("the bundle verifies against a trusted root with another log key")
	}
	if err := sigstoreVerify(f.rootJSON, f.bundleJSON, otherKey.Public()); err == nil {
		t.Error("the bundle verifies with another decision key")
	}

	for _, tc := range []struct {
		name string
		edit func(b *protobundle.Bundle)
	}{
		{"envelope payload", func(b *protobundle.Bundle) { flip(b.GetDsseEnvelope().Payload, 40) }},
		{"envelope signature", func(b *protobundle.Bundle) { flip(b.GetDsseEnvelope().Signatures[0].Sig, 10) }},
		{"envelope payload type", func(b *protobundle.Bundle) { b.GetDsseEnvelope().PayloadType += "x" }},
		{"signed entry timestamp", func(b *protobundle.Bundle) { flip(tlog(b).InclusionPromise.SignedEntryTimestamp, 12) }},
		{"integrated time", func(b *protobundle.Bundle) { tlog(b).IntegratedTime++ }},
		{"log index", func(b *protobundle.Bundle) { tlog(b).LogIndex++ }},
		{"canonicalized body", func(b *protobundle.Bundle) {
			body := tlog(b).CanonicalizedBody
			i := strings.Index(string(body), `"value":"`) + len(`"value":"`) // the envelope hash
			body[i] ^= 0x01
		}},
		{"proof root hash", func(b *protobundle.Bundle) { flip(tlog(b).InclusionProof.RootHash, 3) }},
		{"proof tree size", func(b *protobundle.Bundle) { tlog(b).InclusionProof.TreeSize++ }},
		{"checkpoint", func(b *protobundle.Bundle) {
			cp := []byte(tlog(b).InclusionProof.Checkpoint.Envelope)
			i := strings.Index(string(cp), "\n\n") - 3 // in the root hash line
			cp[i] ^= 0x01
			tlog(b).InclusionProof.Checkpoint.Envelope = string(cp)
		}},
		{"checkpoint signature", func(b *protobundle.Bundle) {
			cp := tlog(b).InclusionProof.Checkpoint.Envelope
			i := len(cp) - 10
			tlog(b).InclusionProof.Checkpoint.Envelope = cp[:i] + string(rune(cp[i]^0x01)) + cp[i+1:]
		}},
	} {
		var b protobundle.Bundle
		if err := protojson.Unmarshal(f.bundleJSON, &b); err != nil {
			t.Fatal(err)
		}
		tc.edit(&b)
		raw, err := sigbundle.Marshal(&b)
		if err != nil {
			t.Fatal(err)
		}
		if err := sigstoreVerify(f.rootJSON, raw, f.signKey); err == nil {
			t.Errorf("bundle with the %s changed still verifies", tc.name)
		} else {
			t.Logf("%s changed: %v", tc.name, err)
		}
	}
}

// TestSigstoreGoVerifiesProofOfLongerLog: an entry that is not the last
// has a non-empty inclusion proof; one changed proof hash fails.
func TestSigstoreGoVerifiesProofHashes(t *testing.T) {
	f := newFixture(t, 3)
	for _, b := range f.more {
		if err := sigstoreVerify(f.rootJSON, b, f.signKey); err != nil {
			t.Fatalf("sigstore-go rejects the bundle: %v\n%s", err, b)
		}
	}
	var b protobundle.Bundle
	if err := protojson.Unmarshal(f.more[0], &b); err != nil {
		t.Fatal(err)
	}
	if len(tlog(&b).InclusionProof.Hashes) == 0 {
		t.Fatal("entry 0 of a tree of 4 has no proof hashes")
	}
	flip(tlog(&b).InclusionProof.Hashes[0], 5)
	raw, err := sigbundle.Marshal(&b)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoreVerify(f.rootJSON, raw, f.signKey); err == nil {
		t.Error("bundle with a changed proof hash still verifies")
	}
}

func tlog(b *protobundle.Bundle) *protorekor.TransparencyLogEntry {
	return b.GetVerificationMaterial().GetTlogEntries()[0]
}

func flip(b []byte, i int) { b[i%len(b)] ^= 0x01 }
