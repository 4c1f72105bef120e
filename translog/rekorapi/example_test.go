package rekorapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/gatelog/gatelog/translog"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

// Serve a log's Rekor v1 API and read its log info, as rekor-cli loginfo does.
func ExampleHandler() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "rekorapi-example")
	defer os.RemoveAll(dir)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	l, err := translog.Open(ctx, translog.Config{Dir: dir, Key: key, CheckpointInterval: 100 * time.Millisecond})
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
