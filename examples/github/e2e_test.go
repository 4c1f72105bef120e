// End to end: a real daemon with the built-in github adapter (a separate
// process, as in production) answers signed deployment_protection_rule
// deliveries, logs the decision and reviews the run through a stand-in for
// GitHub's API that checks the App's installation token.
package github_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"go.yaml.in/yaml/v3"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/engine/receipt"
	"github.com/gatelog/gatelog/engine/server"
	"github.com/gatelog/gatelog/plugins/builtin"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/host"
)

// The test binary doubles as the gatelog binary: the daemon starts the
// built-in adapter as `<this executable> adapter serve github`.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "adapter" && os.Args[2] == "serve" {
		if err := builtin.Serve(os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	appID        = 1012345
	installation = 52210437
	secret       = "webhook secret of the gatelog App"
)

// policy: alice, vouched for by the App, may deploy from main; nobody else.
const policy = `package gatelog

default decision := {"allow": false, "reasons": ["only release managers deploy, from main"]}

decision := {"allow": true, "reasons": ["alice is a release manager; GitHub vouches for her"]} if {
	input.action == "deploy"
	input.subject.id == "alice"
	input.subject.verified
	input.subject.asserted_by == "webhook:github-app:1012345"
	input.resource.ref == "main"
}
`

// githubAPI stands in for GitHub's REST API: installation tokens for a JWT
// signed with the App's key, and deployment reviews made with one.
type githubAPI struct {
	t   *testing.T
	key *rsa.PrivateKey
	srv *httptest.Server

	mu      sync.Mutex
	reviews map[string]github.Review // by run ID
	down    bool
}

