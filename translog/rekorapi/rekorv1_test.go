package rekorapi_test

import (
	"context"
	"crypto"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gatelog/gatelog/translog/rekorapi"
)

// The log restates its checkpoints in Rekor v1's form, which Rekor's own
// SignedCheckpoint parses and verifies with the log key, with the same tree
// head; it refuses anything it did not sign.
func TestRekorV1Checkpoint(t *testing.T) {
	tl := openLog(t, 2)
	other := openLog(t, 1)
	ctx := context.Background()
	c, err := rekorapi.NewClient(tl.srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	li, err := c.LogInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.RekorV1Checkpoint(ctx, []byte(li.SignedTreeHead))
	if err != nil {
		t.Fatal(err)
	}
	var sc util.SignedCheckpoint
	if err := sc.UnmarshalText(raw); err != nil {
		t.Fatalf("Rekor cannot parse %q: %v", raw, err)
	}
	v, err := signature.LoadVerifier(tl.logKey.Public(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Verify(v) {
		t.Fatalf("Rekor does not verify the signature of %q", raw)
	}
	var orig util.SignedCheckpoint
	if err := orig.UnmarshalText([]byte(li.SignedTreeHead)); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("gatelog.test - %s", li.TreeID); sc.Origin != want || sc.Size != orig.Size || string(sc.Hash) != string(orig.Hash) {
		t.Errorf("restated checkpoint %q: want origin %q, size %d and the same root", raw, want, orig.Size)
	}
	// sigstore-go v1.3.0 tells a Rekor v1 checkpoint by this pattern.
	if first, _, _ := strings.Cut(string(raw), "\n"); !regexp.MustCompile(`.* - [0-9]+$`).MatchString(first) {
		t.Errorf("origin line %q is not Rekor v1's", first)
	}

	tampered := []byte(li.SignedTreeHead)
	tampered[len(tampered)/2] ^= 0x01
	otherInfo, err := rekorapi.NewClient(other.srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ocp, err := otherInfo.LogInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"tampered":      tampered,
		"another log's": []byte(ocp.SignedTreeHead),
		"empty":         nil,
	} {
		if _, err := c.RekorV1Checkpoint(ctx, bad); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("%s checkpoint: err = %v, want a 400", name, err)
		}
	}
}
