package builtin_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gatelog/gatelog/plugins/builtin"
)

// FuzzLoadWebhooks: the webhooks config is read at start from a file the
// operator writes; whatever it holds is refused with an error or loaded,
// never a panic, and a loaded secret is never empty.
func FuzzLoadWebhooks(f *testing.F) {
	f.Add([]byte(`{"github":{"app_id":1,"webhook_secret_file":"s","private_key_file":"s","api_url":"https://api.github.com","delivery_retention":"72h"}}`))
	f.Add([]byte(`{"gitlab":{"adapter":"gitlab","token_file":"s","answer_within":"4s"}}`))
	f.Add([]byte(`{"gitlab":{"token_file":"../s"},"github":null}`))
	f.Add([]byte(`{"gitlab":{"token_file":"s","answer_within":"-1s"}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "s"), []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "webhooks.json")
		if err := os.WriteFile(cfg, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := builtin.LoadWebhooks(cfg)
		if err != nil {
			return
		}
		if w.GitHub != nil && len(w.GitHub.Secret) == 0 || w.GitLab != nil && len(w.GitLab.Token) == 0 {
			t.Fatalf("loaded an empty secret from %s", raw)
		}
	})
}
