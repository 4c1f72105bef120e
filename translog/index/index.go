// Package index is gatelog's audit search index: a SQL table of every log
// entry's searchable fields, derived from the log alone and rebuilt from it
// at will. Each result carries the entry's log index and UUID, so clients
// check the entry and its inclusion proof instead of trusting the index.
package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	_ "github.com/jackc/pgx/v5/stdlib" // the shared PostgreSQL index
	_ "modernc.org/sqlite"             // the embedded default database
)

// ErrOtherLog means the index was built from a different log (another tree
// ID) than the one it is asked to follow; rebuild it.
var ErrOtherLog = errors.New("index belongs to another log")

// ErrSchemaTooNew means the index was written by a newer gatelog, whose
// schema this binary does not know; upgrade gatelog (or rebuild the index
// into an empty database).
var ErrSchemaTooNew = errors.New("index schema is newer than this gatelog")

// Index is an open audit index. It is safe for concurrent use; writes are
// serialised.
type Index struct {
	db *sql.DB
	d  Dialect
	mu sync.Mutex
	// catchingUp lets one CatchUp read the log at a time.
	catchingUp sync.Mutex
	onIndexed  func([]Row) error
	// shown is the last log index given to onIndexed (-1: none yet);
	// guarded by catchingUp.
	shown int64

	// sequenced holds the entries this process appended (Sequenced) that
	// are not indexed yet, by log index; entries below seqFloor are
	// indexed already and not kept.
	seqMu     sync.Mutex
	sequenced map[int64]sequencedEntry
	seqFloor  int64

	// inserts are the prepared INSERT statements by shape.
	inserts map[insertShape]*sql.Stmt
}

// OnIndexed has f called with every batch of rows CatchUp indexes, just
// before the batch is committed, so that no row is missed: rows may come
// again after a crash or in a rebuild, but one Index shows each row once
// it took them. When f returns an error the batch is not committed and
// CatchUp fails; the next CatchUp shows the rows again. The daemon uses it
// to queue the alerts of logged decisions in its outbox.
func (ix *Index) OnIndexed(f func([]Row) error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.onIndexed = f
}

// OpenSQLite opens (or creates) the SQLite index at path.
func OpenSQLite(ctx context.Context, path string) (*Index, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	// One connection: SQLite serialises writers anyway, and per-connection
	// pragmas then hold for every statement.
	db.SetMaxOpenConns(1)
	ix, err := Open(ctx, db, SQLite{})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	return ix, nil
}

// OpenPostgres opens the PostgreSQL index at dsn (postgres://…), creating
// or migrating its tables. Several daemons may share it: writes are
// idempotent by log index. Errors never include the DSN.
func OpenPostgres(ctx context.Context, dsn string) (*Index, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, errors.New("open postgres index: bad DSN")
	}
	db.SetMaxOpenConns(8)
	ix, err := Open(ctx, db, Postgres{})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres index: %w", err)
	}
	return ix, nil
}

// OpenAt opens the index at loc: a PostgreSQL DSN (postgres://…) or the
// path of a SQLite file.
func OpenAt(ctx context.Context, loc string) (*Index, error) {
	if IsPostgresDSN(loc) {
		return OpenPostgres(ctx, loc)
	}
	return OpenSQLite(ctx, loc)
}

// IsPostgresDSN tells a PostgreSQL DSN (postgres:// or postgresql://) from
// a SQLite file path.
func IsPostgresDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open prepares db (of dialect d) as an index, creating or migrating the
// tables as needed. The index owns db from now on.
func Open(ctx context.Context, db *sql.DB, d Dialect) (*Index, error) {
	for _, s := range d.Setup() {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return nil, fmt.Errorf("%s setup %q: %w", d.Name(), s, err)
		}
	}
	if err := migrate(ctx, db, d); err != nil {
		return nil, err
	}
	ix := &Index{db: db, d: d, shown: -1}
	if err := ix.prepareInserts(ctx); err != nil {
		return nil, err
	}
	return ix, nil
}

// migrate brings the schema to SchemaVersion in one transaction, under the
// dialect's lock so that daemons starting together do it once.
func migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Name(), err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if l := d.Lock(); l != "" {
		if _, err := tx.ExecContext(ctx, l); err != nil {
			return fmt.Errorf("%s lock: %w", d.Name(), err)
		}
	}
	if _, err := tx.ExecContext(ctx, schemaVersionTable); err != nil {
		return fmt.Errorf("%s schema: %w", d.Name(), err)
	}
	v := 0
	err = tx.QueryRowContext(ctx, "SELECT version FROM gatelog_schema WHERE id = 1").Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s schema version: %w", d.Name(), err)
	}
	if v > SchemaVersion {
		return fmt.Errorf("%w: the %s index is at schema version %d, this gatelog knows up to %d; upgrade gatelog",
			ErrSchemaTooNew, d.Name(), v, SchemaVersion)
	}
	if v == SchemaVersion {
		return tx.Commit()
	}
	for ; v < SchemaVersion; v++ {
		for _, s := range migrations[v] {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("%s schema (to version %d): %w", d.Name(), v+1, err)
			}
		}
	}
	b := &sqlBuilder{d: d}
	b.write("INSERT INTO gatelog_schema (id, version) VALUES (1, ", b.arg(v),
		") ON CONFLICT (id) DO UPDATE SET version = excluded.version")
	if _, err := tx.ExecContext(ctx, b.String(), b.args...); err != nil {
		return fmt.Errorf("%s schema version: %w", d.Name(), err)
	}
	return tx.Commit()
}

