package daemon_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

// policyTests are the Rego tests shipped beside testPolicy; a reload runs them.
const policyTests = `package gatelog_test

import data.gatelog

test_trigger_allowed if {
	gatelog.decision.allow with input as {"action": "pipeline.trigger", "subject": {"verified": true}}
}

test_deploy_needs_mfa if {
	not gatelog.decision.allow with input as {"action": "deploy", "resource": {"environment": "production"}, "subject": {"groups": ["release-managers"]}}
}
`

// syncBuffer collects the daemon's log lines for the test to read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), substr)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startWith starts a daemon on src, logging into logs.
func startWith(t *testing.T, src engine.Source, logs io.Writer) *testDaemon {
	t.Helper()
	return openDaemon(t, daemon.Config{
		DataDir: t.TempDir(), Policies: src.FS, PolicyRevision: src.Revision,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		// The reload drills decide in closed loops as fast as the daemon
		// answers; the per-caller limit is another test's subject.
		RateLimit: -1,
	})
}

func writePolicy(t *testing.T, dir, rego string) {
	t.Helper()
	// Write beside and rename, as editors and deploy tools do.
	tmp := filepath.Join(dir, ".decision.rego.tmp")
	if err := os.WriteFile(tmp, []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "decision.rego")); err != nil {
		t.Fatal(err)
	}
}

