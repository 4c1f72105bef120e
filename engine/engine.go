// Package engine evaluates gatelog Requests against Rego policies with an
// embedded OPA. Policies are compiled once into a prepared query on
// data.gatelog.decision; Decide evaluates it per request. A reload compiles
// the new policies first and swaps them in atomically only when that works,
// so a broken policy never replaces a working one.
//
// Every decision names the policy that made it: the SHA-256 over the sorted
// policy files (see Digest) and, for bundles, the bundle revision.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/version"

	"github.com/gatelog/gatelog/record/decision"
)

// Entrypoint is the rule every policy set must define.
const Entrypoint = "data.gatelog.decision"

// ErrPolicy marks policies that cannot be loaded or compiled.
var ErrPolicy = errors.New("policy error")

// Engine evaluates requests. It is safe for concurrent use; Reload may run
// while Decide calls are in flight.
type Engine struct {
	cur atomic.Pointer[compiled]
}

type compiled struct {
	query  rego.PreparedEvalQuery
	policy decision.Policy
	// modules are the parsed policy modules, for Profile to name the rule
	// an expression belongs to.
	modules map[string]*ast.Module
}

// New compiles the policies (Rego modules and JSON/YAML data files) found in
// fsys and prepares the decision query.
func New(ctx context.Context, fsys fs.FS) (*Engine, error) {
	c, err := compile(ctx, fsys)
	if err != nil {
		return nil, err
	}
	e := &Engine{}
	e.cur.Store(c)
	return e, nil
}

// Reload compiles the policies in fsys and, only if that succeeds, swaps
// them in. On error the running policies stay in place.
func (e *Engine) Reload(ctx context.Context, fsys fs.FS) (old, new decision.Policy, err error) {
	c, err := compile(ctx, fsys)
	if err != nil {
		return e.Policy(), e.Policy(), err
	}
	prev := e.cur.Swap(c)
	return prev.policy, c.policy, nil
}

// Policy identifies the policies currently in force.
func (e *Engine) Policy() decision.Policy { return e.cur.Load().policy }

// Decide evaluates req. It never returns an allow on failure: an undefined
// result, a malformed result or an evaluation error yield a deny whose
// reasons say why. The returned Policy is the one that decided.
func (e *Engine) Decide(ctx context.Context, req decision.Request) (decision.Decision, decision.Policy) {
	c := e.cur.Load()
	return evaluate(ctx, c.query, req), c.policy
}

// evaluate is Decide on one prepared query, with extra evaluation options
// (Explain's tracer). The input is built as an AST value and the result
// read in place: no JSON text on the way in or out (see convert.go).
func evaluate(ctx context.Context, q rego.PreparedEvalQuery, req decision.Request, opts ...rego.EvalOption) decision.Decision {
	input, err := inputValue(req)
	if err != nil {
		return deny("request could not be converted for the policy: " + err.Error())
	}
	// OPA's no-op metrics: without them every evaluation allocates a
	// metrics registry nobody reads.
	opts = append([]rego.EvalOption{rego.EvalMetrics(metrics.NoOp())}, opts...)
	rs, err := q.Eval(ctx, append(opts, rego.EvalParsedInput(input))...)
	if err != nil {
		return deny("policy evaluation failed: " + err.Error())
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return deny("policy result is undefined: " + Entrypoint + " produced no value")
	}
	d, err := decisionFrom(rs[0].Expressions[0].Value)
	if err != nil {
		return deny("policy result is malformed: " + err.Error())
	}
	return d
}

func deny(reason string) decision.Decision {
	return decision.Decision{Allow: false, Reasons: []string{reason}}
}

// policyFile reports whether OPA loads the file as policy or data.
func policyFile(name string) bool {
	switch path.Ext(name) {
	case ".rego", ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// Digest is the policy identity: SHA-256 over the lines
// "<hex sha256 of file>  <path>\n" for every policy file (.rego, .json,
// .yaml, .yml) in fsys, sorted by path. It equals
//
//	find . -type f \( -name '*.rego' -o -name '*.json' -o -name '*.yaml' -o -name '*.yml' \) \
//	  | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum
//
// run in the policy directory, so anyone can check which files decided.
func Digest(fsys fs.FS) (string, error) {
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && policyFile(p) {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(h, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func compile(ctx context.Context, fsys fs.FS) (*compiled, error) {
	digest, err := Digest(fsys)
	if err != nil {
		return nil, fmt.Errorf("%w: reading policy files: %w", ErrPolicy, err)
	}
	res, err := loader.NewFileLoader().WithFS(fsys).Filtered([]string{"."}, func(abspath string, info fs.FileInfo, depth int) bool {
		return !info.IsDir() && !policyFile(info.Name())
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	if len(res.Modules) == 0 {
		return nil, fmt.Errorf("%w: no .rego files found", ErrPolicy)
	}
	// The store keeps data as AST values: a policy reading its
	// configuration gets it without a conversion from Go values on every
	// decision (about 150 allocations of the bundled library's ~1,200).
	store, err := res.StoreWithOpts(inmem.OptReturnASTValuesOnRead(true))
	if err != nil {
		return nil, fmt.Errorf("%w: loading data: %w", ErrPolicy, err)
	}
	opts := []func(*rego.Rego){
		rego.Query(Entrypoint),
		rego.Store(store),
		rego.StrictBuiltinErrors(true),
	}
	modules := res.ParsedModules()
	for _, m := range modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	return &compiled{
		query:   pq,
		modules: modules,
		policy: decision.Policy{
			SHA256:     digest,
			Entrypoint: Entrypoint,
			OPAVersion: version.Version,
		},
	}, nil
}
