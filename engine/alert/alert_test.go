package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/alert"
	"github.com/gatelog/gatelog/internal/poll"
)

// receiver is a real webhook receiver that can be switched down (503).
type receiver struct {
	t      *testing.T
	secret []byte
	down   atomic.Bool
	mu     sync.Mutex
	got    map[string]int // alert id -> deliveries
	total  int
	srv    *httptest.Server
}

func newReceiver(t *testing.T, secret []byte) *receiver {
	r := &receiver{t: t, secret: secret, got: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if r.down.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if !alert.VerifySignature(r.secret, req.Header.Get(alert.HeaderTimestamp), body, req.Header.Get(alert.HeaderSignature)) {
			t.Errorf("bad signature on %s", body)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var a alert.Alert
		if err := json.Unmarshal(body, &a); err != nil || a.ID != req.Header.Get(alert.HeaderAlertID) {
			t.Errorf("bad body %s: %v", body, err)
		}
		r.mu.Lock()
		r.got[a.ID]++
		r.total++
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func fastOptions() alert.Options {
	return alert.Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, AttemptTimeout: 2 * time.Second}
}

func mkAlert(i int) alert.Alert {
	return alert.Alert{ID: fmt.Sprintf("dec-%03d-0", i), Severity: "high", Code: "off_hours", Message: "deploy at 3am", Source: alert.SourcePolicy, Subject: "alice"}
}

func TestNoAlertLostAcrossOutageAndRestart(t *testing.T) {
	secret := []byte("s3cret")
	rcv := newReceiver(t, secret)
	rcv.down.Store(true)
	dir := t.TempDir()
	sinks := func() []alert.Sink {
		return []alert.Sink{alert.NewWebhook("secops", rcv.srv.URL, secret, nil), alert.NewWriter("log", io.Discard)}
	}

	// First life: the sink is down the whole time.
	o, err := alert.OpenOutbox(dir, sinks(), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	for i := range 30 {
		if ok, err := o.Enqueue(mkAlert(i)); err != nil || !ok {
			t.Fatalf("Enqueue %d = %v, %v", i, ok, err)
		}
	}
	// A producer that repeats itself (e.g. after a crash) adds nothing.
	if ok, err := o.Enqueue(mkAlert(3)); err != nil || ok {
		t.Fatalf("duplicate Enqueue = %v, %v; want false", ok, err)
	}
	poll.Until(t, "the log sink to drain while the webhook is down", func() bool {
		_, err := os.Stat(filepath.Join(dir, "sent", "log", "dec-029-0"))
		return err == nil
	})
	if o.Depth() != 30 {
		t.Fatalf("Depth = %d, want 30 waiting for the webhook", o.Depth())
	}
	cancel()
	<-done

	// Second life: more alerts arrive, the sink comes back.
	o, err = alert.OpenOutbox(dir, sinks(), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	if o.Depth() != 30 {
		t.Fatalf("after restart Depth = %d, want 30", o.Depth())
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	for i := 30; i < 50; i++ {
		if _, err := o.Enqueue(mkAlert(i)); err != nil {
			t.Fatal(err)
		}
	}
	rcv.down.Store(false)
	poll.Until(t, "every alert to be delivered", func() bool { return o.Depth() == 0 })
	if n := rcv.distinct(); n != 50 {
		t.Errorf("receiver got %d distinct alerts, want 50", n)
	}
	rcv.mu.Lock()
	for id, n := range rcv.got {
		if n != 1 {
			t.Errorf("alert %s delivered %d times", id, n)
		}
	}
	rcv.mu.Unlock()
	// Delivered alerts are remembered: enqueuing one again is refused.
	if ok, err := o.Enqueue(mkAlert(7)); err != nil || ok {
		t.Errorf("re-Enqueue of a delivered alert = %v, %v; want false", ok, err)
	}
}

func TestSubscribeSeesRecentAndLive(t *testing.T) {
	o, err := alert.OpenOutbox(t.TempDir(), nil, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := o.Enqueue(mkAlert(i)); err != nil {
			t.Fatal(err)
		}
	}
	recent, live, cancel := o.Subscribe(2)
	defer cancel()
	if len(recent) != 2 || recent[0].ID != "dec-001-0" || recent[1].ID != "dec-002-0" {
		t.Errorf("recent = %+v", recent)
	}
	if _, err := o.Enqueue(mkAlert(9)); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-live:
		if a.ID != "dec-009-0" {
			t.Errorf("live alert %s", a.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no live alert")
	}
	if o.Depth() != 0 {
		t.Errorf("with no sinks nothing should wait, Depth = %d", o.Depth())
	}
}

func TestEnqueueRejectsBadIDs(t *testing.T) {
	o, err := alert.OpenOutbox(t.TempDir(), nil, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../etc/passwd", "a/b", strings.Repeat("x", 200), ".hidden"} {
		a := mkAlert(1)
		a.ID = id
		if _, err := o.Enqueue(a); err == nil {
			t.Errorf("Enqueue with id %q succeeded", id)
		}
	}
}

func TestSlackFormat(t *testing.T) {
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	idx := int64(12)
	a := mkAlert(1)
	a.Action, a.Environment, a.DecisionID, a.LogIndex = "deploy", "production", "d-1", &idx
	if err := alert.NewSlack("slack", srv.URL, nil).Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	want := "*[high] off_hours*: deploy at 3am\nalice → deploy (production)\ndecision d-1, log index 12"
	if len(m) != 1 || m["text"] != want {
		t.Errorf("slack body = %q, want text %q", body, want)
	}
}

func TestSyslogSink(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := alert.NewSyslog("syslog", "udp", pc.LocalAddr().String(), "gatelog-test")
	defer s.Close()
	if err := s.Deliver(context.Background(), mkAlert(4)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg := string(buf[:n])
	// <27> = facility daemon (3) * 8 + severity err (3), for a "high" alert.
	if !strings.HasPrefix(msg, "<27>") || !strings.Contains(msg, "gatelog-test") || !strings.Contains(msg, `"id":"dec-004-0"`) {
		t.Errorf("syslog message = %q", msg)
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := alert.ParseConfig([]byte(`{"sinks":[{"type":"stdout"},{"type":"webhook","name":"secops","url":"https://example.invalid/hook","secret_file":"` + secretFile + `"},{"type":"syslog","network":"udp","address":"127.0.0.1:514"}],"max_backoff":"30s"}`))
	if err != nil {
		t.Fatal(err)
	}
	sinks, err := c.Build(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sinks {
		names = append(names, s.Name())
	}
	if strings.Join(names, ",") != "stdout,secops,syslog" || c.Options().MaxBackoff != 30*time.Second {
		t.Errorf("sinks %v, options %+v", names, c.Options())
	}
	for _, bad := range []string{
		`{"sinks":[{"type":"email"}]}`,
		`{"sinks":[{"type":"webhook"}]}`,
		`{"sinks":[{"type":"webhook","url":"ftp://x"}]}`,
		`{"sinks":[{"type":"stdout","colour":"red"}]}`,
		`{"max_backoff":"soon"}`,
		`{} {}`,
	} {
		if _, err := alert.ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) succeeded", bad)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"sinks":[{"type":"stdout"},{"type":"slack","url":"https://h/x"}],"retention":"48h"}`))
	f.Add([]byte(`{"sinks":[{"type":"webhook","url_file":"/x","timeout":"1s"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := alert.ParseConfig(raw)
		if err != nil {
			return
		}
		_ = c.Options()
	})
}

func TestCoversOnlyWhatItCanDeduplicate(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	opts := fastOptions()
	opts.Now = func() time.Time { return now }
	opts.Retention = 48 * time.Hour
	dir := t.TempDir()
	if _, err := alert.OpenOutbox(dir, nil, opts); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10 * time.Hour) // reopened later: created stays
	o, err := alert.OpenOutbox(dir, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{now, true},
		{now.Add(-9 * time.Hour), true},
		{now.Add(-11 * time.Hour), false}, // before the outbox existed
	} {
		if got := o.Covers(tc.at); got != tc.want {
			t.Errorf("Covers(%s) = %v, want %v", tc.at, got, tc.want)
		}
	}
	now = now.Add(30 * time.Hour)
	if o.Covers(now.Add(-25 * time.Hour)) {
		t.Error("Covers an alert older than half the retention")
	}
}

func TestBurstDetector(t *testing.T) {
	b := alert.NewBurstDetector(3, time.Minute)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		subject string
		at      time.Duration
		fire    bool
	}{
		{"bob", 0, false},
		{"bob", 10 * time.Second, false},
		{"alice", 15 * time.Second, false},
		{"bob", 20 * time.Second, true},  // 3 within a minute
		{"bob", 30 * time.Second, false}, // same burst
		{"bob", 50 * time.Second, false},
		{"bob", 3 * time.Minute, false}, // quiet: starts over
		{"bob", 3*time.Minute + time.Second, false},
		{"bob", 3*time.Minute + 2*time.Second, true},
	}
	for i, s := range steps {
		if fire, _ := b.Deny(s.subject, t0.Add(s.at)); fire != s.fire {
			t.Errorf("step %d (%s at %s): fire = %v", i, s.subject, s.at, fire)
		}
	}
	if fire, _ := alert.NewBurstDetector(0, time.Minute).Deny("x", t0); fire {
		t.Error("a detector with count 0 fired")
	}
}

// TestConcurrentEnqueueIsDurableAndOnce has many producers enqueue at
// once (the writer batches them): every distinct alert is stored once and
// is still pending after a restart, and of the producers racing with one
// ID exactly one is told it queued it.
func TestConcurrentEnqueueIsDurableAndOnce(t *testing.T) {
	rcv := newReceiver(t, []byte("k"))
	rcv.down.Store(true)
	dir := t.TempDir()
	sinks := []alert.Sink{alert.NewWebhook("secops", rcv.srv.URL, []byte("k"), nil)}
	o, err := alert.OpenOutbox(dir, sinks, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	const distinct, racers = 64, 16
	var queued atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, distinct+racers)
	for i := range distinct {
		wg.Go(func() {
			if ok, err := o.Enqueue(mkAlert(i)); err != nil || !ok {
				errs <- fmt.Errorf("Enqueue %d = %v, %v", i, ok, err)
			}
		})
	}
	shared := mkAlert(999)
	for range racers {
		wg.Go(func() {
			ok, err := o.Enqueue(shared)
			if err != nil {
				errs <- err
			}
			if ok {
				queued.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := queued.Load(); n != 1 {
		t.Errorf("%d racers were told they queued alert %s, want 1", n, shared.ID)
	}
	if o.Depth() != distinct+1 {
		t.Errorf("Depth = %d, want %d", o.Depth(), distinct+1)
	}
	reopened, err := alert.OpenOutbox(dir, sinks, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	if reopened.Depth() != distinct+1 {
		t.Errorf("after restart Depth = %d, want %d", reopened.Depth(), distinct+1)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "pending", ".tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
}

// TestEnqueueReportsAFailedWrite: an alert that cannot be stored is an
// error to its producer and is not held as pending; once the disk is back
// the same alert is accepted.
func TestEnqueueReportsAFailedWrite(t *testing.T) {
	dir := t.TempDir()
	o, err := alert.OpenOutbox(dir, []alert.Sink{alert.NewWriter("log", io.Discard)}, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "pending")); err != nil {
		t.Fatal(err)
	}
	if ok, err := o.Enqueue(mkAlert(1)); err == nil || ok || !strings.Contains(err.Error(), "dec-001-0") {
		t.Fatalf("Enqueue with pending/ gone = %v, %v; want an error naming the alert", ok, err)
	}
	if o.Depth() != 0 {
		t.Errorf("Depth = %d after a failed write, want 0", o.Depth())
	}
	if err := os.MkdirAll(filepath.Join(dir, "pending"), 0o700); err != nil {
		t.Fatal(err)
	}
	if ok, err := o.Enqueue(mkAlert(1)); err != nil || !ok {
		t.Fatalf("Enqueue after the disk came back = %v, %v; want true", ok, err)
	}
}

// TestRunForgetsDeliveredAlertsAfterRetention: a daemon that runs for
// months does not keep every delivered alert's ID: Run prunes done.log as it
// goes, not only at open, and an ID forgotten that way is accepted again.
func TestRunForgetsDeliveredAlertsAfterRetention(t *testing.T) {
	dir := t.TempDir()
	opts := fastOptions()
	opts.Retention, opts.PruneInterval = 300*time.Millisecond, 20*time.Millisecond
	o, err := alert.OpenOutbox(dir, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := o.Enqueue(mkAlert(1)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	if ok, _ := o.Enqueue(mkAlert(1)); ok {
		t.Fatal("a delivered alert was accepted again within its retention")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	poll.Until(t, "done.log to be pruned while running", func() bool {
		raw, err := os.ReadFile(filepath.Join(dir, "done.log"))
		return err == nil && !strings.Contains(string(raw), "dec-001-0")
	})
	if ok, err := o.Enqueue(mkAlert(1)); err != nil || !ok {
		t.Errorf("Enqueue after the retention = %v, %v; want true", ok, err)
	}
}
