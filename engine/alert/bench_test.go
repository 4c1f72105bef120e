package alert_test

import (
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/gatelog/gatelog/engine/alert"
)

// BenchmarkEnqueue measures what the daemon pays per alert at night, when
// most decisions raise one: concurrent producers (as many as the decisions
// in flight) each enqueue distinct alerts into an outbox on a real disk,
// with one fast sink draining it as the daemon's stdout sink does.
func BenchmarkEnqueue(b *testing.B) {
	o, err := alert.OpenOutbox(b.TempDir(), []alert.Sink{alert.NewWriter("log", io.Discard)}, fastOptions())
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	go o.Run(ctx)
	var n atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a := mkAlert(0)
			a.ID = fmt.Sprintf("dec-%d-0", n.Add(1))
			if ok, err := o.Enqueue(a); err != nil || !ok {
				b.Errorf("Enqueue = %v, %v", ok, err)
				return
			}
		}
	})
}