// Close closes the database.
func (ix *Index) Close() error {
	ix.mu.Lock()
	var errs []error
	for _, stmt := range ix.inserts {
		errs = append(errs, stmt.Close())
	}
	ix.inserts = nil
	ix.mu.Unlock()
	return errors.Join(append(errs, ix.db.Close())...)
}

const (
	metaNext   = "next_index"
	metaTreeID = "tree_id"
)

// Next is the log index of the first entry not yet indexed.
func (ix *Index) Next(ctx context.Context) (int64, error) {
	v, err := ix.meta(ctx, ix.db, metaNext)
	if err != nil || v == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("index meta %s is corrupt: %q", metaNext, v)
	}
	return n, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (ix *Index) meta(ctx context.Context, q queryer, name string) (string, error) {
	b := &sqlBuilder{d: ix.d}
	b.write("SELECT value FROM gatelog_meta WHERE name = ", b.arg(name))
	var v string
	err := q.QueryRowContext(ctx, b.String(), b.args...).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (ix *Index) setMeta(ctx context.Context, tx *sql.Tx, name, value string) error {
	b := &sqlBuilder{d: ix.d}
	b.write("INSERT INTO gatelog_meta (name, value) VALUES (", b.arg(name), ", ", b.arg(value),
		") ON CONFLICT (name) DO UPDATE SET value = excluded.value")
	_, err := tx.ExecContext(ctx, b.String(), b.args...)
	return err
}

// checkTree records treeID on first use and refuses a different one later.
func (ix *Index) checkTree(ctx context.Context, treeID int64) error {
	v, err := ix.meta(ctx, ix.db, metaTreeID)
	if err != nil {
		return err
	}
	want := strconv.FormatInt(treeID, 10)
	if v != "" && v != want {
		return fmt.Errorf("%w: built from tree %s, asked to follow tree %s", ErrOtherLog, v, want)
	}
	return nil
}

// Add indexes rows, which must be the consecutive entries starting at
// Next(), and advances Next past them in the same transaction. Adding an
// entry that is already indexed changes nothing, so a crash between the
// log and the index is repaired by adding again.
func (ix *Index) Add(ctx context.Context, treeID int64, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if err := ix.checkTree(ctx, treeID); err != nil {
		return err
	}
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if l := ix.d.Lock(); l != "" {
		// Another daemon may be adding the same entries: one at a time,
		// so next_index only moves forward.
		if _, err := tx.ExecContext(ctx, l); err != nil {
			return err
		}
	}
	next, err := ix.meta(ctx, tx, metaNext)
	if err != nil {
		return err
	}
	n := int64(0)
	if next != "" {
		if n, err = strconv.ParseInt(next, 10, 64); err != nil {
			return fmt.Errorf("index meta %s is corrupt: %q", metaNext, next)
		}
	}
	fresh := make([]Row, 0, len(rows))
	for _, r := range rows {
		if r.LogIndex > n {
			return fmt.Errorf("index: entry %d would leave a gap after %d", r.LogIndex, n-1)
		}
		if r.LogIndex < n {
			continue // indexed already, its alerts with it
		}
		fresh = append(fresh, r)
		n = r.LogIndex + 1
	}
	if err := ix.insert(ctx, tx, fresh); err != nil {
		return err
	}
	if err := ix.setMeta(ctx, tx, metaNext, strconv.FormatInt(n, 10)); err != nil {
		return err
	}
	if err := ix.setMeta(ctx, tx, metaTreeID, strconv.FormatInt(treeID, 10)); err != nil {
		return err
	}
	return tx.Commit()
}

// entryColumns are the columns of gatelog_entries, in the order of
// entryValues.
const entryColumns = `log_index, uuid, kind, record_id, time_ms, time_day, time_hour,
		time_weekday, integrated_time, subject, subject_kind, caller, action, res_system, res_kind,
		res_name, res_namespace, res_environment, res_repository, res_ref, adapter, allow,
		policy_sha256, policy_revision, reasons`

// entryValues are the values of r's row in gatelog_entries, appended to
// args.
func entryValues(args []any, r Row) ([]any, error) {
	reasons, err := json.Marshal(r.Reasons)
	if err != nil {
		return nil, err
	}
	t := r.Time.UTC()
	allow := 0
	if r.Allow {
		allow = 1
	}
	return append(args, r.LogIndex, r.UUID, r.Kind, r.ID, t.UnixMilli(), t.Format("2006-01-02"), t.Hour(),
		int(t.Weekday()), r.IntegratedTime, r.Subject, r.SubjectKind, r.Caller, r.Action,
		r.Resource.System, r.Resource.Kind, r.Resource.Name, r.Resource.Namespace,
		r.Resource.Environment, r.Resource.Repository, r.Resource.Ref, r.Adapter, allow,
		r.PolicySHA256, r.PolicyRevision, string(reasons)), nil
}

const (
	entryColumnCount = 25
	alertColumnCount = 5
	// rowsPerInsert is how many rows one INSERT statement writes: one
	// round trip (and one statement to prepare) for many rows, well below
	// the databases' limits on parameters (SQLite 32766, PostgreSQL 65535).
	rowsPerInsert = 64
)

// insert writes rows (none of them indexed yet) and their alerts, with
// as few statements as rowsPerInsert allows.
func (ix *Index) insert(ctx context.Context, tx *sql.Tx, rows []Row) error {
	args := make([]any, 0, min(len(rows), rowsPerInsert)*entryColumnCount)
	for chunk := range slices.Chunk(rows, rowsPerInsert) {
		args = args[:0]
		for _, r := range chunk {
			var err error
			if args, err = entryValues(args, r); err != nil {
				return fmt.Errorf("index entry %d: %w", r.LogIndex, err)
			}
		}
		if err := ix.exec(ctx, tx, entriesTable, len(chunk), args); err != nil {
			return fmt.Errorf("index entries %d to %d: %w", chunk[0].LogIndex, chunk[len(chunk)-1].LogIndex, err)
		}
	}
	args = args[:0]
	count := 0
	for _, r := range rows {
		for i, a := range r.Alerts {
			args = append(args, r.LogIndex, i, a.Code, a.Severity, a.Message)
			if count++; count == rowsPerInsert {
				if err := ix.insertAlerts(ctx, tx, args, count); err != nil {
					return err
				}
				args, count = args[:0], 0
			}
		}
	}
	if count > 0 {
		return ix.insertAlerts(ctx, tx, args, count)
	}
	return nil
}

func (ix *Index) insertAlerts(ctx context.Context, tx *sql.Tx, args []any, n int) error {
	if err := ix.exec(ctx, tx, alertsTable, n, args); err != nil {
		return fmt.Errorf("index alerts of entries %v to %v: %w", args[0], args[len(args)-alertColumnCount], err)
	}
	return nil
}

// insertSQL is the statement that inserts n rows of a table (ncols
// columns cols), each ignored if its key is there already.
func insertSQL(d Dialect, table, cols string, ncols, n int, key string) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + cols + ") VALUES ")
	p := 0
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range ncols {
			if j > 0 {
				b.WriteString(", ")
			}
			p++
			b.WriteString(d.Placeholder(p))
		}
		b.WriteByte(')')
	}
	b.WriteString(" ON CONFLICT (" + key + ") DO NOTHING")
	return b.String()
}

