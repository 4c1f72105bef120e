package builtin_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gatelog/gatelog/plugins/builtin"
)

// The webhooks config names the files its secrets are in; LoadWebhooks
// reads them (owner-only files) and gives the hooks for the daemon.
func ExampleLoadWebhooks() {
	dir, _ := os.MkdirTemp("", "webhooks")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "gitlab-token"), []byte("glvt-example\n"), 0o600)
	cfg := filepath.Join(dir, "webhooks.json")
	_ = os.WriteFile(cfg, []byte(`{"gitlab": {"token_file": "gitlab-token", "answer_within": "3s"}}`), 0o600)

	w, err := builtin.LoadWebhooks(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("gitlab answers within", w.GitLab.AnswerWithin)
	fmt.Println("hooks for daemon.Config.Webhooks:", len(w.Openers()))
	// Output:
	// gitlab answers within 3s
	// hooks for daemon.Config.Webhooks: 1
}
