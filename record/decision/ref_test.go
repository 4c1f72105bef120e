package decision_test

import (
	"fmt"
	"testing"

	"github.com/gatelog/gatelog/record/decision"
)

func TestNormalizeRef(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"  ", ""},
		{"refs/heads/main", "refs/heads/main"},
		{"refs/tags/v1.2.0", "refs/tags/v1.2.0"},
		{"refs/merge-requests/7/head", "refs/merge-requests/7/head"},
		{"refs/pull/12/merge", "refs/pull/12/merge"},
		{"main", "refs/heads/main"},
		{" main\n", "refs/heads/main"},
		{"release/2026.12", "refs/heads/release/2026.12"},
		{"origin/main", "refs/heads/main"},
		{"origin/feature/x", "refs/heads/feature/x"},
		{"remotes/origin/main", "refs/heads/main"},
		{"remotes/upstream/release/1", "refs/heads/release/1"},
		{"heads/main", "refs/heads/main"},
		{"tags/v1", "refs/tags/v1"},
		{"origin", "refs/heads/origin"},
		{"origin/", "refs/heads/origin/"},
		{"9fceb02d0ae598e95dc970b74767f19372d61af8", "9fceb02d0ae598e95dc970b74767f19372d61af8"},
		{"9fceb02", "refs/heads/9fceb02"},
	} {
		if got := decision.NormalizeRef(tc.in); got != tc.want {
			t.Errorf("NormalizeRef(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzNormalizeRef(f *testing.F) {
	for _, s := range []string{"main", "origin/main", "refs/heads/x", "remotes/a/b", "tags/v1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		once := decision.NormalizeRef(s)
		if twice := decision.NormalizeRef(once); twice != once {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, once, twice)
		}
	})
}

func ExampleNormalizeRef() {
	for _, ref := range []string{"main", "origin/main", "refs/tags/v1.0.0"} {
		fmt.Println(decision.NormalizeRef(ref))
	}
	// Output:
	// refs/heads/main
	// refs/heads/main
	// refs/tags/v1.0.0
}
