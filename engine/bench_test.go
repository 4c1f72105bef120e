package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/policies"
	"github.com/gatelog/gatelog/record/decision"
)

// BenchmarkDecide evaluates the bundled policies on each example request.
func BenchmarkDecide(b *testing.B) {
	e, err := engine.New(context.Background(), policies.FS())
	if err != nil {
		b.Fatal(err)
	}
	files, _ := filepath.Glob("../examples/requests/*.json")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		req, err := decision.ParseRequest(raw)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(filepath.Base(f), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Decide(context.Background(), req)
			}
		})
	}
}

func BenchmarkDecideParallel(b *testing.B) {
	e, err := engine.New(context.Background(), policies.FS())
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile("../examples/requests/deploy-prod.json")
	if err != nil {
		b.Fatal(err)
	}
	req, err := decision.ParseRequest(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Decide(context.Background(), req)
		}
	})
}
