package rekorapi_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

// Serve a log's Rekor v1 API and read its log info, as rekor-cli loginfo does.
func ExampleHandler() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "rekorapi-example")
	defer os.RemoveAll(dir)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// The caller builds Tessera's driver: POSIX, on the log's tiles.
	driver, err := posix.New(ctx, posix.Config{Path: translog.TilesDir(dir)})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := translog.Open(ctx, translog.Config{Driver: driver, Dir: dir, Key: key, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close(ctx)

	srv := httptest.NewServer(rekorapi.Handler(l, rekorapi.Options{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/log")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var info rekorapi.LogInfo
	_ = json.NewDecoder(resp.Body).Decode(&info)
	fmt.Println(resp.Header.Get("Content-Type"), "tree size", info.TreeSize, "tree ID matches:", info.TreeID == fmt.Sprint(l.TreeID()))
	// Output: application/json tree size 0 tree ID matches: true
}

// Serve a log whose records are private: anyone reads an entry's leaf,
// proof and SET; only a caller the access rule lets see records gets the
// envelope. A Client says which it got.
func ExampleOptions() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "rekorapi-example")
	defer os.RemoveAll(dir)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// The caller builds Tessera's driver: POSIX, on the log's tiles.
	driver, err := posix.New(ctx, posix.Config{Path: translog.TilesDir(dir)})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := translog.Open(ctx, translog.Config{Driver: driver, Dir: dir, Key: key, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close(ctx)
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sv, _ := signature.LoadECDSASignerVerifier(signer, crypto.SHA256)
	pem, _ := cryptoutils.MarshalPublicKeyToPEM(signer.Public())
	env, _ := sigdsse.WrapSigner(sv, "application/vnd.in-toto+json").SignMessage(strings.NewReader(`{"subject":"alice"}`))
	if _, err := l.Append(ctx, "decision-1", env, pem); err != nil {
		fmt.Println(err)
		return
	}

	// The daemon's rule authenticates the credential and checks the read
	// permission; this one knows a single key.
	access := func(w http.ResponseWriter, r *http.Request) rekorapi.View {
		switch r.Header.Get("Authorization") {
		case "":
			return rekorapi.Leaf
		case "Bearer read-key":
			return rekorapi.Full
		}
		http.Error(w, `{"code":401,"message":"unknown key"}`, http.StatusUnauthorized)
		return rekorapi.Refused
	}
	srv := httptest.NewServer(rekorapi.Handler(l, rekorapi.Options{Access: access}))
	defer srv.Close()

	for _, bearer := range []string{"", "read-key", "wrong"} {
		c, _ := rekorapi.NewClient(srv.URL, nil, rekorapi.WithBearer(bearer))
		_, e, err := c.EntryByIndex(ctx, 0)
		if err != nil {
			fmt.Printf("%q: %v\n", bearer, errors.As(err, new(*rekorapi.HTTPError)))
			continue
		}
		_, err = c.Envelope(e)
		fmt.Printf("%q: leaf %v, records private %v, envelope %v\n", bearer, e.Body != "", errors.Is(err, rekorapi.ErrRecordsPrivate), err == nil)
	}
	// Output:
	// "": leaf true, records private true, envelope false
	// "read-key": leaf true, records private false, envelope true
	// "wrong": true
}
