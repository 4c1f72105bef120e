// Package logtest helps tests of the transparency log: it opens translog
// logs with the driver a daemon builds, built the same way, and tampers
// with a stored envelope for drills that check readers notice.
package logtest

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/storage/mysql"
	"github.com/transparency-dev/tessera/storage/posix"
	bolt "go.etcd.io/bbolt"

	"github.com/gatelog/gatelog/internal/envrecord"
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

// RewriteStoredEnvelope replaces the envelope stored for leaf in the
// envelope store of the embedded log in dir (a Config.Dir) with what edit
// returns, keeping the rest of its record (its leaf body, index and SET).
// The log must not be open. It is for tamper drills: change a stored
// envelope the way an attacker with disk access would, then check that
// every reader notices. It knows the store's layout (store/store.db; the
// buckets index: leaf → log index, and log: log index → record), which
// translog keeps.
func RewriteStoredEnvelope(dir string, leaf []byte, edit func(envelope []byte) []byte) error {
	db, err := bolt.Open(filepath.Join(dir, "store", "store.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		ib, lb := tx.Bucket([]byte("index")), tx.Bucket([]byte("log"))
		if ib == nil || lb == nil {
			return fmt.Errorf("%s holds no sequenced envelope store", dir)
		}
		k := ib.Get(leaf)
		raw := lb.Get(k)
		if k == nil || raw == nil {
			return fmt.Errorf("%w: no envelope stored for leaf %x", translog.ErrNotFound, leaf)
		}
		rec, err := envrecord.Decode(raw)
		if err != nil {
			return err
		}
		rec.Envelope = edit(bytes.Clone(rec.Envelope))
		return lb.Put(bytes.Clone(k), envrecord.Encode(rec))
	})
}
