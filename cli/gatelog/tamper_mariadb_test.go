package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql" // the log's MariaDB database

	"github.com/gatelog/gatelog/internal/testdb"
)

// TestTamperDetectedOnMariaDB is TestTamperDetected for a log kept in
// MariaDB (serve --log mysql://…): each case gets a fresh database with a
// daemon and 3 decisions, changes one byte of one row with SQL, and checks
// that gatelog log info, gatelog monitor, gatelog verify (on a receipt
// fetched after the change) and rekor-cli verify all fail.
//
// Tile, entry bundle and stored envelope are changed with the daemon
// stopped, then it restarts on the same database. The checkpoint cannot be:
// Tessera's MySQL driver re-signs the TreeState and replaces the Checkpoint
// row whenever the stored one is older than the checkpoint interval (1s),
// so a daemon restarted on a changed note overwrites it within a second (/readyz
// stays down until it has). As in the POSIX test it is changed with the
// daemon running; the same statement moves published_at ahead so the driver
// does not replace the changed note during the checks, as an attacker with
// write access to the database would do.
func TestTamperDetectedOnMariaDB(t *testing.T) {
	rekor := rekorCLI(t)
	bin := buildGatelog(t)
	const target = 0 // the decision whose receipt is fetched and verified: log entry 1 (0 is the start-up policy record)
	for _, tc := range []struct {
		name string
		// running: change the row with the daemon running (else stopped).
		running bool
		// query selects the one blob; update writes it back (blob first,
		// then args); args select the row in both.
		query, update string
		args          func(t *testing.T, f *logFixture) []any
		// tamper changes one byte of what the row stands for.
		tamper func(t *testing.T, b []byte) []byte
	}{
		{
			// Leaf 0 of the level-0 tile: a sibling in leaf 1's proof.
			name:   "tile",
			query:  "SELECT `nodes` FROM `Subtree` WHERE `level` = 0 AND `index` = 0",
			update: "UPDATE `Subtree` SET `nodes` = ? WHERE `level` = 0 AND `index` = 0",
			tamper: func(t *testing.T, b []byte) []byte {
				if len(b) != 4*32 {
					t.Fatalf("tile 0/0 holds %d bytes, want 4 hashes", len(b))
				}
				return flip(b, 8)
			},
		},
		{
			// A hex digit of entry 1's envelope hash: still JSON, wrong leaf.
			name:   "entry bundle",
			query:  "SELECT `data` FROM `TiledLeaves` WHERE `tile_index` = 0",
			update: "UPDATE `TiledLeaves` SET `data` = ? WHERE `tile_index` = 0",
			tamper: func(t *testing.T, b []byte) []byte {
				const k = `"envelopeHash":{"algorithm":"sha256","value":"`
				first := bytes.Index(b, []byte(k)) + len(k)
				second := bytes.Index(b[first:], []byte(k))
				if first < len(k) || second < 0 {
					t.Fatalf("entry bundle 0 has no second envelope hash:\n%q", b)
				}
				i := first + second + len(k) + 3
				return setByte(b, i, b[i]^0x01)
			},
		},
		{
			// A base64 character of the DSSE payload of the envelope stored
			// for the target decision, the byte the POSIX test changes. The row is
			// the envelope store's JSON record, whose envelope field is
			// itself base64: decode it, change the one byte, encode again.
			name:   "stored envelope",
			query:  "SELECT `record` FROM `gatelog_envelopes` WHERE `leaf` = ?",
			update: "UPDATE `gatelog_envelopes` SET `record` = ? WHERE `leaf` = ?",
			args: func(t *testing.T, f *logFixture) []any {
				leaf, err := hex.DecodeString(f.receipts[target].UUID[16:])
				if err != nil {
					t.Fatal(err)
				}
				return []any{leaf}
			},
			tamper: func(t *testing.T, b []byte) []byte {
				var rec map[string]json.RawMessage
				var env []byte
				if err := json.Unmarshal(b, &rec); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(rec["envelope"], &env); err != nil {
					t.Fatal(err)
				}
				i := bytes.Index(env, []byte(`"payload":"`)) + 40
				if i < 40 || i >= len(env) {
					t.Fatalf("stored envelope has no payload:\n%s", env)
				}
				env = setByte(env, i, map[bool]byte{true: 'B', false: 'A'}[env[i] == 'A'])
				raw, err := json.Marshal(env)
				if err != nil {
					t.Fatal(err)
				}
				rec["envelope"] = raw
				out, err := json.Marshal(rec)
				if err != nil {
					t.Fatal(err)
				}
				return out
			},
		},
		{
			// Inside the root hash; see the function comment for why the
			// daemon runs and published_at moves.
			name:    "checkpoint",
			running: true,
			query:   "SELECT `note` FROM `Checkpoint` WHERE `id` = 0",
			update:  "UPDATE `Checkpoint` SET `note` = ?, `published_at` = `published_at` + 86400000 WHERE `id` = 0",
			tamper: func(t *testing.T, b []byte) []byte {
				lines := strings.SplitN(string(b), "\n", 3)
				if len(lines) < 3 || lines[1] != "4" {
					t.Fatalf("checkpoint is not of size 4:\n%s", b)
				}
				i := len(lines[0]) + 1 + len(lines[1]) + 1 + 5
				return setByte(b, i, b[i]^0x01)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, url := testdb.MariaDB(t)
			// The DSN by environment, as an operator keeps it out of ps;
			// only serve reads GATELOG_LOG.
			t.Setenv("GATELOG_LOG", url)
			f := &logFixture{bin: bin, data: filepath.Join(t.TempDir(), "data")}
			f.d = startServe(t, bin, f.data)
			f.server = "http://" + f.d.Addr
			for range 3 {
				f.decide(t)
			}
			// The untampered log passes every check, so a failure below
			// comes from the changed byte.
			f.checkTamper(t, rekor, target, false)
			f.d.Stop(t)

			db, err := sql.Open("mysql", dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			var args []any
			if tc.args != nil {
				args = tc.args(t, f)
			}
			restart := func() {
				f.d = startServe(t, bin, f.data)
				f.server = "http://" + f.d.Addr
			}
			if tc.running {
				restart()
			}
			changed := rewriteRow(t, db, tc.query, tc.update, args, func(b []byte) []byte { return tc.tamper(t, b) })
			if !tc.running {
				restart()
			}

			f.checkTamper(t, rekor, target, true)

			// The changed row is still what the daemon served: nothing
			// rewrote it behind the checks.
			var now []byte
			if err := db.QueryRowContext(context.Background(), tc.query, args...).Scan(&now); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(now, changed) {
				t.Errorf("the changed row was rewritten during the checks")
			}
			f.d.Stop(t)
		})
	}
}

// rewriteRow reads one blob with query, and in the same transaction writes
// edit's result back with update; it returns what it wrote.
func rewriteRow(t *testing.T, db *sql.DB, query, update string, args []any, edit func([]byte) []byte) []byte {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var old []byte
	if err := tx.QueryRowContext(ctx, query+" FOR UPDATE", args...).Scan(&old); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	b := edit(bytes.Clone(old))
	if bytes.Equal(b, old) {
		t.Fatal("the edit changed nothing")
	}
	res, err := tx.ExecContext(ctx, update, append([]any{b}, args...)...)
	if err != nil {
		t.Fatalf("%s: %v", update, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("%s: %d rows changed (%v), want 1", update, n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkTamper runs the four checks of TestTamperDetected against the
// fixture's daemon: with tampered set each must fail, else each must pass.
func (f *logFixture) checkTamper(t *testing.T, rekor string, target int, tampered bool) {
	t.Helper()
	report := func(what string, ok bool, out string) {
		t.Helper()
		switch {
		case tampered && ok:
			t.Errorf("%s did not notice:\n%s", what, out)
		case !tampered && !ok:
			t.Fatalf("%s failed on the untampered log:\n%s", what, out)
		}
	}
	// An auditor with a read key, so the stored envelopes are checked too.
	code, out := f.auditKeyed(t, t.TempDir(), "log", "info", "--signer-key", f.signerPub())
	report("log info", code == 0, out)
	code, out = f.auditKeyed(t, t.TempDir(), "monitor", "--once", "--signer-key", f.signerPub())
	report("monitor", code == 0, out)
	ok, why := f.freshReceiptVerifies(t, target)
	report("gatelog verify of a receipt fetched now", ok, why)
	code, out = run(t, rekor, rekorEnv(t, f.logPub()), "verify", "--uuid", f.receipts[target].UUID, "--rekor_server", f.server, "--retry", "0")
	report("rekor-cli verify", code == 0, out)
}
