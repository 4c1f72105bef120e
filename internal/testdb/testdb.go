// Package testdb starts the throwaway database servers of scripts/ for
// tests: PostgreSQL (scripts/postgres.sh) and MariaDB (scripts/mariadb.sh).
// One server of each kind is started per test binary, on first use; the
// binary's TestMain calls Stop after m.Run.
//
// A server that cannot be installed or started fails the test when the CI
// environment variable is set, and skips it with the reason otherwise.
package testdb

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // MariaDB
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL
)

type server struct {
	script string
	once   sync.Once
	dir    string
	dsn    string
	err    error
}

var (
	pg      = &server{script: "postgres.sh"}
	mariadb = &server{script: "mariadb.sh"}
	seq     atomic.Int64
)

// root is the module root (where go.mod is), found from the working
// directory, which go test sets to the package's folder.
func root() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		d = up
	}
}

func (s *server) start() {
	s.once.Do(func() {
		r, err := root()
		if err != nil {
			s.err = err
			return
		}
		dir, err := os.MkdirTemp("", "gatelog-testdb-")
		if err != nil {
			s.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(r, "scripts", s.script), "start")
		cmd.Env = append(os.Environ(), "GATELOG_PG_DIR="+dir, "GATELOG_MARIADB_DIR="+dir)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			s.err = fmt.Errorf("scripts/%s start: %v\n%s", s.script, err, tail(errb.String()))
			_ = os.RemoveAll(dir)
			return
		}
		s.dir, s.dsn = dir, strings.TrimSpace(out.String())
	})
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

func (s *server) stop() {
	if s.dir == "" {
		return
	}
	r, err := root()
	if err == nil {
		_ = exec.Command("bash", filepath.Join(r, "scripts", s.script), "stop", s.dir).Run()
	}
	_ = os.RemoveAll(s.dir)
	s.dir = ""
}

func (s *server) need(t testing.TB) string {
	t.Helper()
	s.start()
	if s.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is needed and could not be started: %v", s.script, s.err)
		}
		t.Skipf("SKIPPED (not in CI): %s could not be started: %v", s.script, s.err)
	}
	return s.dsn
}

// Stop stops every server this binary started. Call it from TestMain.
func Stop() {
	pg.stop()
	mariadb.stop()
}

// Postgres returns the DSN of a new, empty database on the shared test
// PostgreSQL server.
func Postgres(t testing.TB) string {
	t.Helper()
	dsn := pg.need(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), seq.Add(1))
	if err := admin(t, "pgx", dsn, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(dsn, "/")
	q := strings.Index(dsn[i:], "?")
	if q < 0 {
		return dsn[:i+1] + name
	}
	return dsn[:i+1] + name + dsn[i+q:]
}

// MariaDB returns a go-sql-driver DSN (user:pass@tcp(host:port)/db) of a
// new, empty database on the shared test MariaDB server, and the same as
// a mysql:// URL as `gatelog serve --log` takes it.
func MariaDB(t testing.TB) (dsn, url string) {
	t.Helper()
	u := mariadb.need(t)
	base := strings.TrimPrefix(u, "mysql://")
	name := fmt.Sprintf("t%d_%d", os.Getpid(), seq.Add(1))
	if err := admin(t, "mysql", base, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(base, "/")
	dsn = base[:i+1] + name
	return dsn, "mysql://" + dsn
}

// MariaDBProcess is the shared test MariaDB server's process, for tests
// that pause it (SIGSTOP, SIGCONT) to see what a daemon does while its log
// database hangs. A test that pauses it must resume it before it ends.
func MariaDBProcess(t testing.TB) *os.Process {
	t.Helper()
	mariadb.need(t)
	raw, err := os.ReadFile(filepath.Join(mariadb.dir, "mariadb.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("mariadb.pid: %v", err)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// CrashMariaDB kills the shared test MariaDB server with SIGKILL and waits
// until it is gone. RestartMariaDB starts it again.
func CrashMariaDB(t testing.TB) {
	t.Helper()
	p := MariaDBProcess(t)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 MariaDB: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for alive(p.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("MariaDB (pid %d) still running after kill -9", p.Pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive says whether process pid runs (a zombie, not reaped yet, does not).
func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(raw, ')') // the state follows the command name
	return i < 0 || i+2 >= len(raw) || raw[i+2] != 'Z'
}

// RestartMariaDB starts the shared test MariaDB server again after
// CrashMariaDB, on the same data and port (scripts/mariadb.sh restart), so
// every DSN handed out before works again once it is up.
func RestartMariaDB(t testing.TB) {
	t.Helper()
	mariadb.need(t)
	r, err := root()
	if err != nil {
		t.Fatal(err)
	}
	// Longer than the script's own wait for a recovering server (three
	// minutes), so that its failure, with the server's log, is what the
	// test reports.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", filepath.Join(r, "scripts", mariadb.script), "restart", mariadb.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/mariadb.sh restart: %v\n%s", err, tail(string(out)))
	}
}

// admin runs one statement on the server's own database.
func admin(t testing.TB, driver, dsn, stmt string) error {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}
