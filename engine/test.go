package engine

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions configures RunTests.
type TestOptions struct {
	// Coverage measures which policy lines the tests evaluate.
	Coverage bool
	// Trace records the evaluation of failing tests, as `opa test -v`
	// shows. Tracing is slow, so only the tests that failed are run again
	// with it.
	Trace bool
	// Timeout bounds each test (default 5s, as `opa test`).
	Timeout time.Duration
}

// TestReport is the outcome of a policy set's Rego tests.
type TestReport struct {
	// Results are in the order OPA ran them.
	Results []*tester.Result
	// Passed, Failed (a false or undefined test), Errored and Skipped count
	// Results.
	Passed, Failed, Errored, Skipped int
	// Coverage is set when TestOptions.Coverage was.
	Coverage *cover.Report
}

// OK reports whether every test ran and passed.
func (r *TestReport) OK() bool { return r.Failed == 0 && r.Errored == 0 && r.Skipped == 0 }

// Total is the number of tests.
func (r *TestReport) Total() int { return len(r.Results) }

// FailureSummary names the tests that did not pass, for a log line.
func (r *TestReport) FailureSummary() string {
	var bad []string
	for _, t := range r.Results {
		if !t.Pass() {
			bad = append(bad, t.Package+"."+t.Name)
		}
	}
	return fmt.Sprintf("%d of %d did not pass: %s", len(bad), r.Total(), strings.Join(bad, ", "))
}

// isTestFile reports whether a module only holds tests (OPA's convention).
func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// FileCoverage is one policy file's share of evaluated lines.
type FileCoverage struct {
	File       string
	Percent    float64
	NotCovered []cover.Range
}

// PolicyCoverage is the share of lines in the policy files (test files
// excluded) that the tests evaluated, overall and per file (sorted). It
// is 0 when coverage was not measured.
func (r *TestReport) PolicyCoverage() (float64, []FileCoverage) {
	if r.Coverage == nil {
		return 0, nil
	}
	var files []FileCoverage
	covered, notCovered := 0, 0
	for name, fr := range r.Coverage.Files {
		if isTestFile(name) {
			continue
		}
		covered += fr.CoveredLines
		notCovered += fr.NotCoveredLines
		files = append(files, FileCoverage{File: name, Percent: fr.Coverage, NotCovered: fr.NotCovered})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].File < files[j].File })
	if covered+notCovered == 0 {
		return 0, files
	}
	return 100 * float64(covered) / float64(covered+notCovered), files
}

// WriteTo prints the results as `opa test -v` does: each test with
// PASS/FAIL/ERROR, failure traces, and the PASS: n/m summary.
func (r *TestReport) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	ch := make(chan *tester.Result, len(r.Results))
	for _, t := range r.Results {
		ch <- t
	}
	close(ch)
	err := tester.PrettyReporter{Output: cw, Verbose: true, FailureLine: true}.Report(ch)
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// RunTests runs the Rego tests (rules named test_*) in fsys with OPA's
// tester, raising builtin errors as Decide does. The error is for policies
// that cannot be loaded or compiled; failing tests are in the report.
func RunTests(ctx context.Context, fsys fs.FS, opts TestOptions) (*TestReport, error) {
	res, err := loader.NewFileLoader().WithFS(fsys).Filtered([]string{"."}, func(_ string, info fs.FileInfo, _ int) bool {
		return !info.IsDir() && !policyFile(info.Name())
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	if len(res.Modules) == 0 {
		return nil, fmt.Errorf("%w: no .rego files found", ErrPolicy)
	}
	store, err := res.Store()
	if err != nil {
		return nil, fmt.Errorf("%w: loading data: %w", ErrPolicy, err)
	}
	modules := res.ParsedModules()
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	newRunner := func() *tester.Runner {
		return tester.NewRunner().
			SetStore(store).
			SetModules(modules).
			RaiseBuiltinErrors(true).
			CapturePrintOutput(true).
			SetTimeout(timeout)
	}
	run := func(r *tester.Runner) ([]*tester.Result, error) {
		var out []*tester.Result
		err := storage.Txn(ctx, store, storage.TransactionParams{}, func(txn storage.Transaction) error {
			ch, err := r.RunTests(ctx, txn)
			if err != nil {
				return err
			}
			for t := range ch {
				out = append(out, t)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%w: compiling policies and tests: %w", ErrPolicy, err)
		}
		return out, nil
	}
	runner := newRunner()
	var cov *cover.Cover
	if opts.Coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov).SetCoverageRuns(nil)
	}
	rep := &TestReport{}
	if rep.Results, err = run(runner); err != nil {
		return nil, err
	}
	if opts.Trace {
		if err := rep.traceFailures(newRunner().EnableTracing(true), run); err != nil {
			return nil, err
		}
	}
	for _, t := range rep.Results {
		switch {
		case t.Skip:
			rep.Skipped++
		case t.Error != nil:
			rep.Errored++
		case t.Fail:
			rep.Failed++
		default:
			rep.Passed++
		}
	}
	if cov != nil {
		report := cov.Report(modules)
		rep.Coverage = &report
	}
	return rep, nil
}

// traceFailures runs the tests that failed again, traced, and puts the
// traced results in their place.
func (r *TestReport) traceFailures(runner *tester.Runner, run func(*tester.Runner) ([]*tester.Result, error)) error {
	var names []string
	for _, t := range r.Results {
		if t.Fail {
			names = append(names, regexp.QuoteMeta(t.Package+"."+t.Name))
		}
	}
	if len(names) == 0 {
		return nil
	}
	traced, err := run(runner.Filter("^(" + strings.Join(names, "|") + ")$"))
	if err != nil {
		return err
	}
	byName := map[string]*tester.Result{}
	for _, t := range traced {
		byName[t.Package+"."+t.Name] = t
	}
	for i, t := range r.Results {
		if tt, ok := byName[t.Package+"."+t.Name]; ok && t.Fail {
			r.Results[i].Trace = tt.Trace
		}
	}
	return nil
}
