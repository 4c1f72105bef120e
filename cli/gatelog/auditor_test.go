package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditorBuildHasNoPolicyEngine: `go build -tags auditor` (make
// auditor) is gatelog without the daemon, the adapters and the policy
// tools — no OPA and nothing of engine/ or daemon/ but the API's types —
// and it still verifies, follows logs and talks to a daemon.
func TestAuditorBuildHasNoPolicyEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "auditor", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps -tags auditor: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		switch {
		case strings.HasPrefix(d, "github.com/open-policy-agent/"),
			d == "github.com/gatelog/gatelog/engine",
			d == "github.com/gatelog/gatelog/daemon",
			strings.HasPrefix(d, "github.com/gatelog/gatelog/plugins/"):
			t.Errorf("the auditor's build depends on %s", d)
		}
	}
	if len(deps) < 50 {
		t.Fatalf("go list -deps gave %d packages:\n%s", len(deps), out)
	}
	bin := filepath.Join(t.TempDir(), "gatelog-auditor")
	if out, err := exec.Command("go", "build", "-tags", "auditor", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags auditor: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("gatelog-auditor --help: %v\n%s", err, help)
	}
	for _, cmd := range []string{"verify", "decide", "log", "monitor", "audit", "keys"} {
		if !strings.Contains(string(help), "\n   "+cmd+" ") {
			t.Errorf("the auditor's build lacks %q:\n%s", cmd, help)
		}
	}
	for _, cmd := range []string{"serve", "policy", "adapter"} {
		if strings.Contains(string(help), "\n   "+cmd+" ") {
			t.Errorf("the auditor's build has %q:\n%s", cmd, help)
		}
	}
}
