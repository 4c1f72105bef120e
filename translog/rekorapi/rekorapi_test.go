package rekorapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-openapi/runtime"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/swag/conv"
	rclient "github.com/sigstore/rekor/pkg/client"
	genclient "github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/client/index"
	"github.com/sigstore/rekor/pkg/generated/client/pubkey"
	"github.com/sigstore/rekor/pkg/generated/client/tlog"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"
	dsse_v001 "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1"
	"github.com/sigstore/rekor/pkg/util"
	rverify "github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/entry"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

// testLog is a real Tessera log on disk serving the Rekor API over HTTP.
type testLog struct {
	log *translog.Log
	// srv serves the API with the daemon's access rule (testAccess); pub
	// with public records.
	srv, pub  *httptest.Server
	logKey    *ecdsa.PrivateKey
	signer    signature.SignerVerifier
	signerPEM []byte
	envelopes [][]byte
	entries   []translog.Entry
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openLog(t testing.TB, n int) *testLog {
	t.Helper()
	ctx := context.Background()
	tl := &testLog{logKey: newKey(t)}
	l, err := translog.Open(ctx, logConfig(t, translog.Config{
		Dir: t.TempDir(), Key: tl.logKey, Host: "gatelog.test", CheckpointInterval: 100 * time.Millisecond,
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	tl.log = l
	sk := newKey(t)
	tl.signer, err = signature.LoadECDSASignerVerifier(sk, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	tl.signerPEM, err = cryptoutils.MarshalPublicKeyToPEM(sk.Public())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		tl.append(t, fmt.Sprintf("decision-%d", i))
	}
	tl.srv = httptest.NewServer(rekorapi.Handler(l, rekorapi.Options{Access: testAccess}))
	t.Cleanup(tl.srv.Close)
	tl.pub = httptest.NewServer(rekorapi.Handler(l, rekorapi.Options{Access: rekorapi.PublicRecords}))
	t.Cleanup(tl.pub.Close)
	return tl
}

// Credentials testAccess knows.
const (
	readerKey  = "reader"  // may read records
	deciderKey = "decider" // valid, but without the read permission
)

// testAccess is the daemon's access rule (daemon) with two fixed
// credentials: none is the public view, a reader sees records, a valid
// credential without the read permission is refused with 403, a bad one
// with 401.
func testAccess(w http.ResponseWriter, r *http.Request) rekorapi.View {
	switch r.Header.Get("Authorization") {
	case "":
		return rekorapi.Leaf
	case "Bearer " + readerKey:
		return rekorapi.Full
	case "Bearer " + deciderKey:
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"code":403,"message":"caller decider lacks the read permission"}`)
	default:
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"code":401,"message":"unauthenticated"}`)
	}
	return rekorapi.Refused
}

// statement is an in-toto statement like a decision record's.
func statement(id string) []byte {
	sum := sha256.Sum256([]byte("request " + id))
	return fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"request","digest":{"sha256":"%x"}}],"predicateType":"https://gatelog.dev/decision/v1","predicate":{"decision_id":%q}}`, sum, id)
}

func (tl *testLog) append(t testing.TB, id string) translog.Entry {
	t.Helper()
	env, err := sigdsse.WrapSigner(tl.signer, "application/vnd.in-toto+json").SignMessage(bytes.NewReader(statement(id)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := tl.log.Append(context.Background(), id, env, tl.signerPEM)
	if err != nil {
		t.Fatal(err)
	}
	tl.envelopes = append(tl.envelopes, env)
	tl.entries = append(tl.entries, e)
	return e
}

func (tl *testLog) rekor(t testing.TB) *rekorClient {
	t.Helper()
	return tl.rekorAt(t, tl.srv.URL)
}

// rekorAt is Rekor's own client for the API served at url.
func (tl *testLog) rekorAt(t testing.TB, url string) *rekorClient {
	t.Helper()
	c, err := rclient.GetRekorClient(url)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadVerifier(tl.logKey.Public(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &rekorClient{c, v}
}

type rekorClient struct {
	*genclient.Rekor
	verifier signature.Verifier
}

// TestDSSEBodyMatchesRekor is the compatibility test everything else rests
// on: for the same envelope and verifier key, gatelog's leaf is byte for
// byte the body Rekor's own dsse v0.0.1 type canonicalizes.
func TestDSSEBodyMatchesRekor(t *testing.T) {
	tl := openLog(t, 0)
	for i, payload := range [][]byte{statement("a"), []byte("not json at all"), {}} {
		env, err := sigdsse.WrapSigner(tl.signer, "application/vnd.in-toto+json").SignMessage(bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		ours, err := entry.DSSEBody(env, tl.signerPEM)
		if err != nil {
			t.Fatal(err)
		}
		theirs := rekorCanonical(t, env, tl.signerPEM)
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("case %d: bodies differ\nours:  %s\nrekor: %s", i, ours, theirs)
		}
	}
}

func rekorCanonical(t *testing.T, env, pem []byte) []byte {
	t.Helper()
	pe := &models.DSSE{
		APIVersion: conv.Pointer(dsse_v001.APIVERSION),
		Spec: &models.DSSEV001Schema{ProposedContent: &models.DSSEV001SchemaProposedContent{
			Envelope: conv.Pointer(string(env)), Verifiers: []strfmt.Base64{pem},
		}},
	}
	impl, err := types.UnmarshalEntry(pe)
	if err != nil {
		t.Fatal(err)
	}
	body, err := types.CanonicalizeEntry(context.Background(), impl)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestRekorClientReadsAndVerifies drives every endpoint with Rekor's
// generated client and checks the answers with Rekor's pkg/verify and
// pkg/util, and the JSON with Rekor's model validation: in the public view
// (no attestation; Rekor verifies the leaf, its proof and its SET without
// one) and with public records (the attestation is the logged envelope).
func TestRekorClientReadsAndVerifies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records bool
	}{{"public view", false}, {"public records", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tl := openLog(t, 5)
			url := tl.srv.URL
			if tc.records {
				url = tl.pub.URL
			}
			rekorClientReadsAndVerifies(t, tl, tl.rekorAt(t, url), tc.records)
		})
	}
}

func rekorClientReadsAndVerifies(t *testing.T, tl *testLog, rc *rekorClient, records bool) {
	ctx := context.Background()
	envelope := func(i int) []byte {
		if records {
			return tl.envelopes[i]
		}
		return nil
	}

	// The log's public key, as PEM.
	pk, err := rc.Pubkey.GetPublicKey(pubkey.NewGetPublicKeyParams())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := cryptoutils.MarshalPublicKeyToPEM(tl.logKey.Public())
	if pk.Payload != string(want) {
		t.Errorf("public key: got %q", pk.Payload)
	}

	// Log info: the signed tree head parses and verifies with Rekor's code,
	// although the origin is "<host>/<tree id>" rather than "<host> - <tree id>".
	info := waitLogInfo(t, rc, 5)
	if err := info.Validate(strfmt.Default); err != nil {
		t.Errorf("LogInfo fails Rekor's validation: %v", err)
	}
	var sth util.SignedCheckpoint
	if err := sth.UnmarshalText([]byte(*info.SignedTreeHead)); err != nil {
		t.Fatal(err)
	}
	if !sth.Verify(rc.verifier) {
		t.Fatal("signed tree head does not verify with Rekor's SignedCheckpoint")
	}
	if sth.Origin != fmt.Sprintf("gatelog.test/%d", tl.log.TreeID()) || *info.TreeID != strconv.FormatInt(tl.log.TreeID(), 10) {
		t.Errorf("origin %q tree ID %q", sth.Origin, *info.TreeID)
	}
	if hex.EncodeToString(sth.Hash) != *info.RootHash || int64(sth.Size) != *info.TreeSize {
		t.Errorf("log info root/size disagree with its signed tree head")
	}

	for i, e := range tl.entries {
		// By index.
		byIdx, err := rc.Entries.GetLogEntryByIndex(entries.NewGetLogEntryByIndexParams().WithLogIndex(int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		anon := only(t, byIdx.Payload, e.UUID)
		checkEntry(t, rc, anon, envelope(i), int64(i))

		// By UUID and by bare leaf hash.
		for _, id := range []string{e.UUID, e.UUID[16:]} {
			byUUID, err := rc.Entries.GetLogEntryByUUID(entries.NewGetLogEntryByUUIDParams().WithEntryUUID(id))
			if err != nil {
				t.Fatal(err)
			}
			checkEntry(t, rc, only(t, byUUID.Payload, e.UUID), envelope(i), int64(i))
		}
	}

	// Retrieve by UUID, index and proposed entry (the artifact a verifier holds).
	idx := int64(3)
	q := &models.SearchLogQuery{EntryUUIDs: []string{tl.entries[1].UUID}, LogIndexes: []*int64{&idx}}
	q.SetEntries([]models.ProposedEntry{&models.DSSE{
		APIVersion: conv.Pointer("0.0.1"),
		Spec: &models.DSSEV001Schema{ProposedContent: &models.DSSEV001SchemaProposedContent{
			Envelope: conv.Pointer(string(tl.envelopes[4])), Verifiers: []strfmt.Base64{tl.signerPEM},
		}},
	}})
	res, err := rc.Entries.SearchLogQuery(entries.NewSearchLogQueryParams().WithEntry(q))
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, le := range res.Payload {
		for _, a := range le {
			got = append(got, *a.LogIndex)
			if err := rverify.VerifyLogEntry(ctx, &a, rc.verifier); err != nil {
				t.Error(err)
			}
			if (a.Attestation != nil) != records {
				t.Errorf("retrieve: entry %d has attestation %v, want records shown: %v", *a.LogIndex, a.Attestation != nil, records)
			}
		}
	}
	if fmt.Sprint(got) != "[1 4 3]" {
		t.Errorf("retrieve returned indexes %v, want [1 4 3]", got)
	}

	// Index search by the request digest (the in-toto subject).
	sum := sha256.Sum256([]byte("request decision-2"))
	ids, err := rc.Index.SearchIndex(index.NewSearchIndexParams().WithQuery(&models.SearchIndex{Hash: "sha256:" + hex.EncodeToString(sum[:])}))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids.Payload) != 1 || ids.Payload[0] != tl.entries[2].UUID {
		t.Errorf("index search: %v, want [%s]", ids.Payload, tl.entries[2].UUID)
	}

	// Consistency: an old tree head from this client stays consistent.
	old := sth
	tl.append(t, "decision-5")
	tl.append(t, "decision-6")
	waitLogInfo(t, rc, 7)
	newSTH, err := rverify.VerifyCurrentCheckpoint(ctx, rc.Rekor, rc.verifier, &old)
	if err != nil {
		t.Fatalf("consistency with the earlier tree head: %v", err)
	}
	if newSTH.Size != 7 {
		t.Errorf("new tree head size %d", newSTH.Size)
	}
}

func waitLogInfo(t *testing.T, rc *rekorClient, size int64) *models.LogInfo {
	t.Helper()
	var info *models.LogInfo
	var err error
	poll.Until(t, fmt.Sprintf("the log to reach size %d", size), func() bool {
		var ok *tlog.GetLogInfoOK
		if ok, err = rc.Tlog.GetLogInfo(tlog.NewGetLogInfoParams()); err != nil || *ok.Payload.TreeSize < size {
			return false
		}
		info = ok.Payload
		return true
	}, func() string { return fmt.Sprintf("last answer: %v", err) })
	return info
}

func only(t *testing.T, le models.LogEntry, uuid string) models.LogEntryAnon {
	t.Helper()
	if err := le.Validate(strfmt.Default); err != nil {
		t.Errorf("LogEntry fails Rekor's validation: %v", err)
	}
	a, ok := le[uuid]
	if len(le) != 1 || !ok {
		t.Fatalf("want exactly entry %s, got %d entries", uuid, len(le))
	}
	return a
}

// checkEntry verifies an entry the way rekor-cli does, and that the
// attestation is the logged envelope (none when envelope is nil).
func checkEntry(t *testing.T, rc *rekorClient, a models.LogEntryAnon, envelope []byte, index int64) {
	t.Helper()
	ctx := context.Background()
	if *a.LogIndex != index {
		t.Errorf("log index %d, want %d", *a.LogIndex, index)
	}
	if err := rverify.VerifyLogEntry(ctx, &a, rc.verifier); err != nil {
		t.Errorf("entry %d: Rekor's VerifyLogEntry: %v", index, err)
	}
	if err := rverify.VerifyInclusion(ctx, &a); err != nil {
		t.Errorf("entry %d: VerifyInclusion: %v", index, err)
	}
	if err := rverify.VerifySignedEntryTimestamp(ctx, &a, rc.verifier); err != nil {
		t.Errorf("entry %d: VerifySignedEntryTimestamp: %v", index, err)
	}
	if err := rverify.VerifyCheckpointSignature(&a, rc.verifier); err != nil {
		t.Errorf("entry %d: VerifyCheckpointSignature: %v", index, err)
	}
	switch {
	case envelope == nil && a.Attestation != nil:
		t.Errorf("entry %d: the public view carries an attestation", index)
	case envelope != nil && (a.Attestation == nil || !bytes.Equal(a.Attestation.Data, envelope)):
		t.Errorf("entry %d: attestation is not the logged envelope", index)
	}
	body, _ := base64.StdEncoding.DecodeString(a.Body.(string))
	pe, err := models.UnmarshalProposedEntry(bytes.NewReader(body), runtimeJSON())
	if err != nil {
		t.Fatalf("entry %d: body is not a Rekor entry: %v", index, err)
	}
	if _, err := types.UnmarshalEntry(pe); err != nil {
		t.Errorf("entry %d: Rekor's dsse type rejects the body: %v", index, err)
	}
}

// TestErrorsAreRekorShaped checks status codes and the {code, message} body.
func TestErrorsAreRekorShaped(t *testing.T) {
	tl := openLog(t, 2)
	waitLogInfo(t, tl.rekor(t), 2)
	bogus := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/api/v1/log/entries?logIndex=99", "", 404},
		{"GET", "/api/v1/log/entries?logIndex=-1", "", 400},
		{"GET", "/api/v1/log/entries?logIndex=x", "", 400},
		{"GET", "/api/v1/log/entries/" + bogus, "", 404},
		{"GET", "/api/v1/log/entries/zz", "", 400},
		{"GET", fmt.Sprintf("/api/v1/log/entries/%016x%s", 7, bogus), "", 404},
		{"GET", "/api/v1/log/proof?firstSize=2&lastSize=1", "", 400},
		{"GET", "/api/v1/log/proof?lastSize=99", "", 400},
		{"GET", "/api/v1/log/proof", "", 400},
		{"GET", "/api/v1/log/publicKey?treeID=1", "", 400},
		{"POST", "/api/v1/log/entries/retrieve", "{", 400},
		{"POST", "/api/v1/log/entries/retrieve", `{"entryUUIDs":["` + strings.Repeat(bogus+`","`, 10) + bogus + `"]}`, 422},
		{"POST", "/api/v1/log/entries/retrieve", `{"entries":[{"kind":"rekord","apiVersion":"0.0.1","spec":{}}]}`, 400},
		{"POST", "/api/v1/index/retrieve", `{"email":"a@b.c"}`, 400},
		{"POST", "/api/v1/index/retrieve", `{"hash":"sha256:12"}`, 400},
		{"POST", "/api/v1/log/entries", `{}`, 405},
		{"GET", "/api/v1/nope", "", 404},
	} {
		req, _ := http.NewRequest(tc.method, tl.srv.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e models.Error
		if resp.StatusCode != tc.code || json.Unmarshal(raw, &e) != nil || e.Code != int64(tc.code) || e.Message == "" {
			t.Errorf("%s %s: %d %s, want %d with {code, message}", tc.method, tc.path, resp.StatusCode, raw, tc.code)
		}
	}
	// Not-found UUIDs in a retrieve are left out, as Rekor does.
	resp, err := http.Post(tl.srv.URL+"/api/v1/log/entries/retrieve", "application/json", strings.NewReader(`{"entryUUIDs":["`+bogus+`"]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(raw)) != "[]" {
		t.Errorf("retrieve of an unknown UUID: %d %s", resp.StatusCode, raw)
	}
}

