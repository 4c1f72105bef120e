package translog_test

import (
	"strings"
	"testing"

	"github.com/gatelog/gatelog/translog"
)

func FuzzParseSearchHash(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Add(strings.Repeat("AB", 32))
	f.Add("sha1:00")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := translog.ParseSearchHash(s)
		if err != nil {
			return
		}
		if len(h) != 64 || strings.ToLower(h) != h {
			t.Fatalf("ParseSearchHash(%q) = %q", s, h)
		}
	})
}
