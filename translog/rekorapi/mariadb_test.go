package rekorapi_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/logtest"
	"github.com/gatelog/gatelog/internal/testdb"
	"github.com/gatelog/gatelog/translog"
)

// TestMain stops the MariaDB server the MariaDB tests started.
func TestMain(m *testing.M) {
	code := m.Run()
	testdb.Stop()
	os.Exit(code)
}

// onMariaDB makes openLog put its logs in MariaDB (Tessera's MySQL driver)
// instead of a directory; set only by TestConformanceOnMariaDB, which runs
// its subtests one at a time.
var onMariaDB bool

// logConfig is where openLog's log lives.
func logConfig(t testing.TB, cfg translog.Config) translog.Config {
	t.Helper()
	if onMariaDB {
		_, url := testdb.MariaDB(t)
		cfg.Dir = ""
		return logtest.MySQL(t, url, cfg)
	}
	return logtest.Files(t, cfg)
}

// The POSIX backend's conformance suite, against a log in MariaDB: append
// and await, proofs, the Rekor v1 API read by Rekor's own client, errors,
// consistency proofs.
func TestConformanceOnMariaDB(t *testing.T) {
	testdb.MariaDB(t) // skip (or, in CI, fail) here when there is no server
	onMariaDB = true
	t.Cleanup(func() { onMariaDB = false })
	for name, f := range map[string]func(*testing.T){
		"RekorClientReadsAndVerifies": TestRekorClientReadsAndVerifies,
		"ErrorsAreRekorShaped":        TestErrorsAreRekorShaped,
		"ConsistencyProofEndpoint":    TestConsistencyProofEndpoint,
		"DSSEBodyMatchesRekor":        TestDSSEBodyMatchesRekor,
	} {
		t.Run(name, f)
	}
}

// A second log on the same database with another key is refused.
func TestMariaDBRefusesAnotherKey(t *testing.T) {
	_, url := testdb.MariaDB(t)
	ctx := context.Background()
	l, err := translog.Open(ctx, logtest.MySQL(t, url, translog.Config{Key: newKey(t)}))
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the first checkpoint, then try another key.
	for range 100 {
		if _, _, err := l.Checkpoint(ctx); err == nil {
			break
		}
		waitABit()
	}
	_ = l.Close(ctx)
	if _, err := translog.Open(ctx, logtest.MySQL(t, url, translog.Config{Key: newKey(t)})); err == nil {
		t.Fatal("opened a MariaDB log with another key")
	} else {
		t.Logf("refused: %v", err)
	}
}

func waitABit() { time.Sleep(50 * time.Millisecond) }
