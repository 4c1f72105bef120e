package index_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/gatelog/gatelog/internal/testdb"
	"github.com/gatelog/gatelog/translog/index"
)

// TestMain stops the PostgreSQL server the backend tests started.
func TestMain(m *testing.M) {
	code := m.Run()
	testdb.Stop()
	os.Exit(code)
}

// backend is a database the index runs on; fresh gives the location of a
// new, empty index (a SQLite path or a PostgreSQL DSN).
type backend struct {
	name  string
	fresh func(t *testing.T) string
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "index.db") }},
	{"postgres", func(t *testing.T) string { return testdb.Postgres(t) }},
}

// forBackends runs f once per backend, as subtests.
func forBackends(t *testing.T, f func(*testing.T, backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

func TestRefusesNewerSchema(t *testing.T) { forBackends(t, testRefusesNewerSchema) }

func testRefusesNewerSchema(t *testing.T, b backend) {
	ctx := context.Background()
	loc := b.fresh(t)
	ix, err := index.OpenAt(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
	driver, dsn := "sqlite", loc
	if index.IsPostgresDSN(loc) {
		driver = "pgx"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRowContext(ctx, "SELECT version FROM gatelog_schema WHERE id = 1").Scan(&v); err != nil || v != index.SchemaVersion {
		t.Fatalf("schema version = %d, %v; want %d", v, err, index.SchemaVersion)
	}
	if _, err := db.ExecContext(ctx, "UPDATE gatelog_schema SET version = 99 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ix, err = index.OpenAt(ctx, loc)
	if !errors.Is(err, index.ErrSchemaTooNew) {
		if ix != nil {
			ix.Close()
		}
		t.Fatalf("opening an index of schema 99: %v, want ErrSchemaTooNew", err)
	}
	t.Logf("error: %v", err)
}

// Two daemons share one PostgreSQL index and both follow the same log:
// every entry is indexed once, whichever adds it first, and both see it.
func TestTwoFollowersShareOnePostgresIndex(t *testing.T) {
	ctx := context.Background()
	tl, es := fixture(t)
	dsn := testdb.Postgres(t)
	a, bIx := openIndex(t, dsn), openIndex(t, dsn)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, ix := range []*index.Index{a, bIx} {
		wg.Go(func() {
			for range 3 {
				if _, err := ix.CatchUp(ctx, tl.log.Reader(), nil); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, ix := range []*index.Index{a, bIx} {
		if next, err := ix.Next(ctx); err != nil || next != int64(len(es)) {
			t.Errorf("Next = %d, %v; want %d", next, err, len(es))
		}
	}
	pa, pb := search(t, a, "limit=1000"), search(t, bIx, "limit=1000")
	if got := indexes(pa); len(got) != len(es) {
		t.Errorf("indexed %v, want %d entries once each", got, len(es))
	}
	if !reflect.DeepEqual(pa, pb) {
		t.Errorf("the two daemons see different indexes")
	}
	// The same entries added again by either are no-ops.
	tl.add(rec{subject: "carol", action: "deploy", env: "production", at: now})
	tl.waitCovered(int64(len(es) + 1))
	if n, err := bIx.CatchUp(ctx, tl.log.Reader(), nil); err != nil || n != 1 {
		t.Fatalf("CatchUp = %d, %v; want 1", n, err)
	}
	if n, err := a.CatchUp(ctx, tl.log.Reader(), nil); err != nil || n != 0 {
		t.Fatalf("CatchUp on the other = %d, %v; want 0 (already indexed)", n, err)
	}
}
