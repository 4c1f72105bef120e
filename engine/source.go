package engine

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing/fstest"

	"github.com/gatelog/gatelog/record/decision"
)

// Source is a policy set ready to compile: its files and where they came
// from. Build one with LoadDir, LoadBundle or Embedded.
type Source struct {
	// FS holds the policy files (.rego modules, JSON/YAML data) at its root.
	FS fs.FS
	// Revision is the bundle manifest's revision; empty for directories.
	Revision string
	// Origin says, for people, where the files came from ("directory
	// policies/", "bundle https://…"). It never carries credentials.
	Origin string
}

// Embedded wraps a policy tree compiled into the binary (policies.FS()).
func Embedded(fsys fs.FS) Source {
	return Source{FS: fsys, Origin: "embedded library"}
}

// LoadDir reads the policy files under dir into memory, so that the digest
// and the compiled policy are made from the same bytes even while an
// editor is writing to the directory.
func LoadDir(dir string) (Source, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return Source{}, fmt.Errorf("%w: policy directory: %w", ErrPolicy, err)
	}
	if !fi.IsDir() {
		return Source{}, fmt.Errorf("%w: policy directory %s is not a directory", ErrPolicy, dir)
	}
	snap, err := snapshot(os.DirFS(dir))
	if err != nil {
		return Source{}, fmt.Errorf("%w: reading %s: %w", ErrPolicy, dir, err)
	}
	return Source{FS: snap, Origin: "directory " + dir}, nil
}

// snapshot copies the policy files of fsys into memory.
func snapshot(fsys fs.FS) (fstest.MapFS, error) {
	m := fstest.MapFS{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !policyFile(p) {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		m[p] = &fstest.MapFile{Data: b, Mode: 0o444}
		return nil
	})
	return m, err
}

// NewFromSource compiles src like New and records its revision in the
// policy identity of every decision.
func NewFromSource(ctx context.Context, src Source) (*Engine, error) {
	p, err := Prepare(ctx, src, false)
	if err != nil {
		return nil, err
	}
	e := &Engine{}
	e.cur.Store(p.c)
	return e, nil
}

// Prepared is a compiled policy set that passed its checks and can be
// swapped into an Engine.
type Prepared struct {
	c *compiled
	// Tests is the outcome of the policy's Rego tests (nil if not run).
	Tests *TestReport
}

// Policy identifies the prepared policy set.
func (p *Prepared) Policy() decision.Policy { return p.c.policy }

// Prepare compiles src and, with runTests, runs its Rego tests; it fails
// (wrapping ErrPolicy) when either does, so a reload built on it never
// swaps in a policy that does not compile or whose tests fail.
func Prepare(ctx context.Context, src Source, runTests bool) (*Prepared, error) {
	if src.FS == nil {
		return nil, fmt.Errorf("%w: no policy files given", ErrPolicy)
	}
	c, err := compile(ctx, src.FS)
	if err != nil {
		return nil, err
	}
	c.policy.Revision = src.Revision
	p := &Prepared{c: c}
	if runTests {
		rep, err := RunTests(ctx, src.FS, TestOptions{})
		if err != nil {
			return nil, err
		}
		if !rep.OK() {
			return nil, fmt.Errorf("%w: Rego tests fail: %s", ErrPolicy, rep.FailureSummary())
		}
		p.Tests = rep
	}
	return p, nil
}

// Swap puts p in force and returns the policy it replaced. Decisions in
// flight finish with the policy they started with.
func (e *Engine) Swap(p *Prepared) (old decision.Policy) {
	return e.cur.Swap(p.c).policy
}

// WithDataFiles is WithData with the contents of the named files (JSON or
// YAML), each keyed by its base name: an organisation's configuration kept
// outside the policy, as `gatelog serve --policy-data` and `gatelog policy
// eval --policy-data` give it. Two files with one base name are an error.
func (src Source) WithDataFiles(paths []string) (Source, error) {
	data := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return Source{}, fmt.Errorf("%w: data file: %w", ErrPolicy, err)
		}
		if _, dup := data[filepath.Base(p)]; dup {
			return Source{}, fmt.Errorf("%w: two data files named %s", ErrPolicy, filepath.Base(p))
		}
		data[filepath.Base(p)] = b
	}
	return src.WithData(data)
}

// WithData returns src with its data files (JSON, YAML) replaced by files,
// keyed by the name they get at the policy root: the same Rego with another
// organisation's configuration, as examples/policies does with acme.yaml.
func (src Source) WithData(files map[string][]byte) (Source, error) {
	m := fstest.MapFS{}
	err := fs.WalkDir(src.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".rego") {
			return nil
		}
		b, err := fs.ReadFile(src.FS, p)
		if err != nil {
			return err
		}
		m[p] = &fstest.MapFile{Data: b, Mode: 0o444}
		return nil
	})
	if err != nil {
		return Source{}, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	var names []string
	for name, b := range files {
		if !policyFile(name) || strings.HasSuffix(name, ".rego") || !fs.ValidPath(name) {
			return Source{}, fmt.Errorf("%w: data file %q must be a .json, .yaml or .yml name", ErrPolicy, name)
		}
		m[name] = &fstest.MapFile{Data: b, Mode: 0o444}
		names = append(names, name)
	}
	sort.Strings(names)
	src.FS = m
	src.Origin += " with data " + strings.Join(names, ", ")
	return src, nil
}