// loggedRecords reads entries 0..upto through the daemon's Rekor API and
// opens each signed record with the daemon's key, as an auditor would.
func loggedRecords(t *testing.T, d *testDaemon, upto int64) []decision.Record {
	t.Helper()
	v, err := signature.LoadVerifier(d.SignerKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var recs []decision.Record
	for i := int64(0); i <= upto; i++ {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/log/entries?logIndex=%d", d.HTTP.URL, i), nil)
		req.Header.Set("Authorization", "Bearer "+d.Key) // records are for read callers
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var le rekorapi.LogEntry
		err = json.NewDecoder(resp.Body).Decode(&le)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(le) != 1 {
			t.Fatalf("entry %d: %d %v", i, resp.StatusCode, err)
		}
		for _, e := range le {
			st, err := receipt.Open(e.Attestation.Data, v)
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			recs = append(recs, st.Predicate)
		}
	}
	return recs
}

// policyUpdates are the policy changes among recs: policy.update records
// but the one each start logs (trigger "start").
func policyUpdates(recs []decision.Record) []decision.Record {
	var out []decision.Record
	for _, r := range recs {
		if r.Request.Action == daemon.PolicyUpdateAction && r.Request.Resource.Attributes["trigger"] != "start" {
			out = append(out, r)
		}
	}
	return out
}

// A broken policy and a policy whose tests fail, pushed while decisions
// run, are refused without a single failed decision; the good one that
// follows takes effect, and its policy.update record is in the log.
func TestPolicyReloadUnderConcurrentDecides(t *testing.T) {
	polDir := t.TempDir()
	writePolicy(t, polDir, testPolicy)
	if err := os.WriteFile(filepath.Join(polDir, "decision_test.rego"), []byte(policyTests), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := engine.LoadDir(polDir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	d := startWith(t, src, logs)
	before := d.Server.Policy()

	ctx, cancel := context.WithCancel(context.Background())
	sighup := make(chan os.Signal, 1)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- d.Server.WatchPolicy(ctx, daemon.PolicyWatch{Dir: polDir, Signals: sighup, Debounce: 50 * time.Millisecond})
	}()
	defer func() {
		cancel()
		if err := <-watchDone; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()

	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		decided   atomic.Int64
		failures  = make(chan string, 100)
		newReason atomic.Bool
	)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest(http.MethodPost, d.HTTP.URL+"/v1/decide", strings.NewReader(allowedDeploy))
				req.Header.Set("Authorization", "Bearer "+d.Key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					failures <- err.Error()
					return
				}
				var rc decision.Receipt
				err = json.NewDecoder(resp.Body).Decode(&rc)
				resp.Body.Close()
				if resp.StatusCode != 200 || err != nil || !rc.Allow {
					failures <- fmt.Sprintf("status %d, %+v, %v", resp.StatusCode, rc, err)
					return
				}
				if len(rc.Reasons) > 0 && strings.HasSuffix(rc.Reasons[0], "(v2)") {
					newReason.Store(true)
				}
				decided.Add(1)
			}
		}()
	}
	poll.Until(t, "first decisions", func() bool { return decided.Load() > 5 })

	writePolicy(t, polDir, "package gatelog\n\ndecision := {")
	poll.Until(t, "the broken policy to be refused", func() bool { return logs.count("policy not loaded") >= 1 })
	failsItsTests := strings.Replace(testPolicy, `input.action == "pipeline.trigger"`, `input.action == "pipeline.run"`, 1)
	writePolicy(t, polDir, failsItsTests)
	poll.Until(t, "the policy failing its tests to be refused", func() bool { return logs.count("Rego tests fail") >= 1 })
	if got := d.Server.Policy(); got != before {
		t.Fatalf("a refused policy was swapped in: %+v", got)
	}
	n := decided.Load()
	poll.Until(t, "decisions to continue after the refusals", func() bool { return decided.Load() > n+5 })

	writePolicy(t, polDir, strings.Replace(testPolicy, `"release manager with MFA"`, `"release manager with MFA (v2)"`, 1))
	poll.Until(t, "the good policy to take effect", newReason.Load)
	sighup <- os.Interrupt // any signal value: the daemon sends SIGHUP here
	poll.Until(t, "the reload on a signal", func() bool { return logs.count("policy unchanged") >= 1 })
	stop.Store(true)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Errorf("a decision failed during reloads: %s", f)
	}
	if t.Failed() {
		t.Log(logs.String())
		return
	}

	after := d.Server.Policy()
	last := d.Decide(allowedDeploy) // waits for a checkpoint covering everything before it
	updates := policyUpdates(loggedRecords(t, d, last.LogIndex))
	if len(updates) != 1 {
		t.Fatalf("%d policy.update records, want 1 (refused and unchanged policies log nothing)", len(updates))
	}
	u := updates[0]
	attrs := u.Request.Resource.Attributes
	oldID, _ := attrs["old"].(map[string]any)
	newID, _ := attrs["new"].(map[string]any)
	if oldID["sha256"] != before.SHA256 || newID["sha256"] != after.SHA256 || u.Policy.SHA256 != after.SHA256 {
		t.Errorf("policy.update record names %v -> %v (policy %s), want %s -> %s", oldID, newID, u.Policy.SHA256, before.SHA256, after.SHA256)
	}
	if attrs["trigger"] != "file change" || !strings.Contains(fmt.Sprint(attrs["origin"]), polDir) || attrs["tests_passed"] != float64(2) {
		t.Errorf("policy.update record attributes %v", attrs)
	}
	if u.Kind != decision.KindAdmin || u.Decision.Allow || u.Admin == nil || !strings.Contains(u.Admin.Reason, "2 Rego tests passed") || u.Request.Resource.Kind != "policy" {
		t.Errorf("policy.update record %+v", u)
	}
	t.Logf("%d decisions during the reloads", decided.Load())
}

func testKeyPair(t *testing.T) (priv, pub []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(k.Public())
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
}

// bundleServer serves one bundle at a time with an ETag, answering 304 to
// a matching If-None-Match, and counts both kinds of answers.
type bundleServer struct {
	mu           sync.Mutex
	bundle       []byte
	full, notMod atomic.Int64
}

func (b *bundleServer) set(raw []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bundle = raw
}

