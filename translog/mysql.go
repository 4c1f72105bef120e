package translog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"
)

// envStore is what reads need of the envelope store: bbolt beside an
// embedded log (store), or tables in the log's own MySQL/MariaDB database
// (mysqlStore).
type envStore interface {
	envelope(leaf []byte) (storedEntry, bool, error)
	leafForKey(key string) ([]byte, error)
	index(leaf []byte) (uint64, bool, error)
	searchLeaves(hexHash string) ([][]byte, error)
	close() error
}

// tileReader reads a log's checkpoint, tiles and entry bundles: files of a
// POSIX log (client.FileFetcher) or Tessera's MySQL LogReader.
type tileReader interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

// IsMySQLDSN tells a MySQL/MariaDB log location (mysql://…) from a directory.
func IsMySQLDSN(s string) bool { return strings.HasPrefix(s, "mysql://") }

// MySQLDSN turns mysql://user:pass@tcp(host:port)/db into the driver's
// DSN, with the options the log needs. The result is a secret.
func MySQLDSN(url string) (string, error) {
	dsn := strings.TrimPrefix(url, "mysql://")
	cfg, err := mysqldrv.ParseDSN(dsn)
	if err != nil {
		return "", errors.New("translog: the mysql:// DSN does not parse (want mysql://user:pass@tcp(host:port)/db)")
	}
	if cfg.DBName == "" {
		return "", errors.New("translog: the mysql:// DSN names no database")
	}
	cfg.MultiStatements = false
	cfg.ParseTime = true
	return cfg.FormatDSN(), nil
}

// mysqlSchemaVersion is the version of gatelog's own tables (envelopes,
// keys, index, search, meta) beside Tessera's; Open refuses a newer one.
// Version 2 keeps each entry's SET with its index record.
const mysqlSchemaVersion = 2

// tesseraSchema is Tessera's storage/mysql schema.sql (compatibility
// version 1), one statement at a time.
var tesseraSchema = []string{
	"CREATE TABLE IF NOT EXISTS `Tessera` (`id` TINYINT UNSIGNED NOT NULL, `compatibilityVersion` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`id`))",
	"INSERT IGNORE INTO `Tessera` (`id`, `compatibilityVersion`) VALUES (0, 1)",
	"CREATE TABLE IF NOT EXISTS `Checkpoint` (`id` TINYINT UNSIGNED NOT NULL, `note` MEDIUMBLOB NOT NULL, `published_at` BIGINT NOT NULL, PRIMARY KEY(`id`))",
	"CREATE TABLE IF NOT EXISTS `TreeState` (`id` TINYINT UNSIGNED NOT NULL, `size` BIGINT UNSIGNED NOT NULL, `root` TINYBLOB NOT NULL, PRIMARY KEY(`id`))",
	"CREATE TABLE IF NOT EXISTS `Subtree` (`level` TINYINT UNSIGNED NOT NULL, `index` BIGINT UNSIGNED NOT NULL, `nodes` MEDIUMBLOB NOT NULL, PRIMARY KEY(`level`, `index`))",
	"CREATE TABLE IF NOT EXISTS `TiledLeaves` (`tile_index` BIGINT UNSIGNED NOT NULL, `size` SMALLINT UNSIGNED NOT NULL, `data` LONGBLOB NOT NULL, PRIMARY KEY(`tile_index`))",
}

// gatelogSchema is the envelope store in the log's database.
var gatelogSchema = []string{
	"CREATE TABLE IF NOT EXISTS `gatelog_schema` (`id` TINYINT UNSIGNED NOT NULL, `version` INT NOT NULL, PRIMARY KEY (`id`))",
	// envelopes: written before the leaf is sequenced.
	"CREATE TABLE IF NOT EXISTS `gatelog_envelopes` (`leaf` BINARY(32) NOT NULL, `record` LONGBLOB NOT NULL, PRIMARY KEY (`leaf`))",
	"CREATE TABLE IF NOT EXISTS `gatelog_keys` (`k` VARBINARY(255) NOT NULL, `leaf` BINARY(32) NOT NULL, PRIMARY KEY (`k`))",
	// index, search and meta are derived from the tree (catchUp).
	"CREATE TABLE IF NOT EXISTS `gatelog_index` (`leaf` BINARY(32) NOT NULL, `idx` BIGINT UNSIGNED NOT NULL, `set_sig` VARBINARY(255) NULL, PRIMARY KEY (`leaf`))",
	"CREATE TABLE IF NOT EXISTS `gatelog_search` (`hash` BINARY(32) NOT NULL, `leaf` BINARY(32) NOT NULL, PRIMARY KEY (`hash`, `leaf`))",
	"CREATE TABLE IF NOT EXISTS `gatelog_meta` (`name` VARCHAR(64) NOT NULL, `value` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`name`))",
}

