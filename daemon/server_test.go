package daemon_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/internal/daemontest"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

// testPolicy mirrors the bundled baseline: triggers for anyone verified,
// production deploys for MFA'd release managers, everything else denied.
const testPolicy = `package gatelog

default decision := {"allow": false, "reasons": ["no rule allows this action"]}

decision := {"allow": true, "reasons": ["authenticated subjects may trigger pipelines"]} if {
	input.action == "pipeline.trigger"
	input.subject.verified
}

decision := {"allow": true, "reasons": ["release manager with MFA"]} if {
	input.action == "deploy"
	input.resource.environment == "production"
	"release-managers" in input.subject.groups
	input.subject.mfa
}

decision := {"allow": false, "reasons": ["deploy to production requires group release-managers and MFA"]} if {
	input.action == "deploy"
	input.resource.environment == "production"
	not allowed_deploy
}

allowed_deploy if {
	"release-managers" in input.subject.groups
	input.subject.mfa
}
`

// testDaemon is a daemon opened in the test's process (internal/daemontest).
type testDaemon = daemontest.Daemon

// startDaemon starts a daemon on dir with the test policy.
func startDaemon(t *testing.T, dir string) *testDaemon {
	t.Helper()
	return openDaemon(t, daemon.Config{DataDir: dir})
}

// openDaemon opens a daemon on cfg with testPolicy unless cfg names
// policies (daemontest.Open).
func openDaemon(t *testing.T, cfg daemon.Config) *testDaemon {
	t.Helper()
	if cfg.Policies == nil {
		cfg.Policies = fstest.MapFS{"decision.rego": {Data: []byte(testPolicy)}}
	}
	return daemontest.Open(t, cfg)
}

const (
	allowedDeploy = `{"subject":{"id":"alice","groups":["release-managers"],"mfa":true},"action":"deploy","resource":{"system":"github","environment":"production","repository":"acme/shop","ref":"refs/heads/main"}}`
	deniedDeploy  = `{"subject":{"id":"bob","groups":["developers"],"mfa":false},"action":"deploy","resource":{"system":"github","environment":"production"}}`
)

func TestDecideAllowAndDenyVerifyOffline(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	for _, tc := range []struct {
		body  string
		allow bool
	}{{allowedDeploy, true}, {deniedDeploy, false}} {
		rc := d.Decide(tc.body)
		if rc.Allow != tc.allow {
			t.Fatalf("allow = %v, want %v (%v)", rc.Allow, tc.allow, rc.Reasons)
		}
		res, err := verify.Receipt(rc, d.LogKey, d.SignerKey)
		if err != nil {
			t.Fatalf("receipt does not verify: %v", err)
		}
		rec := res.Statement.Predicate
		if rec.Request.Subject.AssertedBy != "apikey:bootstrap" || !rec.Request.Subject.Verified {
			t.Errorf("vouched subject not recorded as asserted by the key: %+v", rec.Request.Subject)
		}
		if rec.Caller.ID != "apikey:bootstrap" || rec.Policy.SHA256 == "" || rec.Daemon.KeyID == "" {
			t.Errorf("record lacks caller, policy or key identity: %+v", rec)
		}
	}
}

// Decision IDs are time-ordered UUIDs (version 7): later decisions sort
// after earlier ones.
func TestDecisionIDsAreTimeOrdered(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	var prev string
	for range 5 {
		id := d.Decide(allowedDeploy).DecisionID
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 {
			t.Fatalf("decision ID %q is not a version 7 UUID (%v)", id, err)
		}
		if id <= prev {
			t.Fatalf("decision ID %q does not sort after the previous one, %q", id, prev)
		}
		prev = id
	}
}

