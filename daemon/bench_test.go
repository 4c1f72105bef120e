package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/record/decision"
)

// benchServer opens a daemon with the bundled policies on a fresh data
// directory (a real Tessera log and envelope store on disk).
func benchServer(b *testing.B) (*daemon.Server, string) {
	b.Helper()
	dir := b.TempDir()
	srv, err := daemon.Open(context.Background(), daemon.Config{
		DataDir: dir, Policies: policies.FS(), RateLimit: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close(context.Background()) })
	key, err := os.ReadFile(filepath.Join(dir, daemon.BootstrapKeyFile))
	if err != nil {
		b.Fatal(err)
	}
	return srv, strings.TrimSpace(string(key))
}

// benchRequest is the example production deploy, parsed and raw.
func benchRequest(b *testing.B) (decision.Request, []byte) {
	b.Helper()
	raw, err := os.ReadFile("../examples/requests/deploy-prod.json")
	if err != nil {
		b.Fatal(err)
	}
	req, err := decision.ParseRequest(raw)
	if err != nil {
		b.Fatal(err)
	}
	return req, raw
}

// BenchmarkDecide is one decision (evaluate, sign, durably append) through
// Server.Decide, from 16 goroutines: the daemon's cost without HTTP.
func BenchmarkDecide(b *testing.B) {
	srv, _ := benchServer(b)
	req, _ := benchRequest(b)
	caller := decision.Caller{ID: "apikey:bench", Kind: "api_key"}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := srv.Decide(context.Background(), req, caller, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDecideHTTP is the same through POST /v1/decide (client included).
func BenchmarkDecideHTTP(b *testing.B) {
	srv, key := benchServer(b)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	raw, err := os.ReadFile("../examples/requests/deploy-prod.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/decide", bytes.NewReader(raw))
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("HTTP %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkDecideHandler is one decision through the daemon's HTTP handler
// (no client, no sockets), from 16 goroutines: authentication, body and
// JSON, evaluation, signing, the durable append and the reply. B/op and
// allocs/op count every goroutine of the process — the log's commit loop
// and applier, Tessera's integration and the audit index follower too — so
// they are what one decision costs the garbage collector; the B/decision
// metric says the same after the last decision's background work has run.
func BenchmarkDecideHandler(b *testing.B) {
	srv, key := benchServer(b)
	h := srv.Handler()
	_, raw := benchRequest(b)
	auth := "Bearer " + key
	serve := func() error {
		req := httptest.NewRequest(http.MethodPost, "/v1/decide", bytes.NewReader(raw))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("HTTP %d: %s", rec.Code, rec.Body.Bytes())
		}
		return nil
	}
	// Warm up: the first decisions compile caches and start Tessera's
	// first bundle.
	for range 64 {
		if err := serve(); err != nil {
			b.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := serve(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	// Let the applier and Tessera's integration catch up with the last
	// decisions, so their share is counted for every one.
	time.Sleep(300 * time.Millisecond)
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N), "B/decision")
}
