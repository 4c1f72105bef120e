package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/engine/server"
	"github.com/gatelog/gatelog/translog/rekorapi"
)

type replayedRecord struct {
	index  int64
	id     string
	action string
}

func collect(t *testing.T, seq func(func(server.LoggedRecord, error) bool)) ([]replayedRecord, error) {
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
	first := d.decide(allowedDeploy)
	if _, err := d.srv.ReloadPolicy(ctx, engine.Source{FS: fstest.MapFS{"decision.rego": {Data: []byte(testPolicy + "\n# v2\n")}}, Origin: "test"}, "API"); err != nil {
		t.Fatal(err)
	}
	last := d.decide(deniedDeploy)

	local, end, err := server.LocalRecords(ctx, d.dir, 0, 0)
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
	want := []replayedRecord{{0, first.DecisionID, "deploy"}, {1, got[1].id, server.PolicyUpdateAction}, {2, last.DecisionID, "deploy"}}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("local records %+v, want %+v", got, want)
	}

	client, err := rekorapi.NewClient(d.http.URL, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	remote, _, err := server.RemoteRecords(ctx, client, d.logKey, []crypto.PublicKey{d.signKey}, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	rgot, err := collect(t, remote)
	if err != nil || len(rgot) != 2 || rgot[0] != want[1] || rgot[1] != want[2] {
		t.Fatalf("remote records %+v (%v), want %+v", rgot, err, want[1:])
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := other.Public()
	for name, keys := range map[string][2]crypto.PublicKey{
		"wrong log key":    {otherKey, d.signKey},
		"wrong signer key": {d.logKey, otherKey},
	} {
		seq, _, err := server.RemoteRecords(ctx, client, keys[0], []crypto.PublicKey{keys[1]}, 0, 1)
		if err == nil {
			_, err = collect(t, seq)
		}
		if err == nil {
			t.Errorf("%s: records accepted", name)
		}
	}

	if _, _, err := server.LocalRecords(ctx, d.dir, 5, 0); err == nil {
		t.Error("a range past the end of the log was accepted")
	}

	// Swap two stored envelopes: both are validly signed, but neither is
	// the one its log entry commits to, and the read says so.
	envs, _ := filepath.Glob(filepath.Join(d.dir, server.LogDir, "envelopes", "*", "*.json"))
	if len(envs) != 3 {
		t.Fatalf("%d stored envelopes, want 3", len(envs))
	}
	a, err := os.ReadFile(envs[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(envs[1])
	if err != nil {
		t.Fatal(err)
	}
	swapEnvelope := func(dst string, from, to []byte) {
		var fromRec, toRec map[string]any
		if err := json.Unmarshal(from, &fromRec); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(to, &toRec); err != nil {
			t.Fatal(err)
		}
		toRec["envelope"] = fromRec["envelope"]
		raw, _ := json.Marshal(toRec)
		if err := os.WriteFile(dst, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	swapEnvelope(envs[0], b, a)
	swapEnvelope(envs[1], a, b)
	seq, _, err := server.LocalRecords(ctx, d.dir, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := collect(t, seq); err == nil || !strings.Contains(err.Error(), "not the one the log entry commits to") {
		t.Errorf("swapped envelopes: err %v", err)
	}
}
