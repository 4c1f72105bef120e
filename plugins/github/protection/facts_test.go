package protection

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/record/decision"
)

// orgAPI stands in for the three GitHub endpoints githubFacts asks,
// answering with GitHub's documented examples (plugins/github/testdata/api).
type orgAPI struct {
	mu      sync.Mutex
	status  map[string]int    // path → status to answer instead (e.g. 403)
	body    map[string][]byte // path → 200 body; absent paths answer 404
	lookups []string
}

func apiExample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "api", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// orgWith2FA is GitHub's "Get an organization" example with
// two_factor_requirement_enabled set to v, or removed for nil (what an
// answer to a caller who may not see it looks like).
func orgWith2FA(t *testing.T, v *bool) []byte {
	t.Helper()
	var o map[string]any
	if err := json.Unmarshal(apiExample(t, "get-an-organization.json"), &o); err != nil {
		t.Fatal(err)
	}
	delete(o, "two_factor_requirement_enabled")
	if v != nil {
		o["two_factor_requirement_enabled"] = *v
	}
	b, _ := json.Marshal(o)
	return b
}

func newOrgAPI(t *testing.T, key *rsa.PrivateKey) (*orgAPI, *httptest.Server) {
	a := &orgAPI{status: map[string]int{}, body: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/access_tokens") {
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"token":"ghs_test","expires_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
			return
		}
		if r.Header.Get("Authorization") != "token ghs_test" {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.lookups = append(a.lookups, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		if s, ok := a.status[r.URL.Path]; ok {
			w.WriteHeader(s)
			fmt.Fprintf(w, `{"message":"Resource not accessible by integration","status":"%d"}`, s)
			return
		}
		b, ok := a.body[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"Not Found","status":"404"}`)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return a, srv
}

func senderEvent(org, login, typ string) github.Event {
	ev := github.Event{Sender: &github.User{Login: login, Type: typ}}
	ev.Installation = &struct {
		ID int64 `json:"id"`
	}{ID: 35490125}
	if org != "" {
		ev.Organization = &struct {
			Login string `json:"login"`
		}{Login: org}
	}
	return ev
}

func TestGitHubFacts(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	yes, no := true, false
	const (
		orgPath  = "/orgs/acme"
		member   = "/orgs/acme/memberships/alice"
		relMgrs  = "/orgs/acme/teams/release-managers/memberships/alice"
		devTeam  = "/orgs/acme/teams/developers/memberships/alice"
		active   = "get-organization-membership.active-member.json"
		tactive  = "get-team-membership.active-member.json"
		tpending = "get-team-membership.pending.json"
	)
	for _, tc := range []struct {
		name       string
		ev         github.Event
		twoFAOrgs  []string
		bodies     map[string]any // path → fixture name or []byte
		status     map[string]int
		wantGroups []string
		wantMFA    bool
		wantSource string
		wantFail   adapter.FailureKind
		wantAsked  []string
	}{
		{
			name: "release manager in an org that requires 2FA", ev: senderEvent("acme", "alice", "User"),
			bodies:     map[string]any{member: active, relMgrs: tactive, orgPath: orgWith2FA(t, &yes)},
			wantGroups: []string{"release-managers"}, wantMFA: true, wantSource: "github-org-2fa-required:acme",
			wantAsked: []string{member, relMgrs, devTeam, orgPath},
		},
		{
			name: "org does not require 2FA: no MFA, the setting does not override GitHub", ev: senderEvent("acme", "alice", "User"),
			twoFAOrgs:  []string{"acme"},
			bodies:     map[string]any{member: active, relMgrs: tactive, orgPath: orgWith2FA(t, &no)},
			wantGroups: []string{"release-managers"},
		},
		{
			name: "GitHub does not show the App the 2FA setting: the operator's setting decides", ev: senderEvent("acme", "alice", "User"),
			twoFAOrgs:  []string{"ACME"},
			bodies:     map[string]any{member: active, relMgrs: tactive, orgPath: orgWith2FA(t, nil)},
			wantGroups: []string{"release-managers"}, wantMFA: true, wantSource: "setting:github.org_2fa_required:acme",
		},
		{
			name: "GitHub does not show the 2FA setting and none is configured: no MFA", ev: senderEvent("acme", "alice", "User"),
			bodies:     map[string]any{member: active, relMgrs: tactive, orgPath: orgWith2FA(t, nil)},
			wantGroups: []string{"release-managers"},
		},
		{
			name: "a pending team invitation is not membership", ev: senderEvent("acme", "alice", "User"),
			bodies:  map[string]any{member: active, relMgrs: tpending, orgPath: orgWith2FA(t, &yes)},
			wantMFA: true, wantSource: "github-org-2fa-required:acme",
		},
		{
			name: "not a member of the organization: nothing more is asked", ev: senderEvent("acme", "alice", "User"),
			bodies:    map[string]any{relMgrs: tactive, orgPath: orgWith2FA(t, &yes)},
			wantAsked: []string{member},
		},
		{
			name: "App without Members: read fails closed", ev: senderEvent("acme", "alice", "User"),
			status:   map[string]int{member: http.StatusForbidden},
			wantFail: adapter.Unavailable,
		},
		{
			name: "GitHub fails on a team lookup: fails closed", ev: senderEvent("acme", "alice", "User"),
			bodies:   map[string]any{member: active},
			status:   map[string]int{relMgrs: http.StatusBadGateway},
			wantFail: adapter.Unavailable,
		},
		{
			name: "a bot sender is nobody's team member and has no second factor", ev: senderEvent("acme", "github-actions[bot]", "Bot"),
		},
		{
			name: "a repository owned by a user has no organization to ask", ev: senderEvent("", "alice", "User"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, srv := newOrgAPI(t, key)
			for p, b := range tc.bodies {
				switch b := b.(type) {
				case string:
					api.body[p] = apiExample(t, b)
				case []byte:
					api.body[p] = b
				}
			}
			for p, s := range tc.status {
				api.status[p] = s
			}
			g, err := newGitHubFacts(Config{AppID: 1012345, PrivateKey: pemKey, Teams: []string{"release-managers", "developers"}, TwoFactorOrgs: tc.twoFAOrgs}, srv.URL, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			req := decision.Request{Subject: decision.Subject{
				ID: tc.ev.Sender.Login, Groups: []string{"forged-by-adapter"}, MFA: true,
				Claims: map[string]any{"github_user_id": 1, "mfa_source": "forged"},
			}}
			err = g.apply(t.Context(), &req, tc.ev)
			if tc.wantFail != 0 {
				var f *adapter.Failure
				if !errors.As(err, &f) || f.Kind != tc.wantFail || !strings.Contains(f.Message, "so the deployment is not approved") {
					t.Fatalf("apply: %v, want a %v failure saying why", err, tc.wantFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sub := req.Subject
			if !slices.Equal(sub.Groups, tc.wantGroups) || sub.MFA != tc.wantMFA {
				t.Errorf("groups %q mfa %v, want %q %v", sub.Groups, sub.MFA, tc.wantGroups, tc.wantMFA)
			}
			if src, _ := sub.Claims["mfa_source"].(string); src != tc.wantSource {
				t.Errorf("mfa_source %q, want %q", src, tc.wantSource)
			}
			if sub.Claims["github_user_id"] != 1 {
				t.Errorf("the adapter's claims were lost: %v", sub.Claims)
			}
			if tc.wantAsked != nil && !slices.Equal(api.lookups, tc.wantAsked) {
				t.Errorf("asked GitHub %q, want %q", api.lookups, tc.wantAsked)
			}
			if tc.ev.Organization == nil || tc.ev.Sender.Type == "Bot" {
				if len(api.lookups) != 0 {
					t.Errorf("asked GitHub %q about a sender with no organization membership to check", api.lookups)
				}
			}
		})
	}
}

// Answers are kept for the TTL, then asked again; failures are not kept.
func TestGitHubFactsCache(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	api, srv := newOrgAPI(t, key)
	api.status["/orgs/acme/memberships/alice"] = http.StatusBadGateway
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	g, err := newGitHubFacts(Config{AppID: 1, PrivateKey: pemKey, Teams: []string{"release-managers"}}, srv.URL, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	ask := func() (decision.Subject, error) {
		req := decision.Request{Subject: decision.Subject{ID: "alice"}}
		err := g.apply(t.Context(), &req, senderEvent("acme", "alice", "User"))
		return req.Subject, err
	}
	if _, err := ask(); err == nil {
		t.Fatal("a 502 from GitHub was not a failure")
	}
	api.mu.Lock()
	delete(api.status, "/orgs/acme/memberships/alice")
	api.body["/orgs/acme/memberships/alice"] = apiExample(t, "get-organization-membership.active-member.json")
	api.body["/orgs/acme/teams/release-managers/memberships/alice"] = apiExample(t, "get-team-membership.active-member.json")
	api.body["/orgs/acme"] = orgWith2FA(t, nil)
	api.mu.Unlock()
	sub, err := ask()
	if err != nil || !slices.Equal(sub.Groups, []string{"release-managers"}) {
		t.Fatalf("after GitHub recovered: %+v %v", sub, err)
	}
	asked := len(api.lookups)
	// Removed from the team: still a member until the answer expires.
	api.mu.Lock()
	delete(api.body, "/orgs/acme/teams/release-managers/memberships/alice")
	api.mu.Unlock()
	if sub, _ := ask(); !slices.Equal(sub.Groups, []string{"release-managers"}) || len(api.lookups) != asked {
		t.Errorf("within the TTL: groups %q, %d new lookups", sub.Groups, len(api.lookups)-asked)
	}
	now = now.Add(defaultSenderCacheTTL)
	if sub, _ := ask(); len(sub.Groups) != 0 {
		t.Errorf("after the TTL: groups %q, want none", sub.Groups)
	}
}

// A subject that is not the delivery's sender (a misbehaving adapter) is
// refused, and nothing is asked.
func TestGitHubFactsSubjectMustBeSender(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	api, srv := newOrgAPI(t, key)
	g, err := newGitHubFacts(Config{AppID: 1, PrivateKey: pemKey}, srv.URL, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	req := decision.Request{Subject: decision.Subject{ID: "mallory"}}
	var f *adapter.Failure
	if err := g.apply(t.Context(), &req, senderEvent("acme", "alice", "User")); !errors.As(err, &f) || f.Kind != adapter.BadRequest {
		t.Errorf("apply: %v", err)
	}
	if len(api.lookups) != 0 {
		t.Errorf("asked GitHub %q", api.lookups)
	}
	if _, err := newGitHubFacts(Config{AppID: 1, PrivateKey: pemKey, Teams: []string{"../admins"}}, srv.URL, time.Now); err == nil {
		t.Error("a team that is not a slug was accepted")
	}
}

// A bare ref is a tag only if the repository has that tag at the
// deployment's commit (GitHub's "List repository tags" example: v0.1 at
// c5b97d5…); everything else stays the branch reading.
func TestGitHubFactsResolveRef(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	const (
		tagged = "c5b97d5ae6c19d5c5df71a34c7fbeeda2479ccbc"
		other  = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
		tags   = "/repos/acme/shop/tags"
	)
	for _, tc := range []struct {
		name, ref, sha string
		status         int
		wantRef        string
		wantAsked      bool
		wantFail       bool
	}{
		{name: "a tag at the deployment's commit", ref: "v0.1", sha: tagged, wantRef: "refs/tags/v0.1", wantAsked: true},
		{name: "a tag of that name at another commit", ref: "v0.1", sha: other, wantRef: "refs/heads/v0.1", wantAsked: true},
		{name: "a branch", ref: "main", sha: other, wantRef: "refs/heads/main", wantAsked: true},
		{name: "a full ref is not looked up", ref: "refs/pull/318/merge", sha: other, wantRef: "refs/pull/318/merge"},
		{name: "no sha to compare: not looked up", ref: "v0.1", wantRef: "refs/heads/v0.1"},
		{name: "GitHub fails: fails closed", ref: "v0.1", sha: tagged, status: http.StatusBadGateway, wantFail: true, wantAsked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, srv := newOrgAPI(t, key)
			api.body[tags] = apiExample(t, "list-repository-tags.json")
			if tc.status != 0 {
				api.status[tags] = tc.status
			}
			g, err := newGitHubFacts(Config{AppID: 1, PrivateKey: pemKey}, srv.URL, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			ev := senderEvent("acme", "alice", "User")
			ev.Ref, ev.SHA = tc.ref, tc.sha
			ev.Repository.FullName = "acme/shop"
			req := decision.Request{Resource: decision.Resource{Ref: decision.NormalizeRef(tc.ref)}}
			err = g.resolveRef(t.Context(), &req, ev)
			var f *adapter.Failure
			if tc.wantFail != (errors.As(err, &f) && f.Kind == adapter.Unavailable) || (err != nil && !tc.wantFail) {
				t.Fatalf("resolveRef: %v", err)
			}
			if !tc.wantFail && req.Resource.Ref != tc.wantRef {
				t.Errorf("ref %q, want %q", req.Resource.Ref, tc.wantRef)
			}
			if asked := slices.Contains(api.lookups, tags); asked != tc.wantAsked {
				t.Errorf("asked GitHub %q", api.lookups)
			}
			if tc.wantRef == "refs/tags/v0.1" && req.Resource.Attributes["ref_source"] != "github-tag-list" {
				t.Errorf("attributes %v: the record must say where the tag reading came from", req.Resource.Attributes)
			}
		})
	}
}

// The tag is found on a later page of the listing (GitHub's Link header).
func TestGitHubFactsResolveRefPages(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	var pages []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/access_tokens") {
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"token":"ghs_test","expires_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
			return
		}
		page := r.URL.Query().Get("page")
		pages = append(pages, page)
		if page == "" {
			w.Header().Set("Link", fmt.Sprintf(`<http://%s/repos/acme/shop/tags?per_page=100&page=2>; rel="next"`, r.Host))
			fmt.Fprint(w, `[{"name":"v2.0","commit":{"sha":"6dcb09b5b57875f334f61aebed695e2e4193db5e"}}]`)
			return
		}
		_, _ = w.Write(apiExample(t, "list-repository-tags.json"))
	}))
	t.Cleanup(srv.Close)
	g, err := newGitHubFacts(Config{AppID: 1, PrivateKey: pemKey}, srv.URL, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ev := senderEvent("acme", "alice", "User")
	ev.Ref, ev.SHA = "v0.1", "c5b97d5ae6c19d5c5df71a34c7fbeeda2479ccbc"
	ev.Repository.FullName = "acme/shop"
	req := decision.Request{Resource: decision.Resource{Ref: "refs/heads/v0.1"}}
	if err := g.resolveRef(t.Context(), &req, ev); err != nil || req.Resource.Ref != "refs/tags/v0.1" {
		t.Fatalf("ref %q, %v (pages read %q)", req.Resource.Ref, err, pages)
	}
	if !slices.Equal(pages, []string{"", "2"}) {
		t.Errorf("pages read %q", pages)
	}
}