func (b *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	raw := b.bundle
	b.mu.Unlock()
	sum := sha256.Sum256(raw)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if r.URL.Query().Get("token") != "s3cret" {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	if r.Header.Get("If-None-Match") == etag {
		b.notMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	b.full.Add(1)
	w.Header().Set("ETag", etag)
	_, _ = w.Write(raw)
}

func signedBundle(t *testing.T, priv []byte, rego, revision string) []byte {
	t.Helper()
	var buf bytes.Buffer
	fsys := fstest.MapFS{"decision.rego": {Data: []byte(rego)}, "decision_test.rego": {Data: []byte(policyTests)}}
	if err := engine.BuildBundle(context.Background(), &buf, fsys, engine.BuildOptions{Revision: revision, SigningKeyPEM: priv}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The daemon polls a bundle URL with If-None-Match: unchanged bundles cost
// a 304, an unsigned one is refused, a new signed one is loaded and its
// revision is recorded in decisions; the token in the URL is never logged.
func TestBundlePollWithETag(t *testing.T) {
	priv, pub := testKeyPair(t)
	ver := &engine.BundleVerification{PublicKeyPEM: pub}
	bs := &bundleServer{}
	bs.set(signedBundle(t, priv, testPolicy, "r1"))
	hs := httptest.NewServer(bs)
	defer hs.Close()
	url := hs.URL + "/bundles/gatelog.tar.gz?token=s3cret"

	f := &daemon.BundleFetcher{URL: url, Verification: ver}
	src, etag, err := f.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if src.Revision != "r1" || etag == "" || strings.Contains(src.Origin, "s3cret") {
		t.Fatalf("initial fetch: revision %q, etag %q, origin %q", src.Revision, etag, src.Origin)
	}
	logs := &syncBuffer{}
	d := startWith(t, src, logs)
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- d.Server.WatchPolicy(ctx, daemon.PolicyWatch{BundleURL: url, ETag: etag, Verification: ver, PollInterval: 30 * time.Millisecond})
	}()
	defer func() {
		cancel()
		if err := <-watchDone; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	poll.Until(t, "polls answered 304", func() bool { return bs.notMod.Load() >= 3 })
	if bs.full.Load() != 1 {
		t.Errorf("%d full downloads of an unchanged bundle, want only the first", bs.full.Load())
	}

	var unsigned bytes.Buffer
	if err := engine.BuildBundle(context.Background(), &unsigned, fstest.MapFS{"decision.rego": {Data: []byte(testPolicy)}}, engine.BuildOptions{Revision: "evil"}); err != nil {
		t.Fatal(err)
	}
	bs.set(unsigned.Bytes())
	poll.Until(t, "the unsigned bundle to be refused", func() bool { return logs.count("missing .signatures.json") >= 1 })
	full := bs.full.Load()
	poll.Until(t, "polls after the refusal answered 304", func() bool { return bs.notMod.Load() >= 6 })
	if bs.full.Load() != full || d.Server.Policy().Revision != "r1" {
		t.Fatalf("after an unsigned bundle: revision %q, %d downloads (want %d: a refused bundle is not fetched again)", d.Server.Policy().Revision, bs.full.Load(), full)
	}

	bs.set(signedBundle(t, priv, strings.Replace(testPolicy, "release manager with MFA", "release manager with MFA, r2", 1), "r2"))
	poll.Until(t, "revision r2", func() bool { return d.Server.Policy().Revision == "r2" })
	rc := d.Decide(allowedDeploy)
	if rc.Reasons[0] != "release manager with MFA, r2" {
		t.Errorf("decision under r2: %v", rc.Reasons)
	}
	recs := loggedRecords(t, d, rc.LogIndex)
	if got := recs[len(recs)-1].Policy.Revision; got != "r2" {
		t.Errorf("decision record names revision %q, want r2", got)
	}
	updates := policyUpdates(recs)
	if len(updates) != 1 || updates[0].Request.Resource.Attributes["trigger"] != "bundle poll" {
		t.Fatalf("policy.update records: %+v", updates)
	}
	raw, _ := json.Marshal(recs)
	if bytes.Contains(raw, []byte("s3cret")) || strings.Contains(logs.String(), "s3cret") {
		t.Error("the bundle URL's token reached the log or the daemon's log lines")
	}
}

// ReloadPolicy returns the logged record, which GET /v1/decisions/{id}
// serves with an inclusion proof like any decision.
func TestReloadPolicyRecordIsRetrievable(t *testing.T) {
	d := startWith(t, engine.Source{FS: fstest.MapFS{"decision.rego": {Data: []byte(testPolicy)}}}, io.Discard)
	next := engine.Source{FS: fstest.MapFS{"decision.rego": {Data: []byte(testPolicy + "\n# v2\n")}}, Revision: "v2", Origin: "test"}
	ch, err := d.Server.ReloadPolicy(context.Background(), next, "API")
	if err != nil || !ch.Changed || ch.New.Revision != "v2" || ch.Receipt.DecisionID == "" {
		t.Fatalf("reload: %+v, %v", ch, err)
	}
	req, _ := http.NewRequest(http.MethodGet, d.HTTP.URL+"/v1/decisions/"+ch.Receipt.DecisionID, nil)
	req.Header.Set("Authorization", "Bearer "+d.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rc decision.Receipt
	if err := json.NewDecoder(resp.Body).Decode(&rc); err != nil || resp.StatusCode != 200 || rc.InclusionProof == nil {
		t.Fatalf("GET the policy.update record: %d %v", resp.StatusCode, err)
	}
	again, err := d.Server.ReloadPolicy(context.Background(), next, "API")
	if err != nil || again.Changed {
		t.Errorf("reloading the same policy: %+v, %v", again, err)
	}
}

func ExampleServer_ReloadPolicy() {
	dir, _ := os.MkdirTemp("", "gatelog-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	srv, err := daemon.Open(ctx, daemon.Config{DataDir: dir, Policies: fstest.MapFS{"decision.rego": {Data: []byte(testPolicy)}}})
	if err != nil {
		panic(err)
	}
	defer srv.Close(ctx)
	next := engine.Source{FS: fstest.MapFS{"decision.rego": {Data: []byte(testPolicy + "\n# reviewed\n")}}, Revision: "2", Origin: "example"}
	ch, err := srv.ReloadPolicy(ctx, next, "API")
	if err != nil {
		panic(err)
	}
	fmt.Println(ch.Changed, ch.New.Revision, ch.Receipt.LogIndex)
	// Output: true 2 1
}

// TestStartLogsThePolicyInForce: the first start logs the policy it starts
// with, as an administrative record (never an allow); a restart on the
// same policy logs nothing; a restart on a policy changed while the daemon
// was down logs the new one before any decision is made under it.
func TestStartLogsThePolicyInForce(t *testing.T) {
	dir := t.TempDir()
	open := func(policy string) *testDaemon {
		return openDaemon(t, daemon.Config{DataDir: dir, Policies: fstest.MapFS{"decision.rego": {Data: []byte(policy)}}})
	}
	startRecords := func(d *testDaemon, upto int64) []decision.Record {
		var out []decision.Record
		for _, r := range loggedRecords(t, d, upto) {
			if r.Request.Action == daemon.PolicyUpdateAction && r.Request.Resource.Attributes["trigger"] == "start" {
				out = append(out, r)
			}
		}
		return out
	}
	d := open(testPolicy)
	first := d.Decide(allowedDeploy)
	recs := startRecords(d, first.LogIndex)
	if len(recs) != 1 || first.LogIndex != 1 || recs[0].Kind != decision.KindAdmin || recs[0].Allowed() || recs[0].Policy != d.Server.Policy() {
		t.Fatalf("first start: decision at %d, start records %+v", first.LogIndex, recs)
	}
	d.Stop()

	d = open(testPolicy)
	again := d.Decide(allowedDeploy)
	if again.LogIndex != 2 || len(startRecords(d, again.LogIndex)) != 1 {
		t.Fatalf("a restart on the same policy logged something: decision at %d", again.LogIndex)
	}
	d.Stop()

	d = open(testPolicy + "\n# changed while the daemon was down\n")
	changed := d.Decide(allowedDeploy)
	recs = startRecords(d, changed.LogIndex)
	if changed.LogIndex != 4 || len(recs) != 2 || recs[1].Policy != d.Server.Policy() || recs[1].Policy.SHA256 == recs[0].Policy.SHA256 {
		t.Fatalf("a restart on a changed policy: decision at %d, start records %+v", changed.LogIndex, recs)
	}
}
