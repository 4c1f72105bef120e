// End to end, as a GitHub user runs it: the built gatelog binary serves
// the bundled policy with the shipped webhooks.json (its api_url pointed at
// a loopback stand-in of GitHub's REST API, the only override), answers
// signed deployment_protection_rule deliveries, learns the sender's teams
// and its organization's 2FA requirement from the stand-in as the App's
// installation, logs the decision and posts the review to the run's
// deployment_callback_url; every decision is then verified offline with
// `gatelog verify` and the daemon's public keys.
package github_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatelog/gatelog/plugins/builtin"

	"github.com/golang-jwt/jwt/v4"
	"go.yaml.in/yaml/v3"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/plugins/github"
)

// The fixtures' App installation, organization, run and users
// (plugins/github/testdata/README.md says where each comes from).
const (
	installation = 35490125
	org          = "terraform-test-github"
	repo         = "terraform-test-github/sample-app"
	runID        = "5453085689"
	releaseMgr   = "ilmax"     // sender of org-production-push
	developer    = "lineville" // sender of org-production-push-nonmember
	secret       = "webhook secret of the gatelog App"
)

// githubAPI stands in for GitHub's REST API: installation tokens for a JWT
// signed with the App's key; the organization, organization membership,
// team membership and tag list answers of GitHub's documentation
// (testdata/api) for requests made with that installation's token, 404 for
// non-members; and the deployment reviews.
type githubAPI struct {
	t     *testing.T
	key   *rsa.PrivateKey
	appID int64
	srv   *httptest.Server

	mu      sync.Mutex
	members map[string]bool     // active organization members
	teams   map[string][]string // team slug → active members
	reviews map[string]github.Review
	lookups []string
	down    bool // the organization and membership endpoints answer 502
}

func apiFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(e2e.Path(t, "plugins/github/testdata/api/"+name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newGitHubAPI(t *testing.T, key *rsa.PrivateKey, appID int64) *githubAPI {
	g := &githubAPI{t: t, key: key, appID: appID, reviews: map[string]github.Review{},
		members: map[string]bool{releaseMgr: true, developer: true},
		teams:   map[string][]string{"release-managers": {releaseMgr}, "developers": {developer}},
	}
	orgJSON := apiFixture(t, "get-an-organization.json")
	orgMember := apiFixture(t, "get-organization-membership.active-member.json")
	teamMember := apiFixture(t, "get-team-membership.active-member.json")
	tags := apiFixture(t, "list-repository-tags.json")
	token := "ghs_inst" + strconv.Itoa(installation)
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
		if err != nil || claims.Issuer != strconv.FormatInt(appID, 10) {
			http.Error(w, `{"message":"A JSON web token could not be decoded"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":"ghs_inst%s","expires_at":%q}`, r.PathValue("id"), time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	})
	authorized := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "token "+token {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return false
		}
		g.mu.Lock()
		g.lookups = append(g.lookups, r.URL.Path)
		down := g.down
		g.mu.Unlock()
		if down {
			http.Error(w, `{"message":"Server Error"}`, http.StatusBadGateway)
			return false
		}
		return true
	}
	answer := func(w http.ResponseWriter, ok bool, body []byte) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`)
			return
		}
		_, _ = w.Write(body)
	}
	mux.HandleFunc("GET /orgs/{org}", func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r) {
			answer(w, r.PathValue("org") == org, orgJSON)
		}
	})
	mux.HandleFunc("GET /orgs/{org}/memberships/{user}", func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r) {
			g.mu.Lock()
			ok := r.PathValue("org") == org && g.members[r.PathValue("user")]
			g.mu.Unlock()
			answer(w, ok, orgMember)
		}
	})
	mux.HandleFunc("GET /orgs/{org}/teams/{team}/memberships/{user}", func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r) {
			g.mu.Lock()
			ok := r.PathValue("org") == org && slices.Contains(g.teams[r.PathValue("team")], r.PathValue("user"))
			g.mu.Unlock()
			answer(w, ok, teamMember)
		}
	})
	mux.HandleFunc("GET /repos/{owner}/{repo}/tags", func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r) {
			answer(w, r.PathValue("owner")+"/"+r.PathValue("repo") == repo, tags)
		}
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "token "+token {
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
		g.mu.Lock()
		g.reviews[r.PathValue("run")] = rv
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

// review waits for the review of run.
func (g *githubAPI) review(t *testing.T, run string) github.Review {
	t.Helper()
	poll.Until(t, "the review of run "+run, func() bool { return g.reviewed(run) })
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reviews[run]
}

func (g *githubAPI) reviewed(run string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.reviews[run]
	return ok
}

// shippedConfig copies examples/github/webhooks.json into a directory with
// the App's secret and key beside it (0600, as the README says) and points
// api_url at the stand-in; everything else is as shipped. It returns the
// config's path and its App ID.
func shippedConfig(t *testing.T, apiURL string, key *rsa.PrivateKey) (string, int64) {
	t.Helper()
	raw, err := os.ReadFile("webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	gh := cfg["github"]
	gh["api_url"] = apiURL
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"webhooks.json":                    out,
		gh["webhook_secret_file"].(string): []byte(secret + "\n"),
		gh["private_key_file"].(string):    pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "webhooks.json"), int64(gh["app_id"].(float64))
}

// delivery is a fixture as GitHub delivers it to this test: its
// deployment_callback_url on the stand-in (same path), nothing else
// changed.
func delivery(t *testing.T, apiURL, fixture string) []byte {
	t.Helper()
	raw, err := os.ReadFile(e2e.Path(t, "plugins/github/testdata/"+fixture+".payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Replace(raw, []byte(`"https://api.github.com/repos/`), []byte(`"`+apiURL+`/repos/`), 1)
	if bytes.Equal(out, raw) {
		t.Fatalf("%s: no deployment_callback_url on api.github.com", fixture)
	}
	return out
}

// headers are GitHub's delivery headers ("Webhook events and payloads" →
// "Delivery headers"), signed with the secret.
func headers(body []byte, event, id string) http.Header {
	return http.Header{
		"User-Agent":                             {"GitHub-Hookshot/8f3c2a1"},
		"X-Github-Event":                         {event},
		"X-Github-Delivery":                      {id},
		"X-Github-Hook-Installation-Target-Type": {"integration"},
		github.SignatureHeader:                   {github.Sign([]byte(secret), body)},
	}
}

type deliveryAnswer struct {
	Message    string        `json:"message"`
	DecisionID string        `json:"decision_id"`
	LogIndex   *int64        `json:"log_index"`
	Review     github.Review `json:"review"`
}

func post(t *testing.T, d *e2e.Daemon, body []byte, h http.Header) (int, deliveryAnswer) {
	t.Helper()
	status, _, raw := d.Post(t, "/v1/adapters/github", body, h)
	var ans deliveryAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		t.Fatalf("answer %d is not JSON: %s", status, raw)
	}
	return status, ans
}

func TestDeploymentProtectionEndToEnd(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// The App ID is the shipped one: read it before the stand-in starts.
	_, appID := shippedConfig(t, "https://api.github.com", key)
	api := newGitHubAPI(t, key, appID)
	cfg, _ := shippedConfig(t, api.srv.URL, key)
	d := e2e.Start(t, e2e.Build(t), nil, "--adapter", "github", "--webhooks-config", cfg)
	app := "webhook:github-app:" + strconv.FormatInt(appID, 10)

	// Happy path: a member of team release-managers, in an organization
	// that requires 2FA, deploys main to production → approved.
	body := delivery(t, api.srv.URL, "org-production-push")
	status, ans := post(t, d, body, headers(body, github.EventName, "0f1e2d3c-0001"))
	if status != http.StatusOK || ans.DecisionID == "" || ans.Review.State != github.StateApproved {
		t.Fatalf("release manager's delivery answered %d %+v\n%s", status, ans, d.Log())
	}
	rv := api.review(t, runID)
	if rv.State != github.StateApproved || rv.EnvironmentName != "production" ||
		!strings.HasPrefix(rv.Comment, "gatelog: ALLOWED (decision "+ans.DecisionID+", log index ") {
		t.Errorf("review posted to GitHub: %+v", rv)
	}
	v := d.Verify(t, ans.DecisionID)
	if !v.Record.Decision.Allow || v.Record.Caller.ID != app {
		t.Errorf("verified record: allow %v, caller %+v", v.Record.Decision.Allow, v.Record.Caller)
	}
	sub := v.Record.Request.Subject
	if sub.ID != releaseMgr || !sub.Verified || sub.AssertedBy != app || !slices.Equal(sub.Groups, []string{"release-managers"}) || !sub.MFA {
		t.Errorf("subject %+v: want %s, vouched for by the App, group release-managers and MFA from the organization", sub, releaseMgr)
	}
	if sub.Claims["mfa_source"] != "github-org-2fa-required:"+org || sub.Claims["groups_source"] != "github-team-membership:"+org {
		t.Errorf("subject claims %v: the record must say where groups and MFA came from", sub.Claims)
	}
	if r := v.Record.Request.Resource; r.Ref != "refs/heads/main" || r.Environment != "production" || r.Repository != repo {
		t.Errorf("resource %+v", r)
	}
	for _, want := range []string{
		"/orgs/" + org + "/memberships/" + releaseMgr,
		"/orgs/" + org + "/teams/release-managers/memberships/" + releaseMgr,
		"/orgs/" + org,
		"/repos/" + repo + "/tags",
	} {
		api.mu.Lock()
		asked := slices.Contains(api.lookups, want)
		api.mu.Unlock()
		if !asked {
			t.Errorf("GitHub was not asked %s", want)
		}
	}

	// Fail closed: while GitHub's API cannot say who the sender is, the
	// deployment is rejected with that reason, and nothing is decided.
	api.mu.Lock()
	api.down = true
	api.mu.Unlock()
	blind := bytes.Replace(delivery(t, api.srv.URL, "org-production-push-nonmember"), []byte("/runs/"+runID+"/"), []byte("/runs/5453085692/"), 1)
	status, ans = post(t, d, blind, headers(blind, github.EventName, "0f1e2d3c-0005"))
	if status != http.StatusOK || ans.DecisionID != "" || ans.Review.State != github.StateRejected {
		t.Fatalf("delivery while GitHub's API is down answered %d %+v", status, ans)
	}
	rv = api.review(t, "5453085692")
	if rv.State != github.StateRejected || !strings.Contains(rv.Comment, "could not read whether "+developer+" is a member of organization "+org) ||
		!strings.Contains(rv.Comment, "502") {
		t.Errorf("review posted to GitHub while its API was down: %+v", rv)
	}
	api.mu.Lock()
	api.down = false
	api.mu.Unlock()

	// Deny path: an organization member who is not a release manager
	// deploys to production → rejected, with the policy's reason in the
	// review comment.
	other := bytes.Replace(delivery(t, api.srv.URL, "org-production-push-nonmember"), []byte("/runs/"+runID+"/"), []byte("/runs/5453085690/"), 1)
	status, ans = post(t, d, other, headers(other, github.EventName, "0f1e2d3c-0002"))
	if status != http.StatusOK || ans.DecisionID == "" || ans.Review.State != github.StateRejected {
		t.Fatalf("developer's delivery answered %d %+v", status, ans)
	}
	rv = api.review(t, "5453085690")
	wantReason := fmt.Sprintf(`no role of subject %q permits action "deploy"`, developer)
	if rv.State != github.StateRejected || rv.EnvironmentName != "production" ||
		!strings.HasPrefix(rv.Comment, "gatelog: DENIED (decision "+ans.DecisionID) || !strings.Contains(rv.Comment, wantReason) {
		t.Errorf("review posted to GitHub: %+v, want a rejection saying %s", rv, wantReason)
	}
	v = d.Verify(t, ans.DecisionID)
	if v.Record.Decision.Allow || v.Record.Request.Subject.ID != developer || len(v.Record.Request.Subject.Groups) != 0 {
		t.Errorf("verified record: %+v", v.Record.Request.Subject)
	}
	if !slices.ContainsFunc(v.Record.Decision.Reasons, func(r string) bool { return strings.Contains(r, wantReason) }) {
		t.Errorf("record reasons %q", v.Record.Decision.Reasons)
	}

	denied := ans.DecisionID

	// What GitHub must never get through: a bad signature (401), a replay
	// (409) — nothing is decided, nothing reviewed.
	forged := bytes.Replace(delivery(t, api.srv.URL, "org-production-push-nonmember"), []byte("/runs/"+runID+"/"), []byte("/runs/5453085691/"), 1)
	h := headers(forged, github.EventName, "0f1e2d3c-0003")
	h.Set(github.SignatureHeader, github.Sign([]byte("not the secret"), forged))
	if status, ans := post(t, d, forged, h); status != http.StatusUnauthorized || ans.DecisionID != "" {
		t.Errorf("wrong signature: %d %+v", status, ans)
	}
	if status, ans := post(t, d, body, headers(body, github.EventName, "0f1e2d3c-0004")); status != http.StatusConflict || ans.DecisionID != "" {
		t.Errorf("replayed body under a new delivery id: %d %+v", status, ans)
	}
	// The two decisions above are the log's only entries after the
	// start-up policy record.
	if rc := d.Receipt(t, denied); rc.LogIndex != 2 {
		t.Errorf("second decision at log index %d, want 2: something else was logged", rc.LogIndex)
	}
	// Three reviews were queued and delivered, none is pending: the
	// forged and the replayed deliveries queued nothing.
	resp, err := http.Get(d.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"gatelog_github_reviews_pending 0\n", `gatelog_github_reviews_total{outcome="delivered"} 3` + "\n"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if api.reviewed("5453085691") {
		t.Error("a forged delivery was reviewed")
	}
}

// The example workflow and webhooks.json are what the README says.
func TestShippedFiles(t *testing.T) {
	type step struct {
		Run string `yaml:"run"`
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
	if read("deploy-protected.yml").Jobs["deploy"].Environment != "production" {
		t.Error("deploy-protected.yml: the deploy job must use the protected environment")
	}
	decide := read("deploy-with-decide.yml")
	if decide.Permissions["id-token"] != "write" {
		t.Error("deploy-with-decide.yml: needs permissions id-token: write")
	}
	if !slices.ContainsFunc(decide.Jobs["deploy"].Steps, func(s step) bool {
		return strings.Contains(s.Run, "gatelog decide --api-key-file") && strings.Contains(s.Run, "audience=gatelog")
	}) {
		t.Error("deploy-with-decide.yml: no step runs gatelog decide with the OIDC token (audience gatelog)")
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := shippedConfig(t, "https://api.github.com", key)
	w, err := builtin.LoadWebhooks(cfg)
	if err != nil || w.GitHub == nil || string(w.GitHub.Secret) != secret {
		t.Fatalf("LoadWebhooks: %+v %v", w, err)
	}
	// The teams the App asks about are the groups the bundled policy data
	// gives roles to.
	if !slices.Equal(w.GitHub.Teams, []string{"release-managers"}) {
		t.Errorf("teams %q, want the bundled policy's group release-managers", w.GitHub.Teams)
	}
	if err := os.Chmod(filepath.Join(filepath.Dir(cfg), "github-webhook-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := builtin.LoadWebhooks(cfg); err == nil {
		t.Error("a webhook secret readable by others was accepted")
	}
}
