package callback_test

import (
	"context"
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"

	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/github/callback"
)

const appID = 1012345

var appKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func appKeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey())})
}

// fakeGitHub stands in for GitHub's API: it issues installation tokens to
// a JWT signed with the App's key, and takes deployment reviews made with
// such a token.
type fakeGitHub struct {
	t   *testing.T
	srv *httptest.Server

	mu          sync.Mutex
	tokens      int
	reviews     []github.Review
	paths       []string
	auth        []string
	failReviews int // answer this many reviews with 502 first
	reviewCode  int // answer reviews with this status (0: 204)
	tokenCode   int // answer token requests with this status (0: 201)
}

func newFakeGitHub(t *testing.T, prefix string) *fakeGitHub {
	f := &fakeGitHub{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+prefix+"/app/installations/{id}/access_tokens", f.token)
	mux.HandleFunc("POST "+prefix+"/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule", f.review)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) token(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(bearer, claims, func(tok *jwt.Token) (any, error) {
		if tok.Method != jwt.SigningMethodRS256 {
			return nil, fmt.Errorf("alg %v", tok.Header["alg"])
		}
		return &appKey().PublicKey, nil
	})
	if !ok || err != nil || claims.Issuer != strconv.Itoa(appID) {
		http.Error(w, `{"message":"A JSON web token could not be decoded"}`, http.StatusUnauthorized)
		return
	}
	if f.tokenCode != 0 {
		http.Error(w, `{"message":"Integration not found"}`, f.tokenCode)
		return
	}
	f.tokens++
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"token":"ghs_installation%s_%d","expires_at":%q}`, r.PathValue("id"), f.tokens, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
}

func (f *fakeGitHub) review(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "token ghs_installation") {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	if r.Header.Get("X-GitHub-Api-Version") == "" || r.Header.Get("Content-Type") != "application/json" {
		f.t.Errorf("review without API version or JSON content type: %v", r.Header)
	}
	if f.failReviews > 0 {
		f.failReviews--
		w.Header().Set("Retry-After", "0")
		http.Error(w, `{"message":"Server Error"}`, http.StatusBadGateway)
		return
	}
	if f.reviewCode != 0 {
		http.Error(w, `{"message":"No pending deployment requests to approve or reject"}`, f.reviewCode)
		return
	}
	var rv github.Review
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rv); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.reviews = append(f.reviews, rv)
	f.paths = append(f.paths, r.URL.Path)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeGitHub) snapshot() (tokens int, reviews []github.Review, paths []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens, append([]github.Review(nil), f.reviews...), append([]string(nil), f.paths...)
}

func open(t *testing.T, dir, api string) *callback.Outbox {
	t.Helper()
	o, err := callback.Open(dir, callback.Options{
		AppID: appID, PrivateKey: appKeyPEM(), APIURL: api,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, AttemptTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func run(t *testing.T, o *callback.Outbox) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func job(t *testing.T, o *callback.Outbox, id string, run int, state string) callback.Job {
	t.Helper()
	u, err := o.CheckURL(fmt.Sprintf("%s/repos/acme/shop/actions/runs/%d/deployment_protection_rule", apiOf(o), run), "acme/shop")
	if err != nil {
		t.Fatal(err)
	}
	return callback.Job{ID: id, URL: u, InstallationID: 52210437, DecisionID: "dec-" + id,
		Review: github.Review{EnvironmentName: "production", State: state, Comment: "gatelog: " + state}}
}

var apis sync.Map // *callback.Outbox → API URL, for job()

func apiOf(o *callback.Outbox) string { v, _ := apis.Load(o); return v.(string) }

func openAt(t *testing.T, dir, api string) *callback.Outbox {
	o := open(t, dir, api)
	apis.Store(o, api)
	return o
}

func TestDeliversWithAnInstallationToken(t *testing.T) {
	gh := newFakeGitHub(t, "")
	o := openAt(t, t.TempDir(), gh.srv.URL)
	run(t, o)
	for i, state := range []string{github.StateApproved, github.StateRejected} {
		if ok, err := o.Enqueue(job(t, o, fmt.Sprintf("delivery-%d", i), 100+i, state)); !ok || err != nil {
			t.Fatalf("Enqueue: %v %v", ok, err)
		}
	}
	poll.Until(t, "two reviews", func() bool { _, r, _ := gh.snapshot(); return len(r) == 2 })
	tokens, reviews, paths := gh.snapshot()
	if tokens != 1 {
		t.Errorf("%d installation tokens for one installation, want 1 (ghinstallation caches it)", tokens)
	}
	gh.mu.Lock()
	for _, a := range gh.auth {
		if !strings.HasPrefix(a, "token ghs_installation52210437_") {
			t.Errorf("review sent with %q, want the token of installation 52210437", a)
		}
	}
	gh.mu.Unlock()
	got := map[string]string{}
	for i, r := range reviews {
		got[paths[i]] = r.State
	}
	if got["/repos/acme/shop/actions/runs/100/deployment_protection_rule"] != "approved" || got["/repos/acme/shop/actions/runs/101/deployment_protection_rule"] != "rejected" {
		t.Errorf("reviews: %v", got)
	}
	poll.Until(t, "an empty queue", func() bool { return o.Depth() == 0 })
	if s := o.Stats(); s.Delivered != 2 || s.Failed != 0 {
		t.Errorf("stats %+v", s)
	}
	// The same delivery is not queued twice.
	if ok, err := o.Enqueue(job(t, o, "delivery-0", 100, github.StateApproved)); ok || err != nil {
		t.Errorf("Enqueue(delivered id) = %v, %v", ok, err)
	}
}

// A review that GitHub does not take is retried; one queued before a
// restart is delivered after it.
func TestRetriedAndNeverLost(t *testing.T) {
	gh := newFakeGitHub(t, "/api/v3")
	api := gh.srv.URL + "/api/v3"
	dir := t.TempDir()
	first := openAt(t, dir, api)
	if _, err := first.Enqueue(job(t, first, "before-restart", 7741, github.StateRejected)); err != nil {
		t.Fatal(err)
	}
	// The daemon stops before delivering: the review is on disk.
	raw, err := os.ReadFile(filepath.Join(dir, "pending", "before-restart.json"))
	if err != nil || !strings.Contains(string(raw), `"state":"rejected"`) {
		t.Fatalf("pending review on disk: %s %v", raw, err)
	}
	gh.mu.Lock()
	gh.failReviews = 2
	gh.mu.Unlock()
	second := openAt(t, dir, api)
	if second.Depth() != 1 {
		t.Fatalf("after restart: %d pending, want 1", second.Depth())
	}
	run(t, second)
	poll.Until(t, "the review after two 502s", func() bool { _, r, _ := gh.snapshot(); return len(r) == 1 })
	poll.Until(t, "an empty queue", func() bool { return second.Depth() == 0 })
	if s := second.Stats(); s.Retried != 2 || s.Delivered != 1 {
		t.Errorf("stats %+v", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "done", "before-restart.json")); err != nil {
		t.Error("delivered review not in done/")
	}
}

// A run that no longer waits (422) cannot be reviewed: the review is kept in
// failed/ with GitHub's reason and not retried. A token GitHub refuses is
// retried: the App's installation may be fixed.
func TestRefusedForGoodOrRetried(t *testing.T) {
	gh := newFakeGitHub(t, "")
	gh.reviewCode = http.StatusUnprocessableEntity
	dir := t.TempDir()
	o := openAt(t, dir, gh.srv.URL)
	run(t, o)
	if _, err := o.Enqueue(job(t, o, "stale", 1, github.StateApproved)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the refusal", func() bool { return o.Stats().Failed == 1 })
	raw, err := os.ReadFile(filepath.Join(dir, "failed", "stale.json"))
	if err != nil || !strings.Contains(string(raw), "No pending deployment requests") {
		t.Errorf("failed/stale.json: %s %v", raw, err)
	}
	if o.Depth() != 0 || o.Stats().Retried != 0 {
		t.Errorf("depth %d stats %+v", o.Depth(), o.Stats())
	}

	gh.mu.Lock()
	gh.reviewCode, gh.tokenCode = 0, http.StatusNotFound
	gh.mu.Unlock()
	other := job(t, o, "token-refused", 2, github.StateApproved)
	other.InstallationID = 777 // no token cached for it yet
	if _, err := o.Enqueue(other); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "retries", func() bool { return o.Stats().Retried >= 2 })
	gh.mu.Lock()
	gh.tokenCode = 0
	gh.mu.Unlock()
	poll.Until(t, "delivery once the token is issued", func() bool { return o.Stats().Delivered == 1 })
}

func TestCheckURL(t *testing.T) {
	o := openAt(t, t.TempDir(), "https://api.github.com")
	ghes := openAt(t, t.TempDir(), "https://github.acme.example/api/v3/")
	for _, tc := range []struct {
		o    *callback.Outbox
		raw  string
		repo string
		ok   bool
	}{
		{o, "https://api.github.com/repos/acme/shop/actions/runs/11843319027/deployment_protection_rule", "acme/shop", true},
		{o, "https://API.github.com/repos/acme/shop/actions/runs/1/deployment_protection_rule", "acme/shop", true},
		{ghes, "https://github.acme.example/api/v3/repos/platform/nightly/actions/runs/7741/deployment_protection_rule", "platform/nightly", true},
		{ghes, "https://github.acme.example/repos/platform/nightly/actions/runs/7741/deployment_protection_rule", "platform/nightly", false},
		{o, "https://evil.example/repos/acme/shop/actions/runs/1/deployment_protection_rule", "acme/shop", false},
		{o, "http://api.github.com/repos/acme/shop/actions/runs/1/deployment_protection_rule", "acme/shop", false},
		{o, "https://x@api.github.com/repos/acme/shop/actions/runs/1/deployment_protection_rule", "acme/shop", false},
		{o, "https://api.github.com/repos/acme/shop/actions/runs/1/deployment_protection_rule?x=1", "acme/shop", false},
		{o, "https://api.github.com/repos/acme/other/actions/runs/1/deployment_protection_rule", "acme/shop", false},
		{o, "https://api.github.com/repos/acme/shop/actions/runs/01/deployment_protection_rule", "acme/shop", false},
		{o, "https://api.github.com/repos/acme/shop/actions/runs/1/../../../../app/deployment_protection_rule", "acme/shop", false},
		{o, "https://api.github.com/repos/acme/shop/actions/runs/1%2F2/deployment_protection_rule", "acme/shop", false},
		{o, "https://api.github.com.evil.example/repos/acme/shop/actions/runs/1/deployment_protection_rule", "acme/shop", false},
		{o, "https://api.github.com:8443/repos/acme/shop/actions/runs/1/deployment_protection_rule", "acme/shop", false},
	} {
		_, err := tc.o.CheckURL(tc.raw, tc.repo)
		if (err == nil) != tc.ok {
			t.Errorf("CheckURL(%q, %q) = %v, want ok %v", tc.raw, tc.repo, err, tc.ok)
		}
		if err != nil && !errors.Is(err, callback.ErrInvalid) {
			t.Errorf("CheckURL error %v does not wrap ErrInvalid", err)
		}
	}
}

func TestOpenRefusesBadSettings(t *testing.T) {
	for name, opts := range map[string]callback.Options{
		"no app":  {PrivateKey: appKeyPEM()},
		"bad key": {AppID: 1, PrivateKey: []byte("-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----\n")},
		"bad api": {AppID: 1, PrivateKey: appKeyPEM(), APIURL: "ftp://api.github.com"},
	} {
		if _, err := callback.Open(t.TempDir(), opts); !errors.Is(err, callback.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	o := openAt(t, t.TempDir(), "https://api.github.com")
	for _, j := range []callback.Job{
		{ID: "../x", InstallationID: 1, Review: github.Review{EnvironmentName: "p", State: "approved"}},
		{ID: "a", Review: github.Review{EnvironmentName: "p", State: "approved"}},
		{ID: "a", InstallationID: 1, Review: github.Review{EnvironmentName: "p", State: "maybe"}},
	} {
		if _, err := o.Enqueue(j); !errors.Is(err, callback.ErrInvalid) {
			t.Errorf("Enqueue(%+v) = %v", j, err)
		}
	}
}

func FuzzCheckURL(f *testing.F) {
	f.Add("https://api.github.com/repos/acme/shop/actions/runs/11843319027/deployment_protection_rule", "acme/shop")
	f.Add("https://api.github.com/repos/acme/shop/actions/runs/1/../deployment_protection_rule", "acme/shop")
	f.Add("https://api.github.com@evil.example/repos/a/b/actions/runs/1/deployment_protection_rule", "a/b")
	dir, err := os.MkdirTemp("", "fuzz-checkurl-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	o, err := callback.Open(dir, callback.Options{AppID: appID, PrivateKey: appKeyPEM()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw, repo string) {
		got, err := o.CheckURL(raw, repo)
		if err != nil {
			return
		}
		req, rerr := http.NewRequest(http.MethodPost, got, nil)
		if rerr != nil {
			t.Fatalf("CheckURL(%q) accepted %q, which is not a request URL: %v", raw, got, rerr)
		}
		if req.URL.Scheme != "https" || !strings.EqualFold(req.URL.Host, "api.github.com") || req.URL.User != nil {
			t.Fatalf("CheckURL(%q) = %q points off the GitHub API", raw, got)
		}
		if !strings.HasSuffix(req.URL.Path, "/deployment_protection_rule") || strings.Contains(req.URL.Path, "..") {
			t.Fatalf("CheckURL(%q) = %q is not a review endpoint", raw, got)
		}
	})
}

func TestStoredJobCarriesNoToken(t *testing.T) {
	gh := newFakeGitHub(t, "")
	dir := t.TempDir()
	o := openAt(t, dir, gh.srv.URL)
	run(t, o)
	if _, err := o.Enqueue(job(t, o, "secret-check", 5, github.StateApproved)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "delivery", func() bool { return o.Stats().Delivered == 1 })
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "ghs_") || strings.Contains(string(b), "PRIVATE KEY") {
			t.Errorf("%s holds a credential: %s", p, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