// OpenMySQL connects to the log database at url
// (mysql://user:pass@tcp(host:port)/db), creating or upgrading the schema
// (Tessera's and the envelope store's) under a named lock so that daemons
// starting together do it once. Build Tessera's MySQL driver on it and
// pass both in Config.
func OpenMySQL(ctx context.Context, url string) (*sql.DB, error) {
	dsn, err := MySQLDSN(url)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: open mysql log", ErrUnavailable)
	}
	db.SetMaxOpenConns(32)
	db.SetConnMaxLifetime(5 * time.Minute)
	if err := migrateMySQL(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func migrateMySQL(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%w: connect to the mysql log: %w", ErrUnavailable, err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('gatelog_schema', 60)").Scan(&got); err != nil || got.Int64 != 1 {
		return fmt.Errorf("%w: mysql schema lock: %w", ErrUnavailable, err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK('gatelog_schema')") //nolint:errcheck // released with the connection anyway
	if _, err := conn.ExecContext(ctx, gatelogSchema[0]); err != nil {
		return fmt.Errorf("%w: mysql schema: %w", ErrUnavailable, err)
	}
	v := 0
	err = conn.QueryRowContext(ctx, "SELECT `version` FROM `gatelog_schema` WHERE `id` = 0").Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: mysql schema version: %w", ErrUnavailable, err)
	}
	if v > mysqlSchemaVersion {
		return fmt.Errorf("%w: the mysql log is at schema version %d, this gatelog knows up to %d; upgrade gatelog", ErrSchemaTooNew, v, mysqlSchemaVersion)
	}
	if v == mysqlSchemaVersion {
		return nil
	}
	stmts := append(append([]string{}, tesseraSchema...), gatelogSchema[1:]...)
	if v == 1 {
		stmts = append(stmts, "ALTER TABLE `gatelog_index` ADD COLUMN `set_sig` VARBINARY(255) NULL")
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%w: mysql schema: %w", ErrUnavailable, err)
		}
	}
	_, err = conn.ExecContext(ctx, "REPLACE INTO `gatelog_schema` (`id`, `version`) VALUES (0, ?)", mysqlSchemaVersion)
	if err != nil {
		return fmt.Errorf("%w: mysql schema version: %w", ErrUnavailable, err)
	}
	return nil
}

// ErrSchemaTooNew means the log's database was written by a newer gatelog.
var ErrSchemaTooNew = errors.New("log schema is newer than this gatelog")

// mysqlStore is the envelope store in the log's MySQL/MariaDB database.
// Every write is idempotent: daemons sharing the log may record the same
// index or search rows.
type mysqlStore struct {
	db  *sql.DB
	ctx context.Context
}

func (s *mysqlStore) unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}

func (s *mysqlStore) putEnvelope(ctx context.Context, key string, leaf []byte, rec storedEntry) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// The caller's deadline, and the store's lifetime.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.unavailable("store envelope", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "REPLACE INTO `gatelog_envelopes` (`leaf`, `record`) VALUES (?, ?)", leaf, raw); err != nil {
		return s.unavailable("store envelope", err)
	}
	if _, err := tx.ExecContext(ctx, "REPLACE INTO `gatelog_keys` (`k`, `leaf`) VALUES (?, ?)", []byte(key), leaf); err != nil {
		return s.unavailable("store key", err)
	}
	if err := tx.Commit(); err != nil {
		return s.unavailable("store envelope", err)
	}
	return nil
}

