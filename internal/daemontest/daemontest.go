// Package daemontest starts a real daemon in the test's own process:
// daemon.Open on a temporary data directory, served by an httptest server,
// with its bootstrap API key and public keys at hand, closed when the test
// ends. It is the one way tests open an in-process daemon; tests of the
// built binary use internal/e2e.
//
// It is a helper for tests (it takes a *testing.T) and is imported by no
// production code.
package daemontest

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/record/decision"
)

// Daemon is an opened daemon served over HTTP.
type Daemon struct {
	// Dir is the data directory.
	Dir    string
	Server *daemon.Server
	// HTTP serves Server.Handler; its URL is the daemon's.
	HTTP *httptest.Server
	// Key is the bootstrap API key (all permissions), if the daemon made
	// one.
	Key string
	// LogKey and SignerKey are the log's and the decision signer's public
	// keys, as an auditor has them.
	LogKey, SignerKey crypto.PublicKey

	t testing.TB
}

// Open opens a daemon with cfg (a 100ms checkpoint interval unless cfg says
// otherwise; DataDir, when empty, a new temporary directory) and serves it.
func Open(t testing.TB, cfg daemon.Config) *Daemon {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 100 * time.Millisecond
	}
	srv, err := daemon.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, cfg.DataDir, srv)
}

// Serve serves a daemon opened on dir over HTTP until the test ends (or
// Stop).
func Serve(t testing.TB, dir string, srv *daemon.Server) *Daemon {
	t.Helper()
	d := &Daemon{t: t, Dir: dir, Server: srv, HTTP: httptest.NewServer(srv.Handler())}
	t.Cleanup(d.Stop)
	if key, err := os.ReadFile(filepath.Join(dir, daemon.BootstrapKeyFile)); err == nil {
		d.Key = strings.TrimSpace(string(key))
	}
	d.LogKey = PublicKey(t, filepath.Join(dir, "keys", "log.pub"))
	d.SignerKey = PublicKey(t, filepath.Join(dir, "keys", "decision.pub"))
	return d
}

// URL is the daemon's base URL.
func (d *Daemon) URL() string { return d.HTTP.URL }

// Stop stops serving and closes the daemon; a failing Close fails the
// test. Calling it again does nothing.
func (d *Daemon) Stop() {
	if d.HTTP == nil {
		return
	}
	d.HTTP.Close()
	if err := d.Server.Close(context.Background()); err != nil {
		d.t.Errorf("close: %v", err)
	}
	d.HTTP = nil
}

// Post sends body to path with the bearer key auth (none when empty) and
// returns the status and body.
func (d *Daemon) Post(path, auth string, body []byte) (int, []byte) {
	d.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.HTTP.URL+path, bytes.NewReader(body))
	return d.do(req, auth)
}

// Get reads path with the bootstrap key.
func (d *Daemon) Get(path string) (int, []byte) {
	d.t.Helper()
	return d.GetAs(path, d.Key)
}

// GetAs reads path with the bearer key auth (none when empty).
func (d *Daemon) GetAs(path, auth string) (int, []byte) {
	d.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.HTTP.URL+path, nil)
	return d.do(req, auth)
}

func (d *Daemon) do(req *http.Request, auth string) (int, []byte) {
	d.t.Helper()
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Decide posts a request body to /v1/decide?wait=checkpoint with the
// bootstrap key and returns the receipt, which must carry its inclusion
// proof.
func (d *Daemon) Decide(body string) decision.Receipt {
	d.t.Helper()
	code, raw := d.Post("/v1/decide?wait=checkpoint", d.Key, []byte(body))
	if code != http.StatusOK {
		d.t.Fatalf("decide: %d %s", code, raw)
	}
	var rc decision.Receipt
	if err := json.Unmarshal(raw, &rc); err != nil {
		d.t.Fatal(err)
	}
	if rc.InclusionProof == nil {
		d.t.Fatalf("no inclusion proof in %s", raw)
	}
	return rc
}

// PublicKey reads a PEM public key file.
func PublicKey(t testing.TB, path string) crypto.PublicKey {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := cryptoutils.UnmarshalPEMToPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
