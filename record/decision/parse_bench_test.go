package decision_test

import (
	"os"
	"testing"

	"github.com/gatelog/gatelog/record/decision"
)

// BenchmarkParseRequest parses the example production deploy, as the
// daemon parses every /v1/decide body.
func BenchmarkParseRequest(b *testing.B) {
	raw, err := os.ReadFile("../../examples/requests/deploy-prod.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decision.ParseRequest(raw); err != nil {
			b.Fatal(err)
		}
	}
}