func newGitHubAPI(t *testing.T, key *rsa.PrivateKey) *githubAPI {
	g := &githubAPI{t: t, key: key, reviews: map[string]github.Review{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /app/installations/{id}/access_tokens", func(w http.ResponseWriter, r *http.Request) {
		claims := &jwt.RegisteredClaims{}
		bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		_, err := jwt.ParseWithClaims(bearer, claims, func(tok *jwt.Token) (any, error) {
			if tok.Method != jwt.SigningMethodRS256 {
				return nil, fmt.Errorf("alg %v", tok.Header["alg"])
			}
			return &key.PublicKey, nil
		})
		if err != nil || claims.Issuer != strconv.Itoa(appID) {
			http.Error(w, `{"message":"A JSON web token could not be decoded"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":"ghs_inst%s","expires_at":%q}`, r.PathValue("id"), time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.down {
			http.Error(w, `{"message":"Service Unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Authorization") != "token ghs_inst"+strconv.Itoa(installation) {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		var rv github.Review
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rv); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		g.reviews[r.PathValue("run")] = rv
		w.WriteHeader(http.StatusNoContent)
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *githubAPI) review(run string) (github.Review, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rv, ok := g.reviews[run]
	return rv, ok
}

type daemon struct {
	t    *testing.T
	srv  *server.Server
	http *httptest.Server
	key  string
}

func startDaemon(t *testing.T, dir string, api *githubAPI) *daemon {
	t.Helper()
	return startDaemonWith(t, dir, api, nil)
}

func startDaemonWith(t *testing.T, dir string, api *githubAPI, settings map[string]string) *daemon {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Open(context.Background(), server.Config{
		DataDir:            dir,
		Policies:           fstest.MapFS{"decision.rego": {Data: []byte(policy)}},
		CheckpointInterval: 100 * time.Millisecond,
		Adapters:           []host.Config{{Name: "github", Builtin: "github", Settings: settings}},
		AdapterExecutable:  self,
		Webhooks: server.Webhooks{GitHub: &server.GitHubWebhook{
			Secret: []byte(secret), AppID: appID,
			PrivateKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(api.key)}),
			APIURL:     api.srv.URL, CallbackMinBackoff: 20 * time.Millisecond, CallbackMaxBackoff: 200 * time.Millisecond,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, srv: srv, http: httptest.NewServer(srv.Handler())}
	t.Cleanup(func() {
		d.http.Close()
		if err := srv.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	key, err := os.ReadFile(filepath.Join(dir, server.BootstrapKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	d.key = strings.TrimSpace(string(key))
	return d
}

// delivery is a fixture as GitHub would send it now: callback URL on the
// stand-in API, deployment created just now, signed with the secret.
func delivery(t *testing.T, api *githubAPI, fixture, sender, run string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "plugins", "github", "testdata", fixture+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	repo := p["repository"].(map[string]any)["full_name"].(string)
	p["deployment_callback_url"] = fmt.Sprintf("%s/repos/%s/actions/runs/%s/deployment_protection_rule", api.srv.URL, repo, run)
	p["deployment"].(map[string]any)["created_at"] = time.Now().UTC().Format(time.RFC3339)
	p["sender"].(map[string]any)["login"] = sender
	p["installation"].(map[string]any)["id"] = installation
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (d *daemon) post(t *testing.T, body []byte, signature, id string) (int, map[string]any) {
	t.Helper()
	return d.postEvent(t, github.EventName, body, signature, id)
}

func (d *daemon) postEvent(t *testing.T, event string, body []byte, signature, id string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.http.URL+"/v1/adapters/github", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/8f3c2a1")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", id)
	if signature != "" {
		req.Header.Set(github.SignatureHeader, signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var ans map[string]any
	if err := json.Unmarshal(raw, &ans); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, ans
}

// record fetches a decision's receipt and returns its signed record.
func (d *daemon) record(t *testing.T, id string) (decision.Receipt, decision.Record) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.http.URL+"/v1/decisions/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+d.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rc decision.Receipt
	if err := json.NewDecoder(resp.Body).Decode(&rc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/decisions/%s: %d %v", id, resp.StatusCode, err)
	}
	env, err := receipt.ParseEnvelope(rc.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	st, err := receipt.ParseStatement(payload)
	if err != nil {
		t.Fatal(err)
	}
	return rc, st.Predicate
}

func (d *daemon) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(d.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDeploymentProtectionRule(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	api := newGitHubAPI(t, key)
	d := startDaemon(t, t.TempDir(), api)

	// Signed delivery in → decision logged → approved review out.
	body := delivery(t, api, "push-main-production", "alice", "1001")
	status, ans := d.post(t, body, github.Sign([]byte(secret), body), "8c6a2a70-0001")
	if status != http.StatusOK || ans["decision_id"] == nil || ans["log_index"] != float64(0) {
		t.Fatalf("delivery answered %d %v", status, ans)
	}
	id := ans["decision_id"].(string)
	eventually(t, "the review of run 1001", func() bool { _, ok := api.review("1001"); return ok })
	rv, _ := api.review("1001")
	if rv.State != github.StateApproved || rv.EnvironmentName != "production" ||
		!strings.Contains(rv.Comment, "decision "+id) || !strings.Contains(rv.Comment, "log index 0") {
		t.Errorf("review %+v", rv)
	}
	rc, rec := d.record(t, id)
	if !rc.Allow || rc.InclusionProof == nil {
		t.Errorf("receipt allow %v, proof %v", rc.Allow, rc.InclusionProof)
	}
	if rec.Caller != (decision.Caller{ID: "webhook:github-app:1012345", Kind: "webhook"}) {
		t.Errorf("caller %+v", rec.Caller)
	}
	sub := rec.Request.Subject
	if sub.ID != "alice" || !sub.Verified || sub.AssertedBy != "webhook:github-app:1012345" {
		t.Errorf("subject %+v: the App vouches for the sender", sub)
	}
	if r := rec.Request.Resource; r.Environment != "production" || r.Repository != "acme/shop" || r.Ref != "main" || r.Attributes["workflow_run_id"] != float64(1001) {
		t.Errorf("resource %+v", r)
	}
	if rec.Request.Source.RequestID != "8c6a2a70-0001" || rec.Request.Source.Adapter != "github" {
		t.Errorf("source %+v", rec.Request.Source)
	}

	// Bad signatures → 401, nothing logged; replays → 409, nothing logged.
	other := delivery(t, api, "push-main-production", "alice", "1002")
	for name, sig := range map[string]string{
		"missing":      "",
		"wrong secret": github.Sign([]byte("not the secret"), other),
		"other body":   github.Sign([]byte(secret), body),
		"sha1":         "sha1=0123456789abcdef0123456789abcdef01234567",
	} {
		if status, ans := d.post(t, other, sig, "bad-"+strings.ReplaceAll(name, " ", "-")); status != http.StatusUnauthorized {
			t.Errorf("%s signature: %d %v", name, status, ans)
		}
	}
	if status, ans := d.post(t, body, github.Sign([]byte(secret), body), "8c6a2a70-0001"); status != http.StatusConflict {
		t.Errorf("same delivery again: %d %v", status, ans)
	}
	if status, ans := d.post(t, body, github.Sign([]byte(secret), body), "8c6a2a70-0001-replayed"); status != http.StatusConflict {
		t.Errorf("same signed body under a new delivery id: %d %v", status, ans)
	}

	// A ping is answered, other events and unusable deliveries are
	// refused, a deployment older than the replay memory is refused: none
	// of them is logged.
	ping := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
	if status, ans := d.postEvent(t, "ping", ping, github.Sign([]byte(secret), ping), "ping-1"); status != http.StatusOK {
		t.Errorf("ping: %d %v", status, ans)
	}
	if status, ans := d.postEvent(t, "push", ping, github.Sign([]byte(secret), ping), "push-1"); status != http.StatusBadRequest {
		t.Errorf("push event: %d %v", status, ans)
	}
	var stale map[string]any
	_ = json.Unmarshal(delivery(t, api, "push-main-production", "alice", "1004"), &stale)
	stale["deployment"].(map[string]any)["created_at"] = time.Now().Add(-8 * 24 * time.Hour).UTC().Format(time.RFC3339)
	staleBody, _ := json.Marshal(stale)
	if status, ans := d.post(t, staleBody, github.Sign([]byte(secret), staleBody), "stale-1"); status != http.StatusConflict {
		t.Errorf("8-day-old deployment: %d %v", status, ans)
	}
	foreign := bytes.ReplaceAll(delivery(t, api, "push-main-production", "alice", "1005"), []byte(api.srv.URL), []byte("https://evil.example"))
	if status, ans := d.post(t, foreign, github.Sign([]byte(secret), foreign), "foreign-1"); status != http.StatusBadRequest {
		t.Errorf("callback URL off the GitHub API: %d %v", status, ans)
	}

	// Denied: bob deploys a pull request. Its log index follows the first
	// decision's directly, so nothing above was logged.
	pr := delivery(t, api, "pull-request-staging", "bob", "1003")
	status, ans = d.post(t, pr, github.Sign([]byte(secret), pr), "8c6a2a70-0003")
	if status != http.StatusOK || ans["log_index"] != float64(1) {
		t.Fatalf("second decision answered %d %v: want log index 1 (nothing logged in between)", status, ans)
	}
	eventually(t, "the review of run 1003", func() bool { _, ok := api.review("1003"); return ok })
	rv, _ = api.review("1003")
	if rv.State != github.StateRejected || rv.EnvironmentName != "staging" || !strings.Contains(rv.Comment, "only release managers deploy") {
		t.Errorf("review %+v", rv)
	}
	if _, ok := api.review("1002"); ok {
		t.Error("run 1002 was reviewed, but its deliveries were never authentic")
	}
}

// GitHub's API is down when the decision is made: the review is retried
// until it gets through, and the delivery was answered at once.
func TestReviewRetriedWhileGitHubIsDown(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	api := newGitHubAPI(t, key)
	api.down = true
	d := startDaemon(t, t.TempDir(), api)
	body := delivery(t, api, "push-main-production", "mallory", "2001")
	if status, ans := d.post(t, body, github.Sign([]byte(secret), body), "retry-0001"); status != http.StatusOK {
		t.Fatalf("delivery answered %d %v", status, ans)
	}
	eventually(t, "retries", func() bool { return d.srv.GitHubCallbackStats().Retried >= 2 })
	if d.srv.GitHubCallbacksPending() != 1 {
		t.Errorf("%d reviews pending, want 1", d.srv.GitHubCallbacksPending())
	}
	if m := d.metrics(t); !strings.Contains(m, "gatelog_github_reviews_pending 1\n") || !strings.Contains(m, `gatelog_github_reviews_total{outcome="retried"}`) {
		t.Errorf("/metrics does not show the pending review:\n%s", m)
	}
	api.mu.Lock()
	api.down = false
	api.mu.Unlock()
	eventually(t, "the review once GitHub is back", func() bool { _, ok := api.review("2001"); return ok })
	if rv, _ := api.review("2001"); rv.State != github.StateRejected {
		t.Errorf("mallory's deployment: %+v", rv)
	}
}

// An adapter that cannot run (here: settings it refuses) fails closed: the
// run gets a rejected review saying why, and nothing is decided.
func TestAdapterDownRejects(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	api := newGitHubAPI(t, key)
	d := startDaemonWith(t, t.TempDir(), api, map[string]string{"no_such_setting": "x"})
	body := delivery(t, api, "push-main-production", "alice", "3001")
	status, ans := d.post(t, body, github.Sign([]byte(secret), body), "down-0001")
	if status != http.StatusOK || ans["decision_id"] != nil {
		t.Fatalf("delivery answered %d %v", status, ans)
	}
	eventually(t, "the review of run 3001", func() bool { _, ok := api.review("3001"); return ok })
	if rv, _ := api.review("3001"); rv.State != github.StateRejected || !strings.Contains(rv.Comment, "adapter is unavailable") {
		t.Errorf("review %+v", rv)
	}
}

// The example workflows are what the README says they are.
func TestWorkflows(t *testing.T) {
	type step struct {
		Run  string            `yaml:"run"`
		Uses string            `yaml:"uses"`
		With map[string]string `yaml:"with"`
	}
	type workflow struct {
		Permissions map[string]string `yaml:"permissions"`
		Jobs        map[string]struct {
			Environment string `yaml:"environment"`
			Steps       []step `yaml:"steps"`
		} `yaml:"jobs"`
	}
	read := func(name string) workflow {
		raw, err := os.ReadFile(filepath.Join("workflows", name))
		if err != nil {
			t.Fatal(err)
		}
		var w workflow
		if err := yaml.Unmarshal(raw, &w); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return w
	}
	protected := read("deploy-protected.yml")
	if protected.Jobs["deploy"].Environment != "production" {
		t.Error("deploy-protected.yml: the deploy job must use the protected environment")
	}
	decide := read("deploy-with-decide.yml")
	if decide.Permissions["id-token"] != "write" {
		t.Error("deploy-with-decide.yml: needs permissions id-token: write")
	}
	var asks bool
	for _, s := range decide.Jobs["deploy"].Steps {
		if strings.Contains(s.Run, "gatelog decide --api-key-file") && strings.Contains(s.Run, "audience=gatelog") {
			asks = true
		}
	}
	if !asks {
		t.Error("deploy-with-decide.yml: no step runs gatelog decide with the OIDC token (audience gatelog)")
	}
	// The daemon config in the example loads (with secret files beside it).
	dir := t.TempDir()
	cfg, err := os.ReadFile("webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, data := range map[string][]byte{
		"webhooks.json":              cfg,
		"github-webhook-secret":      []byte(secret + "\n"),
		"github-app.private-key.pem": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w, err := server.LoadWebhooks(filepath.Join(dir, "webhooks.json"))
	if err != nil || w.GitHub == nil || string(w.GitHub.Secret) != secret || w.GitHub.AppID != appID {
		t.Fatalf("LoadWebhooks: %+v %v", w, err)
	}
	if err := os.Chmod(filepath.Join(dir, "github-webhook-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := server.LoadWebhooks(filepath.Join(dir, "webhooks.json")); err == nil {
		t.Error("a webhook secret readable by others was accepted")
	}
}
