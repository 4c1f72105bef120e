package alert_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/gatelog/gatelog/engine/alert"
)

func ExampleOutbox() {
	dir, _ := os.MkdirTemp("", "outbox-example")
	defer os.RemoveAll(dir)
	stdout := alert.NewWriter("stdout", os.Stdout)
	o, err := alert.OpenOutbox(dir, []alert.Sink{stdout}, alert.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// Enqueue returns once the alert is on disk; delivery follows.
	queued, err := o.Enqueue(alert.Alert{
		ID: "6f1c-0", Time: "2026-11-25T03:12:00Z", Severity: "high", Code: "off_hours",
		Message: "production deploy outside working hours", Source: alert.SourcePolicy, Subject: "alice",
	})
	fmt.Println("queued:", queued, err)
	ctx, cancel := context.WithCancel(context.Background())
	go o.Run(ctx)
	for o.Depth() > 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	// Output:
	// queued: true <nil>
	// {"id":"6f1c-0","time":"2026-11-25T03:12:00Z","severity":"high","code":"off_hours","message":"production deploy outside working hours","source":"policy","subject":"alice"}
}
