// Package policies is gatelog's bundled policy library: the Rego package
// gatelog, whose entrypoint data.gatelog.decision answers every request, its
// default configuration (data.yaml, seen by policies as data.gatelog_config)
// and the Rego tests that specify it.
//
// The same files are what `opa test policies/` and `opa check --strict
// policies/` read, so the library can be checked with the stock OPA CLI.
package policies

import (
	"embed"
	"io/fs"
)

// files holds every Rego module, test modules included: OPA evaluates only
// the rules a query reaches, so tests cost nothing at decision time and
// `gatelog policy test` can run them from the binary.
//
//go:embed *.rego data.yaml
var files embed.FS

// FS returns the policy library as a file system rooted at the policy
// directory: the .rego files and data.yaml at the top level.
func FS() fs.FS { return files }