func (s *mysqlStore) putIndexTx(tx *sql.Tx, recs []indexRecord) error {
	for _, r := range recs {
		if _, err := tx.ExecContext(s.ctx, "INSERT INTO `gatelog_index` (`leaf`, `idx`, `set_sig`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE `set_sig` = COALESCE(`set_sig`, VALUES(`set_sig`))", r.leaf, r.index, r.set); err != nil {
			return err
		}
		for _, h := range r.search {
			k, err := searchRecordKey(h, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(s.ctx, "INSERT IGNORE INTO `gatelog_search` (`hash`, `leaf`) VALUES (?, ?)", k, r.leaf); err != nil {
				return err
			}
		}
	}
	return nil
}

// putIndexAndWatermark records recs and raises the watermark to at least
// watermark (0: leaves it), never lowers it: another daemon may be ahead.
func (s *mysqlStore) putIndexAndWatermark(recs []indexRecord, watermark uint64) error {
	tx, err := s.db.BeginTx(s.ctx, nil)
	if err != nil {
		return s.unavailable("store index", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := s.putIndexTx(tx, recs); err != nil {
		return s.unavailable("store index", err)
	}
	if watermark > 0 {
		if _, err := tx.ExecContext(s.ctx, "INSERT INTO `gatelog_meta` (`name`, `value`) VALUES ('watermark', ?) ON DUPLICATE KEY UPDATE `value` = GREATEST(`value`, VALUES(`value`))", watermark); err != nil {
			return s.unavailable("store watermark", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return s.unavailable("store index", err)
	}
	return nil
}

// mysqlReadTimeout bounds one read of the envelope store: a database that
// hangs makes a lookup fail (503) instead of holding the request forever.
// A read is one row or a few by primary key.
const mysqlReadTimeout = 10 * time.Second

func (s *mysqlStore) get(q string, args []any, dst ...any) (bool, error) {
	ctx, cancel := context.WithTimeout(s.ctx, mysqlReadTimeout)
	defer cancel()
	err := s.db.QueryRowContext(ctx, q, args...).Scan(dst...)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.unavailable("read envelope store", err)
	}
	return true, nil
}

func (s *mysqlStore) envelope(leaf []byte) (storedEntry, bool, error) {
	var rec storedEntry
	var raw []byte
	ok, err := s.get("SELECT `record` FROM `gatelog_envelopes` WHERE `leaf` = ?", []any{leaf}, &raw)
	if err != nil || !ok {
		return rec, false, err
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, false, fmt.Errorf("%w: envelope store record %x: %w", ErrCorrupt, leaf, err)
	}
	return rec, true, nil
}

func (s *mysqlStore) leafForKey(key string) ([]byte, error) {
	var leaf []byte
	_, err := s.get("SELECT `leaf` FROM `gatelog_keys` WHERE `k` = ?", []any{[]byte(key)}, &leaf)
	return leaf, err
}

func (s *mysqlStore) index(leaf []byte) (uint64, bool, error) {
	var idx uint64
	ok, err := s.get("SELECT `idx` FROM `gatelog_index` WHERE `leaf` = ?", []any{leaf}, &idx)
	return idx, ok, err
}

// set reads the SET stored with leaf's index record (nil when none is).
func (s *mysqlStore) set(leaf []byte) ([]byte, error) {
	var set []byte
	_, err := s.get("SELECT `set_sig` FROM `gatelog_index` WHERE `leaf` = ?", []any{leaf}, &set)
	return set, err
}

func (s *mysqlStore) watermark() (uint64, error) {
	var v uint64
	_, err := s.get("SELECT `value` FROM `gatelog_meta` WHERE `name` = 'watermark'", nil, &v)
	return v, err
}

func (s *mysqlStore) searchLeaves(hexHash string) ([][]byte, error) {
	h, err := searchRecordKey(hexHash, nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, mysqlReadTimeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, "SELECT `leaf` FROM `gatelog_search` WHERE `hash` = ? ORDER BY `leaf`", h)
	if err != nil {
		return nil, s.unavailable("search", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var l []byte
		if err := rows.Scan(&l); err != nil {
			return nil, s.unavailable("search", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, s.unavailable("search", err)
	}
	return out, nil
}

func (s *mysqlStore) close() error { return s.db.Close() }

// checkpointTime is when the MySQL log last published a checkpoint.
func (s *mysqlStore) checkpointTime() (time.Time, error) {
	var ms int64
	ok, err := s.get("SELECT `published_at` FROM `Checkpoint` WHERE `id` = 0", nil, &ms)
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return time.Time{}, fmt.Errorf("%w: no checkpoint yet", ErrUnavailable)
	}
	return time.UnixMilli(ms), nil
}

// tilesHandler serves tlog-tiles resources read through r (a LogReader),
// for logs whose tiles are not files.
func tilesHandler(r tileReader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		t, ok := parseTileRequest(req.URL.Path)
		if !ok {
			http.NotFound(w, req)
			return
		}
		var (
			body []byte
			err  error
		)
		switch {
		case t.checkpoint:
			w.Header().Set("Cache-Control", "no-cache")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			body, err = r.ReadCheckpoint(req.Context())
		case t.entries:
			w.Header().Set("Content-Type", "application/octet-stream")
			body, err = r.ReadEntryBundle(req.Context(), t.index, t.part)
		default:
			w.Header().Set("Content-Type", "application/octet-stream")
			body, err = r.ReadTile(req.Context(), t.level, t.index, t.part)
		}
		if errors.Is(err, os.ErrNotExist) || (err == nil && body == nil) {
			http.NotFound(w, req)
			return
		}
		if err != nil {
			http.Error(w, "log unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(body)
	})
}
