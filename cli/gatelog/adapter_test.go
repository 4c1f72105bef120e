package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/gatelog/gatelog/plugins/builtin"
	"github.com/gatelog/gatelog/record/decision"
)

func runAdapter(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := &cli.App{Name: "gatelog", Writer: &out, Commands: []*cli.Command{adapterCommand()}, ExitErrHandler: func(*cli.Context, error) {}}
	err := app.Run(append([]string{"gatelog", "adapter"}, args...))
	return out.String(), err
}

func TestAdapterList(t *testing.T) {
	out, err := runAdapter(t, "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct{ Name string }
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != len(builtin.Names()) {
		t.Fatalf("list --json = %s (%v)", out, err)
	}
}

func TestAdapterTranslate(t *testing.T) {
	out, err := runAdapter(t, "translate", "--input", "../../plugins/tekton/testdata/pipelinerun-git-resolver-production-developer.payload.json", "--setting", "namespace_environments=payments=prod", "tekton")
	if err != nil {
		t.Fatal(err)
	}
	req, err := decision.ParseRequest([]byte(out))
	if err != nil {
		t.Fatalf("translate printed %s: %v", out, err)
	}
	if req.Resource.Environment != "prod" || req.Subject.ID != "bob@example.com" {
		t.Errorf("request = %+v", req)
	}
}

func TestAdapterChecksum(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(path, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runAdapter(t, "checksum", path)
	if err != nil || strings.TrimSpace(out) != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("checksum = %q, %v", out, err)
	}
}

func TestAdapterServeByHandRefuses(t *testing.T) {
	if _, err := runAdapter(t, "serve", "tekton"); err == nil || !strings.Contains(err.Error(), "started by the gatelog daemon") {
		t.Errorf("serve = %v", err)
	}
}
