package daemon_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/internal/testdb"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/verify"
)

// TestMain stops the database servers the backend tests started. Run as
// `<test binary> adapter serve headers` it is the headers adapter of
// TestAdaptersNeverSeeCredentials.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "adapter" && os.Args[2] == "serve" && os.Args[3] == "headers" {
		adapter.Serve(headersAdapter{})
		os.Exit(0)
	}
	code := m.Run()
	testdb.Stop()
	os.Exit(code)
}

// A daemon with its audit index on PostgreSQL: decisions are found by
// search, and a restart against the same database finds them again.
func TestAuditIndexOnPostgres(t *testing.T) {
	dsn := testdb.Postgres(t)
	dir := t.TempDir()
	open := func() *testDaemon {
		return openDaemon(t, daemon.Config{DataDir: dir, Index: dsn})
	}
	d := open()
	d.Decide(allowedDeploy)
	d.Decide(deniedDeploy)
	searchUntil(t, d, "subject=alice", 1)
	searchUntil(t, d, "kind=decision&limit=100", 2)
	d.Stop()
	d = open()
	d.Decide(allowedDeploy)
	searchUntil(t, d, "subject=alice", 2)
}

// searchUntil polls the audit search until it returns want results (the
// index follows the log a checkpoint behind).
func searchUntil(t *testing.T, d *testDaemon, q string, want int) {
	t.Helper()
	var got int
	for range 100 {
		req, _ := http.NewRequest(http.MethodGet, d.HTTP.URL+"/v1/audit/search?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+d.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Results []json.RawMessage `json:"results"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && err == nil {
			if got = len(page.Results); got == want {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("search %s: %d results, want %d", q, got, want)
}

// startDaemonFrom is startDaemon for a server opened with a custom Config.

// Two daemons, one log in MariaDB and one index in PostgreSQL: decides at
// both at once; every receipt from either verifies as served by the other
// (against the other's checkpoint), no index is assigned twice, and the
// audit search of either finds every decision.
func TestTwoDaemonsOneLog(t *testing.T) {
	_, logURL := testdb.MariaDB(t)
	indexDSN := testdb.Postgres(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	open := func(dir string) *testDaemon {
		return openDaemon(t, daemon.Config{DataDir: dir, CheckpointInterval: time.Second, Index: indexDSN, Log: logURL})
	}
	a := open(dirA)
	// One checkpoint signer identity: B gets A's log key before it starts.
	for _, f := range []string{"keys/log.key", "keys/log.pub"} {
		raw, err := os.ReadFile(filepath.Join(dirA, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dirB, f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, f), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := open(dirB)

	const perDaemon = 6
	type issued struct {
		by *testDaemon
		rc decision.Receipt
	}
	results := make(chan issued, 2*perDaemon)
	var wg sync.WaitGroup
	for _, d := range []*testDaemon{a, b} {
		for i := range perDaemon {
			wg.Go(func() {
				body := allowedDeploy
				if i%2 == 1 {
					body = deniedDeploy
				}
				code, raw := d.Post("/v1/decide", d.Key, []byte(body))
				if code != http.StatusOK {
					t.Errorf("decide: %d %s", code, raw)
					return
				}
				var rc decision.Receipt
				if err := json.Unmarshal(raw, &rc); err != nil {
					t.Error(err)
					return
				}
				results <- issued{d, rc}
			})
		}
	}
	wg.Wait()
	close(results)
	seen := map[int64]string{}
	var all []issued
	for r := range results {
		if prev, dup := seen[r.rc.LogIndex]; dup {
			t.Errorf("log index %d assigned twice (%s and %s)", r.rc.LogIndex, prev, r.rc.DecisionID)
		}
		seen[r.rc.LogIndex] = r.rc.DecisionID
		all = append(all, r)
	}
	if len(all) != 2*perDaemon {
		t.Fatalf("%d receipts, want %d", len(all), 2*perDaemon)
	}
	for _, r := range all {
		other := a
		if r.by == a {
			other = b
		}
		// The other daemon serves the receipt with a proof to its own
		// checkpoint; it verifies with the one log key.
		var got decision.Receipt
		for range 100 {
			code, raw := other.Get("/v1/decisions/" + r.rc.DecisionID + "?wait=checkpoint")
			if code == http.StatusOK {
				if err := json.Unmarshal(raw, &got); err != nil {
					t.Fatal(err)
				}
				if got.InclusionProof != nil {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got.LogIndex != r.rc.LogIndex || got.UUID != r.rc.UUID {
			t.Fatalf("the other daemon has %s at %d/%s, the issuer said %d/%s", r.rc.DecisionID, got.LogIndex, got.UUID, r.rc.LogIndex, r.rc.UUID)
		}
		if _, err := verify.Receipt(got, other.LogKey, r.by.SignerKey); err != nil {
			t.Errorf("receipt %d from one daemon does not verify as served by the other: %v", r.rc.LogIndex, err)
		}
	}
	// Both serve the same signed checkpoint stream.
	for _, d := range []*testDaemon{a, b} {
		code, raw := d.Get("/checkpoint")
		if code != http.StatusOK {
			t.Fatalf("/checkpoint: %d", code)
		}
		if _, err := verify.Checkpoint(raw, a.LogKey); err != nil {
			t.Errorf("checkpoint does not verify with the shared log key: %v", err)
		}
	}
	searchUntil(t, a, "kind=decision&limit=1000", 2*perDaemon)
	searchUntil(t, b, "kind=decision&limit=1000", 2*perDaemon)
	t.Logf("%d decisions at two daemons, indexes %v", len(all), seen)
}
