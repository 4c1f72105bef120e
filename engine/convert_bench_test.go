package engine

import (
	"os"
	"testing"

	"github.com/gatelog/gatelog/record/decision"
)

// BenchmarkInputValue is the input build of one decision on the README's
// production deploy (issue #24):
//
//	go test -run '^$' -bench InputValue -benchmem ./engine/
func BenchmarkInputValue(b *testing.B) {
	raw, err := os.ReadFile("../examples/requests/deploy-prod.json")
	if err != nil {
		b.Fatal(err)
	}
	req, err := decision.ParseRequest(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inputValue(req); err != nil {
			b.Fatal(err)
		}
	}
}
