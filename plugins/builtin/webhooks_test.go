package builtin_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/plugins/builtin"
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
	w, err := builtin.LoadWebhooks(filepath.Join(dir, "ok.json"))
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
		if _, err := builtin.LoadWebhooks(filepath.Join(dir, "bad.json")); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "glvt-token") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

func TestLoadWebhooksTektonTriggers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, perm os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), perm); err != nil {
			t.Fatal(err)
		}
	}
	write("gh", "It's a Secret to Everybody"+"\n", 0o600)
	write("open", "secret\n", 0o644)
	write("ok.json", `{"tekton_triggers": {"replay_window": "72h", "sources": [{"name": "github", "provider": "github", "secret_file": "gh", "namespaces": ["ci"], "mfa_setting": "github.org_2fa_required:acme"}]}}`, 0o644)
	w, err := builtin.LoadWebhooks(filepath.Join(dir, "ok.json"))
	if err != nil || w.TektonTriggers == nil || len(w.TektonTriggers.Sources) != 1 || w.TektonTriggers.ReplayWindow != 72*time.Hour {
		t.Fatalf("LoadWebhooks = %+v, %v", w, err)
	}
	src := w.TektonTriggers.Sources[0]
	if src.Name != "github" || src.Provider != "github" || string(src.Secret) != "It's a Secret to Everybody" || len(src.Namespaces) != 1 || src.MFASetting != "github.org_2fa_required:acme" || w.GitHub != nil || w.GitLab != nil {
		t.Errorf("source = %+v", src)
	}
	for name, cfg := range map[string]string{
		"secret readable by others": `{"tekton_triggers": {"sources": [{"name": "g", "provider": "github", "secret_file": "open"}]}}`,
		"no secret file":            `{"tekton_triggers": {"sources": [{"name": "g", "provider": "github"}]}}`,
		"inline secret":             `{"tekton_triggers": {"sources": [{"name": "g", "provider": "github", "secret": "s"}]}}`,
		"unknown provider":          `{"tekton_triggers": {"sources": [{"name": "g", "provider": "gitea", "secret_file": "gh"}]}}`,
		"no sources":                `{"tekton_triggers": {}}`,
		"bad replay window":         `{"tekton_triggers": {"replay_window": "a day", "sources": [{"name": "g", "provider": "github", "secret_file": "gh"}]}}`,
	} {
		write("bad.json", cfg, 0o644)
		if _, err := builtin.LoadWebhooks(filepath.Join(dir, "bad.json")); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