// TestConsistencyProofEndpoint checks every (first, last) pair of a small
// log against the roots Rekor's verifier needs.
func TestConsistencyProofEndpoint(t *testing.T) {
	tl := openLog(t, 6)
	rc := tl.rekor(t)
	waitLogInfo(t, rc, 6)
	roots := map[int64]string{}
	for last := int64(1); last <= 6; last++ {
		p, err := rc.Tlog.GetLogProof(tlog.NewGetLogProofParams().WithFirstSize(conv.Pointer(last)).WithLastSize(last))
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Payload.Hashes) != 0 {
			t.Errorf("proof %d..%d has %d hashes", last, last, len(p.Payload.Hashes))
		}
		roots[last] = *p.Payload.RootHash
	}
	for first := int64(1); first <= 6; first++ {
		for last := first; last <= 6; last++ {
			p, err := rc.Tlog.GetLogProof(tlog.NewGetLogProofParams().WithFirstSize(conv.Pointer(first)).WithLastSize(last))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Payload.Validate(strfmt.Default); err != nil {
				t.Errorf("ConsistencyProof fails Rekor's validation: %v", err)
			}
			if *p.Payload.RootHash != roots[last] {
				t.Errorf("%d..%d: root %s, want %s", first, last, *p.Payload.RootHash, roots[last])
			}
			if err := verifyConsistency(first, last, roots[first], roots[last], p.Payload.Hashes); err != nil {
				t.Errorf("%d..%d: %v", first, last, err)
			}
		}
	}
}

