package policy_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gatelog/gatelog/policies"
)

// BenchmarkLibrary evaluates data.gatelog.decision with the frozen and the
// current library on each example request of the README (policies/data.yaml)
// and of the Acme walkthrough (examples/policies/acme.yaml), input parsed
// once as the engine does:
//
//	go test -run '^$' -bench Library -benchmem ./bench/policy/
//
// compare.sh measures the same with the stock `opa bench`.
func BenchmarkLibrary(b *testing.B) {
	t := b
	cfgs := map[string]map[string]any{}
	for _, c := range configs(t) {
		cfgs[c.name] = c.data
	}
	libs := []struct {
		name string
		mods map[string]*ast.Module
	}{
		{"baseline", modules(t, os.DirFS(baselineDir))},
		{"current", modules(t, policies.FS())},
	}
	sets := []struct{ glob, config string }{
		{"../../examples/requests/*.json", "data.yaml"},
		{"../../examples/policies/requests/*.json", "acme.yaml"},
	}
	for _, set := range sets {
		files, err := filepath.Glob(set.glob)
		if err != nil || len(files) == 0 {
			b.Fatalf("%s: %v", set.glob, err)
		}
		for _, lib := range libs {
			q := prepare(t, lib.mods, cfgs[set.config])
			for _, f := range files {
				raw, err := os.ReadFile(f)
				if err != nil {
					b.Fatal(err)
				}
				input, err := ast.ValueFromReader(bytes.NewReader(raw))
				if err != nil {
					b.Fatal(err)
				}
				b.Run(lib.name+"/"+filepath.Base(f), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := q.Eval(context.Background(), rego.EvalParsedInput(input)); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
