package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/gatelog/gatelog/daemon"
)

func TestLoadWebhooks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, perm os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), perm); err != nil {
			t.Fatal(err)
		}
	}
	write("gl-token", "glvt-token\n", 0o600)
	write("ok.json", `{"gitlab": {"token_file": "gl-token", "answer_within": "3s"}}`, 0o644)
	w, err := daemon.LoadWebhooks(filepath.Join(dir, "ok.json"))
	if err != nil || w.GitLab == nil || string(w.GitLab.Token) != "glvt-token" || w.GitLab.AnswerWithin.String() != "3s" || w.GitHub != nil {
		t.Fatalf("LoadWebhooks = %+v, %v", w, err)
	}
	write("open-token", "glvt-token\n", 0o644)
	write("empty", "\n", 0o600)
	for name, cfg := range map[string]string{
		"unknown field":      `{"gitlab": {"token_file": "gl-token", "token": "inline"}}`,
		"token readable":     `{"gitlab": {"token_file": "open-token"}}`,
		"token empty":        `{"gitlab": {"token_file": "empty"}}`,
		"token missing":      `{"gitlab": {"token_file": "nope"}}`,
		"no token file":      `{"gitlab": {}}`,
		"bad duration":       `{"gitlab": {"token_file": "gl-token", "answer_within": "soon"}}`,
		"github without key": `{"github": {"app_id": 1, "webhook_secret_file": "gl-token"}}`,
	} {
		write("bad.json", cfg, 0o644)
		if _, err := daemon.LoadWebhooks(filepath.Join(dir, "bad.json")); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "glvt-token") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

// A webhook needs its adapter endpoint: without it the daemon refuses to
// start rather than answer GitLab with something it would take as a yes.
func TestWebhookNeedsItsAdapter(t *testing.T) {
	_, err := daemon.Open(context.Background(), daemon.Config{
		DataDir:  t.TempDir(),
		Policies: fstest.MapFS{"decision.rego": {Data: []byte(testPolicy)}},
		Webhooks: daemon.Webhooks{GitLab: &daemon.GitLabWebhook{Token: []byte("t")}},
	})
	if err == nil || !strings.Contains(err.Error(), "--adapter gitlab") {
		t.Errorf("Open = %v, want an error naming --adapter gitlab", err)
	}
}
