// Package poll is the one way tests wait for something to become true:
// a condition checked every 20ms until a deadline (60s, long enough for a
// loaded 2-core CI machine, where nothing in the suite should need it).
package poll

import (
	"fmt"
	"testing"
	"time"
)

// Timeout is how long Until waits before failing the test.
const Timeout = 60 * time.Second

// Until calls cond every 20ms until it returns true, failing t after
// Timeout with what it was waiting for and, when given, what detail()
// says then (a daemon's log, say).
func Until(t testing.TB, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %s waiting for %s", Timeout, what)
			for _, d := range detail {
				msg += "\n" + d()
			}
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