// The tables Add inserts into.
var (
	entriesTable = insertTable{"gatelog_entries", entryColumns, entryColumnCount, "log_index"}
	alertsTable  = insertTable{"gatelog_alerts", "log_index, seq, code, severity, message", alertColumnCount, "log_index, seq"}
)

type insertTable struct {
	name, cols string
	ncols      int
	key        string
}

// prepareInserts prepares the statements that insert rowsPerInsert rows,
// once: most rows go through them. (Preparing inside Add's transaction
// would wait for the one SQLite connection that transaction holds.)
func (ix *Index) prepareInserts(ctx context.Context) error {
	ix.inserts = make(map[insertShape]*sql.Stmt)
	for _, t := range []insertTable{entriesTable, alertsTable} {
		stmt, err := ix.db.PrepareContext(ctx, insertSQL(ix.d, t.name, t.cols, t.ncols, rowsPerInsert, t.key))
		if err != nil {
			return fmt.Errorf("%s: prepare insert into %s: %w", ix.d.Name(), t.name, err)
		}
		ix.inserts[insertShape{t.name, rowsPerInsert}] = stmt
	}
	return nil
}

// exec inserts n rows of t in tx: through the prepared statement for a
// full chunk, otherwise through one made for n rows.
func (ix *Index) exec(ctx context.Context, tx *sql.Tx, t insertTable, n int, args []any) error {
	if stmt, ok := ix.inserts[insertShape{t.name, n}]; ok {
		_, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		return err
	}
	_, err := tx.ExecContext(ctx, insertSQL(ix.d, t.name, t.cols, t.ncols, n, t.key), args...)
	return err
}

// insertShape names one statement of insertSQL.
type insertShape struct {
	table string
	rows  int
}

// Reset empties the index; following the log then rebuilds it.
func (ix *Index) Reset(ctx context.Context) error {
	ix.catchingUp.Lock()
	defer ix.catchingUp.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, t := range []string{"gatelog_alerts", "gatelog_entries", "gatelog_meta"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+t); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Entries handed over from now on are indexed again from their records.
	ix.seqMu.Lock()
	ix.seqFloor = 0
	ix.seqMu.Unlock()
	return nil
}
