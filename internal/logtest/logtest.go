// Package logtest opens translog logs for tests: the driver a daemon
// builds, built the same way, so that tests open logs as the daemon does.
package logtest

import (
	"context"
	"testing"

	"github.com/transparency-dev/tessera/storage/mysql"
	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/gatelog/gatelog/translog"
)

// Files returns cfg with Tessera's POSIX driver on the tiles of cfg.Dir,
// as the daemon opens its embedded log.
func Files(t testing.TB, cfg translog.Config) translog.Config {
	t.Helper()
	d, err := posix.New(context.Background(), posix.Config{Path: translog.TilesDir(cfg.Dir)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Driver = d
	return cfg
}

// Open opens the embedded log of cfg (see Files) and closes it when the
// test ends.
func Open(t testing.TB, cfg translog.Config) *translog.Log {
	t.Helper()
	l, err := translog.Open(context.Background(), Files(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// MySQL returns cfg for the log in the MySQL/MariaDB database at url, with
// Tessera's MySQL driver, as the daemon opens a shared log. Close of the
// log opened with it closes the database.
func MySQL(t testing.TB, url string, cfg translog.Config) translog.Config {
	t.Helper()
	ctx := context.Background()
	db, err := translog.OpenMySQL(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	d, err := mysql.New(ctx, db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	cfg.DB, cfg.Driver = db, d
	return cfg
}
