package translog_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/internal/poll"
	"github.com/gatelog/gatelog/internal/testdb"
	"github.com/gatelog/gatelog/translog"
)

// TestMain stops the MariaDB server the MariaDB tests started.
func TestMain(m *testing.M) {
	code := m.Run()
	testdb.Stop()
	os.Exit(code)
}

// An append to a log in MariaDB fails closed within its context while the
// database hangs (SIGSTOP), a lookup fails after the store's read timeout,
// and appends succeed again once it resumes.
// The envelope store once wrote with the log's lifetime context, so an
// append waited for the database however short its deadline.
func TestAppendFailsInTimeWhileMariaDBHangs(t *testing.T) {
	_, url := testdb.MariaDB(t)
	db := testdb.MariaDBProcess(t)
	fl := newFaultKeys(t, "")
	l, err := translog.Open(context.Background(), logtest.MySQL(t, url, translog.Config{Key: fl.key, CheckpointInterval: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	fl.log = l
	first, _ := fl.mustAppend()

	if err := db.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The signal is asynchronous: a query in flight could still be answered.
	poll.Until(t, "MariaDB to stop", func() bool { return processState(db.Pid) == "T" })
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = db.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	env, pem := fl.envelope("while-stopped")
	done, looked := make(chan error, 1), make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := l.Append(ctx, "while-stopped", env, pem)
		done <- err
	}()
	// A lookup fails too, after the store's read timeout, rather than hang.
	go func() {
		_, err := l.Lookup(first)
		looked <- err
	}()
	hang := time.After(60 * time.Second)
	select {
	case err := <-done:
		if !errors.Is(err, translog.ErrUnavailable) {
			t.Fatalf("append while MariaDB is stopped: %v, want ErrUnavailable", err)
		}
	case <-hang:
		resume()
		t.Fatal("append with a 1s deadline still waiting a minute into the outage")
	}
	select {
	case err := <-looked:
		if !errors.Is(err, translog.ErrUnavailable) {
			t.Fatalf("lookup while MariaDB is stopped: %v, want ErrUnavailable", err)
		}
	case <-hang:
		resume()
		t.Fatal("lookup still waiting a minute into the outage")
	}
	resume()
	for try := 0; ; try++ {
		if _, _, err := fl.append(); err == nil {
			break
		} else if try == 50 {
			t.Fatalf("append after MariaDB resumed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// processState is the state letter /proc gives process pid ("T": stopped),
// "" when it cannot be read.
func processState(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	_, rest, ok := strings.Cut(string(raw), ") ")
	if !ok || rest == "" {
		return ""
	}
	return rest[:1]
}
