package daemon_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"iter"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/gatelog/gatelog/daemon"
	"github.com/gatelog/gatelog/daemon/api"
	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/record/decision"
	"github.com/gatelog/gatelog/translog/records"
	"github.com/gatelog/gatelog/translog/rekorapi"
	"github.com/gatelog/gatelog/translog/verify"
)

type replayedRecord struct {
	index  int64
	id     string
	action string
}

func collect(t *testing.T, seq func(func(records.Record, error) bool)) ([]replayedRecord, error) {
	t.Helper()
	var out []replayedRecord
	for lr, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, replayedRecord{lr.Index, lr.Record.DecisionID, lr.Record.Request.Action})
	}
	return out, nil
}

// The records replay reads, from a data directory or over the Rekor API,
// are the signed ones in the log, in order; a wrong key or a changed
// envelope stops the read.
func TestLoggedRecordsLocalAndRemote(t *testing.T) {
	ctx := context.Background()
	d := startWith(t, engine.Source{FS: fstest.MapFS{"decision.rego": {Data: []byte(testPolicy)}}}, &syncBuffer{})
	first := d.Decide(allowedDeploy)
	if _, err := d.Server.ReloadPolicy(ctx, engine.Source{FS: fstest.MapFS{"decision.rego": {Data: []byte(testPolicy + "\n# v2\n")}}, Origin: "test"}, "API"); err != nil {
		t.Fatal(err)
	}
	last := d.Decide(deniedDeploy)

	// Records are private: without a credential replay cannot read them,
	// and says why.
	anon, err := rekorapi.NewClient(d.HTTP.URL, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(d.LogKey, verify.WithSignerKey(d.SignerKey))
	if err != nil {
		t.Fatal(err)
	}
	seq, _, err := records.Remote(ctx, anon, v, 2, 4)
	if err == nil {
		_, err = collect(t, seq)
	}
	if !errors.Is(err, rekorapi.ErrRecordsPrivate) {
		t.Fatalf("remote records without a read key: %v, want ErrRecordsPrivate", err)
	}
	client, err := rekorapi.NewClient(d.HTTP.URL, http.DefaultClient, rekorapi.WithBearer(d.Key))
	if err != nil {
		t.Fatal(err)
	}
	remote, _, err := records.Remote(ctx, client, v, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	rgot, err := collect(t, remote)
	wantRemote := []replayedRecord{{2, "", daemon.PolicyUpdateAction}, {3, last.DecisionID, "deploy"}}
	if err == nil && len(rgot) == 2 {
		wantRemote[0].id = rgot[0].id // the policy.update record's own id
	}
	if err != nil || len(rgot) != 2 || rgot[0] != wantRemote[0] || rgot[1] != wantRemote[1] || rgot[0].id == "" {
		t.Fatalf("remote records %+v (%v), want %+v", rgot, err, wantRemote)
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := other.Public()
	for name, keys := range map[string][2]crypto.PublicKey{
		"wrong log key":    {otherKey, d.SignerKey},
		"wrong signer key": {d.LogKey, otherKey},
	} {
		kv, err := verify.New(keys[0], verify.WithSignerKey(keys[1]))
		if err != nil {
			t.Fatal(err)
		}
		seq, _, err := records.Remote(ctx, client, kv, 0, 1)
		if err == nil {
			_, err = collect(t, seq)
		}
		if !errors.Is(err, verify.ErrFailed) {
			t.Errorf("%s: %v, want a verification failure", name, err)
		}
	}

	// A running daemon holds its envelope store: read the data directory
	// once it has stopped.
	d.Stop()
	local, end, err := localRecords(t, ctx, d.Dir, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if end != last.LogIndex+1 {
		t.Errorf("local end %d, want %d", end, last.LogIndex+1)
	}
	got, err := collect(t, local)
	if err != nil {
		t.Fatal(err)
	}
	// Entry 0 is the policy the daemon started with.
	want := []replayedRecord{{0, "", daemon.PolicyUpdateAction}, {1, first.DecisionID, "deploy"}, wantRemote[0], wantRemote[1]}
	if len(got) == 4 {
		want[0].id = got[0].id
	}
	if len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("local records %+v, want %+v", got, want)
	}

	if _, _, err := localRecords(t, ctx, d.Dir, 5, 0); err == nil {
		t.Error("a range past the end of the log was accepted")
	}

	// Swap two stored envelopes: both are validly signed, but neither is
	// the one its log entry commits to, and the read says so.
	dir := filepath.Join(d.Dir, api.LogDir)
	leafOf := func(rc decision.Receipt) []byte { b, _ := hex.DecodeString(rc.UUID[16:]); return b }
	var envFirst, envLast []byte
	keep := func(dst *[]byte) func([]byte) []byte {
		return func(env []byte) []byte { *dst = env; return env }
	}
	if err := logtest.RewriteStoredEnvelope(dir, leafOf(first), keep(&envFirst)); err != nil {
		t.Fatal(err)
	}
	if err := logtest.RewriteStoredEnvelope(dir, leafOf(last), keep(&envLast)); err != nil {
		t.Fatal(err)
	}
	if err := logtest.RewriteStoredEnvelope(dir, leafOf(first), func([]byte) []byte { return envLast }); err != nil {
		t.Fatal(err)
	}
	if err := logtest.RewriteStoredEnvelope(dir, leafOf(last), func([]byte) []byte { return envFirst }); err != nil {
		t.Fatal(err)
	}
	seq, _, err = localRecords(t, ctx, d.Dir, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := collect(t, seq); err == nil || !strings.Contains(err.Error(), "not the one the log entry commits to") {
		t.Errorf("swapped envelopes: err %v", err)
	}
}

// localRecords reads a stopped daemon's records from its data directory,
// as gatelog policy replay --data does.
func localRecords(t *testing.T, ctx context.Context, dir string, from, to int64) (iter.Seq2[records.Record, error], int64, error) {
	t.Helper()
	logKey, signerKeys, err := api.DataDirKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return records.Local(ctx, filepath.Join(dir, api.LogDir), logKey, signerKeys, from, to)
}
