package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

// headersAdapter records the names of the headers it is given, in the
// request it translates and in the answer it renders.
type headersAdapter struct{}

func (headersAdapter) Info(context.Context) (adapter.Info, error) {
	return adapter.Info{Name: "headers", Version: "1", Kinds: []string{"any"}}, nil
}

func (headersAdapter) Configure(context.Context, map[string]string) error { return nil }

func headerNames(h http.Header) []any {
	var names []any
	for k := range h {
		names = append(names, k)
	}
	return names
}

func (headersAdapter) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	return decision.Request{
		Subject:  decision.Subject{ID: "payload-user"},
		Action:   "pipeline.trigger",
		Resource: decision.Resource{System: "headers", Attributes: map[string]any{"headers": headerNames(in.Headers)}},
	}, nil
}

func (headersAdapter) Render(_ context.Context, in adapter.Native, out adapter.Outcome) (adapter.Response, error) {
	id := ""
	if out.Receipt != nil {
		id = out.Receipt.DecisionID
	}
	body, _ := json.Marshal(map[string]any{"allowed": out.Allowed(), "decision_id": id, "headers": headerNames(in.Headers)})
	return adapter.Response{Status: http.StatusOK, Body: body}, nil
}

// headersAdapterConfig runs the test binary as the "headers" adapter
// (TestMain).
func headersAdapterConfig(t *testing.T) []host.Config {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(exe)
	return []host.Config{{Name: "headers", Command: self, Args: []string{"adapter", "serve", "headers"}, SHA256: hex.EncodeToString(sum[:])}}
}

// TestAdaptersNeverSeeCredentials: the caller's Authorization header (and
// so its API key or token) reaches neither Translate nor Render of an
// adapter process, whose stderr goes to the daemon log.
func TestAdaptersNeverSeeCredentials(t *testing.T) {
	var logs syncBuffer
	d := openDaemon(t, daemon.Config{
		DataDir:  t.TempDir(),
		Adapters: headersAdapterConfig(t),
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
	})
	req, _ := http.NewRequest(http.MethodPost, d.HTTP.URL+"/v1/adapters/headers", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+d.Key)
	req.Header.Set("X-Ci-Event", "push")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Allowed    bool     `json:"allowed"`
		DecisionID string   `json:"decision_id"`
		Headers    []string `json:"headers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("adapter answer: %d %v", resp.StatusCode, err)
	}
	if slices.Contains(answer.Headers, "Authorization") || !slices.Contains(answer.Headers, "X-Ci-Event") {
		t.Errorf("Render was given headers %v", answer.Headers)
	}
	code, raw := d.Get("/v1/decisions/" + answer.DecisionID)
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil || code != http.StatusOK {
		t.Fatalf("decision %q: %d %s", answer.DecisionID, code, raw)
	}
	res, err := verify.Receipt(rc, d.LogKey, d.SignerKey)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(res.Statement.Predicate.Request.Resource.Attributes["headers"])
	if strings.Contains(string(got), "Authorization") || !strings.Contains(string(got), "X-Ci-Event") {
		t.Errorf("Translate was given headers %s", got)
	}
	if strings.Contains(logs.String(), d.Key) {
		t.Error("the API key appears in the daemon log")
	}
}