func runtimeJSON() runtime.Consumer { return runtime.JSONConsumer() }

func verifyConsistency(first, last int64, oldRoot, newRoot string, hashes []string) error {
	a, _ := hex.DecodeString(oldRoot)
	b, _ := hex.DecodeString(newRoot)
	var hs [][]byte
	for _, h := range hashes {
		x, err := hex.DecodeString(h)
		if err != nil {
			return err
		}
		hs = append(hs, x)
	}
	return proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(first), uint64(last), hs, a, b)
}

// TestEntryViews: every entry endpoint shows the record (the envelope)
// only to whom the access rule lets see it. Without a credential the
// answer is the leaf, its proofs and SET, and nothing of the record is in
// it; a reader gets the envelope; a credential without the read
// permission gets 403 and a bad one 401, never a quiet public view; with
// public records everyone gets it.
func TestEntryViews(t *testing.T) {
	tl := openLog(t, 3)
	rc := tl.rekor(t)
	waitLogInfo(t, rc, 3)
	e := tl.entries[1]
	secret := "decision-1" // in the record only: the decision ID inside the statement
	reads := []struct{ method, path, body string }{
		{"GET", "/api/v1/log/entries?logIndex=1", ""},
		{"GET", "/api/v1/log/entries/" + e.UUID, ""},
		{"POST", "/api/v1/log/entries/retrieve", `{"logIndexes":[1]}`},
	}
	for _, tc := range []struct {
		name   string
		server string
		bearer string
		code   int
		full   bool
	}{
		{"no credential", tl.srv.URL, "", 200, false},
		{"read key", tl.srv.URL, readerKey, 200, true},
		{"key without read", tl.srv.URL, deciderKey, 403, false},
		{"bad key", tl.srv.URL, "forged", 401, false},
		{"public records, no credential", tl.pub.URL, "", 200, true},
		{"public records, bad key", tl.pub.URL, "forged", 200, true},
	} {
		for _, rd := range reads {
			t.Run(tc.name+" "+rd.method+" "+rd.path, func(t *testing.T) {
				req, _ := http.NewRequest(rd.method, tc.server+rd.path, strings.NewReader(rd.body))
				if tc.bearer != "" {
					req.Header.Set("Authorization", "Bearer "+tc.bearer)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.code {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, raw)
				}
				if !strings.Contains(resp.Header.Get("Vary"), "Authorization") {
					t.Errorf("Vary %q: caches must key entry reads by credential", resp.Header.Get("Vary"))
				}
				decoded := string(raw)
				if tc.code == 200 {
					var les []rekorapi.LogEntry
					if rd.method == "GET" {
						var le rekorapi.LogEntry
						err = json.Unmarshal(raw, &le)
						les = append(les, le)
					} else {
						err = json.Unmarshal(raw, &les)
					}
					if err != nil || len(les) != 1 || len(les[0]) != 1 {
						t.Fatalf("want one entry: %v %s", err, raw)
					}
					a := les[0][e.UUID]
					body, _ := base64.StdEncoding.DecodeString(a.Body)
					if a.LogIndex != 1 || entry.UUID(tl.log.TreeID(), entry.LeafHash(body)) != e.UUID || a.Verification == nil || a.Verification.InclusionProof == nil || len(a.Verification.SignedEntryTimestamp) == 0 {
						t.Errorf("the entry lacks its leaf, proof or SET: %s", raw)
					}
					if tc.full != (a.Attestation != nil) {
						t.Fatalf("attestation shown: %v, want %v", a.Attestation != nil, tc.full)
					}
					if tc.full && !bytes.Equal(a.Attestation.Data, tl.envelopes[1]) {
						t.Errorf("attestation is not the logged envelope")
					}
					decoded += string(body)
					if a.Attestation != nil {
						decoded += string(a.Attestation.Data)
					}
				}
				// The record's contents, base64 of the payload included.
				payload := base64.StdEncoding.EncodeToString(statement(secret))
				found := strings.Contains(decoded, payload) || strings.Contains(decoded, secret)
				if found != tc.full {
					t.Errorf("record contents in the answer: %v, want %v", found, tc.full)
				}
			})
		}
	}
}
