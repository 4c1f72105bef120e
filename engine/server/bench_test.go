package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/engine/server"
	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/translog/verify"
)

// benchServer opens a daemon with the bundled policies on a fresh data
// directory (a real Tessera log and envelope store on disk).
func benchServer(b *testing.B) (*server.Server, string) {
	srv, _, key := benchServerDir(b)
	return srv, key
}

func benchServerDir(b *testing.B) (*server.Server, string, string) {
	b.Helper()
	dir := b.TempDir()
	srv, err := server.Open(context.Background(), server.Config{
		DataDir: dir, Policies: policies.FS(), RateLimit: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close(context.Background()) })
	key, err := os.ReadFile(filepath.Join(dir, server.BootstrapKeyFile))
	if err != nil {
		b.Fatal(err)
	}
	return srv, dir, strings.TrimSpace(string(key))
}

// benchRequest is the example production deploy, parsed and raw.
func benchRequest(b *testing.B) (decision.Request, []byte) {
	b.Helper()
	raw, err := os.ReadFile("../../examples/requests/deploy-prod.json")
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
	raw, err := os.ReadFile("../../examples/requests/deploy-prod.json")
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

// BenchmarkVerifyReceipt is offline receipt verification (verify.Receipt:
// the envelope signature, the summary fields, the entry body and UUID, the
// SET, the inclusion proof and the checkpoint signature) next to the floor
// it stands on: one ECDSA P-256 verification, of which a receipt needs three.
func BenchmarkVerifyReceipt(b *testing.B) {
	srv, dir, _ := benchServerDir(b)
	req, raw := benchRequest(b)
	rc, err := srv.Decide(context.Background(), req, decision.Caller{ID: "apikey:bench", Kind: "api_key"}, true)
	if err != nil {
		b.Fatal(err)
	}
	if rc.InclusionProof == nil {
		b.Fatal("no inclusion proof")
	}
	logKey, signKey := readPub(b, filepath.Join(dir, "keys/log.pub")), readPub(b, filepath.Join(dir, "keys/decision.pub"))
	b.Run("Receipt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := verify.Receipt(rc, logKey, signKey); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-P256-verify", func(b *testing.B) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		digest := sha256.Sum256(raw)
		sig, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if !ecdsa.VerifyASN1(&k.PublicKey, digest[:], sig) {
				b.Fatal("does not verify")
			}
		}
	})
}
