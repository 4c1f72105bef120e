package index

import (
	"fmt"
	"strings"
)

// Dialect is the little that differs between the SQL databases the index
// runs on. Every statement the index sends is written in the SQL that
// SQLite and PostgreSQL share (ON CONFLICT upserts, LIMIT, COUNT/SUM,
// IF NOT EXISTS); only parameter placeholders and connection settings vary.
type Dialect interface {
	// Name is the database's name, for messages.
	Name() string
	// Placeholder is the n-th (1-based) query parameter: "?" or "$n".
	Placeholder(n int) string
	// Setup is run once on a new connection pool, before the schema.
	Setup() []string
	// Lock is a statement that, run first in a transaction, serialises it
	// against the same transaction of every other process sharing the
	// database (a PostgreSQL advisory lock), or "" where the database
	// already serialises writers (SQLite).
	Lock() string
}

// SQLite is the embedded default (modernc.org/sqlite, pure Go).
type SQLite struct{}

// Name implements Dialect.
func (SQLite) Name() string { return "sqlite" }

// Placeholder implements Dialect.
func (SQLite) Placeholder(int) string { return "?" }

// Setup implements Dialect.
func (SQLite) Setup() []string {
	return []string{"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=10000"}
}

// Lock implements Dialect: SQLite has one writer at a time already.
func (SQLite) Lock() string { return "" }

// Postgres is the dialect for a shared PostgreSQL index (driver pgx).
type Postgres struct{}

// Name implements Dialect.
func (Postgres) Name() string { return "postgres" }

// Placeholder implements Dialect.
func (Postgres) Placeholder(n int) string { return fmt.Sprintf("$%d", n) }

// Setup implements Dialect.
func (Postgres) Setup() []string { return nil }

// Lock implements Dialect: a transaction-scoped advisory lock, so daemons
// sharing the index migrate and advance next_index one at a time.
func (Postgres) Lock() string { return "SELECT pg_advisory_xact_lock(7160442389001)" }

// SchemaVersion is the index schema this binary writes. Open migrates an
// older index up to it and refuses a newer one (ErrSchemaTooNew).
const SchemaVersion = 1

// schemaVersionTable records the schema version. It is apart from
// gatelog_meta so that Reset, which empties the index, keeps it.
var schemaVersionTable = `CREATE TABLE IF NOT EXISTS gatelog_schema (
		id SMALLINT PRIMARY KEY,
		version INTEGER NOT NULL
	)`

// migrations[v] takes the schema from version v to v+1, so
// len(migrations) == SchemaVersion. Version 1 is the first versioned
// schema; an index made before versioning (tables but no gatelog_schema
// row) has the same tables, which its IF NOT EXISTS statements leave as
// they are.
var migrations = [][]string{schema}

// schema creates the index tables. Column types are the common subset of
// SQLite and PostgreSQL.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS gatelog_meta (
		name VARCHAR(64) PRIMARY KEY,
		value TEXT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS gatelog_entries (
		log_index BIGINT PRIMARY KEY,
		uuid VARCHAR(80) NOT NULL,
		kind VARCHAR(16) NOT NULL,
		record_id VARCHAR(128) NOT NULL,
		time_ms BIGINT NOT NULL,
		time_day CHAR(10) NOT NULL,
		time_hour SMALLINT NOT NULL,
		time_weekday SMALLINT NOT NULL,
		integrated_time BIGINT NOT NULL,
		subject TEXT NOT NULL,
		subject_kind TEXT NOT NULL,
		caller TEXT NOT NULL,
		action TEXT NOT NULL,
		res_system TEXT NOT NULL,
		res_kind TEXT NOT NULL,
		res_name TEXT NOT NULL,
		res_namespace TEXT NOT NULL,
		res_environment TEXT NOT NULL,
		res_repository TEXT NOT NULL,
		res_ref TEXT NOT NULL,
		adapter TEXT NOT NULL,
		allow SMALLINT NOT NULL,
		policy_sha256 TEXT NOT NULL,
		policy_revision TEXT NOT NULL,
		reasons TEXT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS gatelog_alerts (
		log_index BIGINT NOT NULL,
		seq INTEGER NOT NULL,
		code TEXT NOT NULL,
		severity TEXT NOT NULL,
		message TEXT NOT NULL,
		PRIMARY KEY (log_index, seq)
	)`,
	`CREATE INDEX IF NOT EXISTS gatelog_entries_subject ON gatelog_entries (subject, log_index)`,
	`CREATE INDEX IF NOT EXISTS gatelog_entries_caller ON gatelog_entries (caller, log_index)`,
	`CREATE INDEX IF NOT EXISTS gatelog_entries_action ON gatelog_entries (action, log_index)`,
	`CREATE INDEX IF NOT EXISTS gatelog_entries_env ON gatelog_entries (res_environment, log_index)`,
	`CREATE INDEX IF NOT EXISTS gatelog_entries_repo ON gatelog_entries (res_repository, log_index)`,
	`CREATE INDEX IF NOT EXISTS gatelog_entries_policy ON gatelog_entries (policy_sha256, log_index)`,
	`CREATE INDEX IF NOT EXISTS gatelog_entries_time ON gatelog_entries (time_ms)`,
	`CREATE INDEX IF NOT EXISTS gatelog_alerts_code ON gatelog_alerts (code, log_index)`,
}

// sqlBuilder writes one statement with the dialect's placeholders.
type sqlBuilder struct {
	d    Dialect
	sb   strings.Builder
	args []any
}

// arg appends a placeholder for v.
func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return b.d.Placeholder(len(b.args))
}

func (b *sqlBuilder) write(parts ...string) {
	for _, p := range parts {
		b.sb.WriteString(p)
	}
}

func (b *sqlBuilder) String() string { return b.sb.String() }