// Every field of a receipt is covered by a signature or a proof: changing
// one byte anywhere makes verification fail.
func TestEveryReceiptFieldIsTamperEvident(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	for _, body := range []string{allowedDeploy, deniedDeploy} {
		rc := d.Decide(body)
		rc.Alerts = []decision.Alert{} // make the optional field present, so it is tampered too
		var fields map[string]json.RawMessage
		raw, _ := json.Marshal(rc)
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatal(err)
		}
		for name := range fields {
			for _, variant := range tamper(t, name, fields[name]) {
				changed := map[string]json.RawMessage{}
				for k, v := range fields {
					changed[k] = v
				}
				changed[name] = variant
				b, _ := json.Marshal(changed)
				var bad decision.Receipt
				if err := json.Unmarshal(b, &bad); err != nil {
					continue // not even a receipt: the CLI refuses it
				}
				if _, err := verify.Receipt(bad, d.LogKey, d.SignerKey); err == nil {
					t.Errorf("receipt with %s changed to %s still verifies", name, variant)
				}
			}
		}
	}
}

// tamper returns versions of a JSON value with one byte (or element) changed.
func tamper(t *testing.T, name string, v json.RawMessage) []json.RawMessage {
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	add := func(y any) {
		b, _ := json.Marshal(y)
		out = append(out, b)
	}
	switch val := x.(type) {
	case bool:
		add(!val)
	case float64:
		add(val + 1)
	case string:
		if b, err := base64.StdEncoding.DecodeString(val); err == nil && len(b) > 8 && name != "uuid" && name != "log_id" {
			for _, i := range []int{0, len(b) / 2, len(b) - 1} {
				c := bytes.Clone(b)
				c[i] ^= 1
				add(base64.StdEncoding.EncodeToString(c))
			}
		} else {
			for _, i := range []int{0, len(val) / 2, len(val) - 1} {
				c := []byte(val)
				c[i] ^= 1
				add(string(c))
			}
		}
	case []any:
		if len(val) == 0 {
			add([]any{"injected"})
		}
		for i := range val {
			c := append([]any(nil), val...)
			sub, _ := json.Marshal(c[i])
			for _, tv := range tamper(t, name, sub) {
				var y any
				_ = json.Unmarshal(tv, &y)
				c[i] = y
				add(append([]any(nil), c...))
			}
		}
	case map[string]any:
		for k := range val {
			sub, _ := json.Marshal(val[k])
			for _, tv := range tamper(t, k, sub) {
				c := map[string]any{}
				for kk, vv := range val {
					c[kk] = vv
				}
				var y any
				_ = json.Unmarshal(tv, &y)
				c[k] = y
				add(c)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no way to tamper with %s = %s", name, v)
	}
	return out
}

func TestBadInputIsRejectedAndNotLogged(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	big := `{"action":"deploy","resource":{"name":"` + strings.Repeat("x", 1<<20) + `"}}`
	cases := []struct {
		name, auth, body string
		code             int
		msg              string
	}{
		{"no credentials", "", allowedDeploy, 401, "missing credentials"},
		{"wrong key", "glk_0011223344556677_deadbeef", allowedDeploy, 401, "invalid API key"},
		{"not a gatelog key", "hunter2", allowedDeploy, 401, "not a gatelog API key"},
		{"malformed JSON", d.Key, `{"action":`, 400, "malformed JSON"},
		{"not an object", d.Key, `[1,2]`, 400, "must be"},
		{"unknown field", d.Key, `{"action":"deploy","colour":"red"}`, 400, `"colour"`},
		{"unknown nested field", d.Key, `{"action":"deploy","subject":{"id":"a","admin":true}}`, 400, `"admin"`},
		{"wrong type", d.Key, `{"action":42}`, 400, `"action"`},
		{"missing action", d.Key, `{"resource":{"name":"x"}}`, 400, `"action" is required`},
		{"empty body", d.Key, ``, 400, "empty body"},
		{"trailing data", d.Key, `{"action":"deploy"} {}`, 400, "after the JSON object"},
		{"bad time", d.Key, `{"action":"deploy","context":{"time":"yesterday"}}`, 400, `"context.time"`},
		{"oversized", d.Key, big, 400, "larger than"},
		// What is signed is what was sent: nothing is coerced.
		{"duplicate key", d.Key, `{"action":"secret.read","action":"deploy"}`, 400, `"action" appears twice`},
		{"invalid UTF-8", d.Key, "{\"action\":\"deploy\xc3\"}", 400, "not valid UTF-8"},
		{"NUL", d.Key, `{"action":"deploy\u0000"}`, 400, "NUL"},
		{"unpaired surrogate", d.Key, `{"action":"deploy\udfff"}`, 400, "unpaired surrogate"},
		{"rounded integer", d.Key, `{"action":"deploy","resource":{"attributes":{"run":12345678901234567890}}}`, 400, `"resource.attributes.run"`},
		{"vouch without id", d.Key, `{"action":"deploy","subject":{"groups":["admins"]}}`, 403, `"subject.id"`},
		{"dry run", d.Key, `{"action":"deploy","context":{"dry_run":true}}`, 400, `"context.dry_run"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := d.Post("/v1/decide", tc.auth, []byte(tc.body))
			var e struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Code != tc.code {
				t.Fatalf("error body is not {code,message}: %s", body)
			}
			if code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("got %d %q, want %d containing %q", code, e.Message, tc.code, tc.msg)
			}
		})
	}
	// Nothing was appended for the rejected calls: the next decision is
	// entry 1 (entry 0 is the policy the daemon started with).
	if rc := d.Decide(allowedDeploy); rc.LogIndex != 1 {
		t.Errorf("first accepted decision got index %d; rejected calls were logged", rc.LogIndex)
	}
}

func TestGetDecisionReturnsVerifiableReceipt(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	code, raw := d.Post("/v1/decide", d.Key, []byte(deniedDeploy)) // no wait: no proof yet
	if code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil {
		t.Fatal(err)
	}
	// The decide reply is the receipt as compact JSON, one line.
	if compact, _ := json.Marshal(rc); string(raw) != string(compact)+"\n" {
		t.Errorf("/v1/decide replied\n%s\nwant the compact receipt\n%s", raw, compact)
	}
	req, _ := http.NewRequest(http.MethodGet, d.HTTP.URL+"/v1/decisions/"+rc.DecisionID, nil)
	req.Header.Set("Authorization", "Bearer "+d.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got decision.Receipt
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %d %v", resp.StatusCode, err)
	}
	if _, err := verify.Receipt(got, d.LogKey, d.SignerKey); err != nil {
		t.Fatalf("fetched receipt does not verify: %v", err)
	}
	for path, want := range map[string]int{"/v1/decisions/not-a-uuid": 400, "/v1/decisions/" + "00000000-0000-4000-8000-000000000000": 404} {
		req, _ := http.NewRequest(http.MethodGet, d.HTTP.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+d.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// After a restart on the same data dir, earlier receipts still verify
// against the new checkpoint and the tree never shrinks.
func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	var receipts []decision.Receipt
	for i := range 5 {
		receipts = append(receipts, d.Decide(fmt.Sprintf(`{"action":"pipeline.trigger","resource":{"name":"p%d"}}`, i)))
	}
	d.Stop()
	keyBefore := d.Key

	d = startDaemon(t, dir)
	if d.Key != keyBefore {
		t.Fatal("bootstrap key was rewritten on restart")
	}
	rc := d.Decide(`{"action":"pipeline.trigger"}`)
	// 0: the start-up policy record, 1-5: the decisions; a restart on the
	// same policy logs nothing.
	if rc.LogIndex != 6 {
		t.Fatalf("index after restart = %d, want 6", rc.LogIndex)
	}
	for _, old := range receipts {
		req, _ := http.NewRequest(http.MethodGet, d.HTTP.URL+"/v1/decisions/"+old.DecisionID, nil)
		req.Header.Set("Authorization", "Bearer "+d.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var fresh decision.Receipt
		err = json.NewDecoder(resp.Body).Decode(&fresh)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if fresh.InclusionProof.TreeSize < 6 {
			t.Errorf("tree size went back: %d", fresh.InclusionProof.TreeSize)
		}
		if _, err := verify.Receipt(fresh, d.LogKey, d.SignerKey); err != nil {
			t.Errorf("old receipt %d no longer verifies: %v", old.LogIndex, err)
		}
		// The original receipt, proof against the old checkpoint, verifies too.
		if _, err := verify.Receipt(old, d.LogKey, d.SignerKey); err != nil {
			t.Errorf("original receipt %d no longer verifies: %v", old.LogIndex, err)
		}
	}
}

func TestPublicReadEndpoints(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	d.Decide(allowedDeploy)
	for path, want := range map[string]int{
		"/checkpoint": 200, "/tile/0/000.p/1": 200, "/tile/entries/000.p/1": 200, "/healthz": 200, "/readyz": 200,
		// Nothing but the tlog-tiles layout, however the path is spelled.
		"/.state/treeState": 404, "/tile/%2e%2e/.state/treeState": 404, "/tile/%2E%2E/%2E%2E/keys/log.key": 404,
		"/tile/..%2f.state/treeState": 404, "/tile/": 404, "/tile/0/": 404, "/tile/0/000.p/": 404,
		"/tile/entries/%2e%2e/%2e%2e/.state/treeState": 404, "/tile/0/x001": 404, "/tile/99/000": 404,
	} {
		req, err := http.NewRequest(http.MethodGet, d.HTTP.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		// The escapes must reach the daemon as sent, not cleaned by the client.
		req.URL.Opaque = path
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Get(d.HTTP.URL + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, err := verify.Checkpoint(raw, d.LogKey); err != nil {
		t.Errorf("served checkpoint does not verify: %v\n%s", err, raw)
	}
}

func TestKeysAreOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	d.Stop()
	for _, f := range []string{"keys/decision.key", "keys/log.key", daemon.BootstrapKeyFile, daemon.APIKeysFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
	if err := os.Chmod(filepath.Join(dir, "keys/log.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := daemon.Open(context.Background(), daemon.Config{DataDir: dir, Policies: fstest.MapFS{"d.rego": {Data: []byte(testPolicy)}}})
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable log key accepted: %v", err)
	}
}

// TestCallerCannotClaimDaemonFields: on /v1/decide the caller's
// source.adapter and context.history are its word, not the daemon's: they
// are recorded under context.unverified and policies and metrics do not
// see them as fact.
func TestCallerCannotClaimDaemonFields(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	rc := d.Decide(`{"subject":{"id":"alice"},"action":"deploy","resource":{"environment":"production"},` +
		`"source":{"adapter":"tekton","adapter_version":"9","request_id":"r-1"},` +
		`"context":{"history":{"privileged_actions_used":["deploy"]}}}`)
	res, err := verify.Receipt(rc, d.LogKey, d.SignerKey)
	if err != nil {
		t.Fatal(err)
	}
	req := res.Statement.Predicate.Request
	if req.Source.Adapter != "" || req.Source.AdapterVersion != "" || req.Source.RequestID != "r-1" || req.Context.History != nil {
		t.Errorf("caller-written daemon fields kept as fact: source %+v, history %+v", req.Source, req.Context.History)
	}
	src, _ := req.Context.Unverified["source"].(map[string]any)
	hist, _ := req.Context.Unverified["history"].(map[string]any)
	if src["adapter"] != "tekton" || hist == nil {
		t.Errorf("the caller's values are not kept as unverified context: %+v", req.Context.Unverified)
	}
}

// TestCallerHangingUpIsNoLogFailure: a caller who goes away while its
// decision is being logged does not make the append fail; the daemon
// stays ready and raises no fail-closed alarm.
func TestCallerHangingUpIsNoLogFailure(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // gone before the append starts
	req := decision.Request{Action: "deploy", Subject: decision.Subject{ID: "alice", Verified: true}, Context: decision.Context{Time: time.Now().UTC().Format(time.RFC3339)}}
	rc, err := d.Server.Decide(ctx, req, decision.Caller{ID: "test", Kind: "api_key"}, false)
	if err != nil {
		t.Fatalf("decide for a caller that hung up: %v", err)
	}
	if _, err := d.Server.Decide(context.Background(), req, decision.Caller{ID: "test", Kind: "api_key"}, false); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(d.HTTP.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz after a caller hung up: %d", resp.StatusCode)
	}
	if rc.DecisionID == "" {
		t.Error("no receipt")
	}
}
