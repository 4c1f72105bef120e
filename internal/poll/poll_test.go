package poll_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/poll"
)

func TestUntilReturnsOnceTrue(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(50 * time.Millisecond)
		n.Store(1)
	}()
	poll.Until(t, "n to become 1", func() bool { return n.Load() == 1 })
	if n.Load() != 1 {
		t.Fatal("Until returned before the condition held")
	}
}
