package monitor_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/record/receipt"
	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/monitor"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

// Follow a log holding only its public keys: every entry is re-hashed into
// the checkpoint's root and must name a signer key valid when it was logged. The log keeps its
// records private and the monitor has no read key, so the envelopes are
// counted as not checked (Envelopes{Checked: 0, Private: 3}).
func ExampleFollower_Step() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "monitor-example")
	defer os.RemoveAll(dir)
	logKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// The caller builds Tessera's driver: POSIX, on the log's tiles.
	driver, err := posix.New(ctx, posix.Config{Path: translog.TilesDir(dir)})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := translog.Open(ctx, translog.Config{Driver: driver, Dir: dir, Key: logKey, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close(ctx)
	signKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, _ := signature.LoadECDSASignerVerifier(signKey, crypto.SHA256)
	signer, _ := receipt.NewSigner(sv)
	pem, _ := cryptoutils.MarshalPublicKeyToPEM(signKey.Public())
	for i := range 3 {
		env, _ := signer.Sign(decision.Record{DecisionID: fmt.Sprint(i), Request: decision.Request{Action: "deploy"}})
		if _, err := l.Append(ctx, fmt.Sprint(i), env, pem); err != nil {
			fmt.Println(err)
			return
		}
	}
	if _, err := l.InclusionProof(ctx, 2, true); err != nil { // wait for a checkpoint
		fmt.Println(err)
		return
	}

	mux := http.NewServeMux()
	mux.Handle("/", l.TilesHandler())
	mux.Handle("/api/v1/", rekorapi.Handler(l, rekorapi.Options{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// The auditor's pinned keys: the log's, and the daemon's signing key set.
	v, err := verify.New(logKey.Public(), verify.WithSignerKey(signKey.Public()))
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := monitor.New(monitor.Config{Server: srv.URL, Verifier: v})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = f.Start(ctx, nil)
	rep, err := f.Step(ctx)
	fmt.Println(rep.Size, rep.NewEntries, rep.Envelopes, err)
	// Output: 3 3 {0 3} <nil>
}
