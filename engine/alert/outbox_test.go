package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatelog/gatelog/internal/poll"
)

// These tests look at the outbox's files, so they live inside the package:
// enqueueOneBatch holds the writer back to make one group commit of a known
// size, which concurrent producers only give by chance.

func testAlert(i int) Alert {
	return Alert{ID: fmt.Sprintf("dec-%03d-0", i), Severity: "high", Code: "off_hours", Message: "deploy at 3am", Source: SourcePolicy, Subject: "alice"}
}

func testOptions() Options {
	return Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, AttemptTimeout: 2 * time.Second}
}

// enqueueOneBatch enqueues as concurrently and has the writer take them
// all at once, as it does under load.
func enqueueOneBatch(t *testing.T, o *Outbox, as []Alert) {
	t.Helper()
	o.mu.Lock()
	if o.writing {
		o.mu.Unlock()
		t.Fatal("a writer is running")
	}
	o.writing = true // every Enqueue below queues behind this "writer"
	o.mu.Unlock()
	errs := make([]error, len(as))
	var wg sync.WaitGroup
	for i, a := range as {
		wg.Go(func() {
			ok, err := o.Enqueue(a)
			if err == nil && !ok {
				err = fmt.Errorf("Enqueue(%s) refused it", a.ID)
			}
			errs[i] = err
		})
	}
	poll.Until(t, "every alert to be queued", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.queue) == len(as)
	})
	go o.writeQueued()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// gate is a sink that takes only the alerts it is told to.
type gate struct {
	mu   sync.Mutex
	open map[string]bool
	got  map[string]int
}

func newGate() *gate { return &gate{open: map[string]bool{}, got: map[string]int{}} }

func (g *gate) Name() string { return "gate" }

func (g *gate) Deliver(_ context.Context, a Alert) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open[a.ID] {
		return errors.New("not yet")
	}
	g.got[a.ID]++
	return nil
}

func (g *gate) let(ids ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		g.open[id] = true
	}
}

func pendingFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "pending"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// run runs o until the test ends or stop is called.
func run(t *testing.T, o *Outbox) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return stop
}

func TestBatchIsOneFileAndReloads(t *testing.T) {
	dir := t.TempDir()
	sinks := []Sink{newGate()} // takes nothing
	o, err := OpenOutbox(dir, sinks, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var as []Alert
	for i := range n {
		as = append(as, testAlert(i))
	}
	enqueueOneBatch(t, o, as)
	if files := pendingFiles(t, dir); len(files) != 1 || !strings.HasPrefix(files[0], "seg-") || !strings.HasSuffix(files[0], ".jsonl") {
		t.Fatalf("pending/ holds %v, want one segment", files)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "pending", pendingFiles(t, dir)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(raw), "\n"); lines != n {
		t.Errorf("the segment has %d lines, want %d", lines, n)
	}
	reopened, err := OpenOutbox(dir, sinks, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if reopened.Depth() != n {
		t.Fatalf("after reopen Depth = %d, want %d", reopened.Depth(), n)
	}
	for _, a := range as {
		p := reopened.pending[a.ID]
		if p == nil || p.Alert.Message != a.Message || p.Alert.Time == "" {
			t.Errorf("alert %s reloaded as %+v", a.ID, p)
		}
	}
	// New alerts after a reopen number after the reloaded ones.
	if ok, err := reopened.Enqueue(testAlert(n)); err != nil || !ok {
		t.Fatalf("Enqueue after reopen = %v, %v", ok, err)
	}
	if p := reopened.pending[testAlert(n).ID]; p.Seq <= n {
		t.Errorf("seq after reopen = %d, want > %d", p.Seq, n)
	}
}

func TestBatchFileGoesWithItsLastAlert(t *testing.T) {
	dir := t.TempDir()
	g := newGate()
	o, err := OpenOutbox(dir, []Sink{g}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	as := []Alert{testAlert(1), testAlert(2), testAlert(3)}
	enqueueOneBatch(t, o, as)
	batch := pendingFiles(t, dir)
	if len(batch) != 1 {
		t.Fatalf("pending/ holds %v", batch)
	}
	stop := run(t, o)
	g.let(as[0].ID, as[1].ID)
	poll.Until(t, "two of three alerts to be delivered", func() bool { return o.Depth() == 1 })
	if files := pendingFiles(t, dir); len(files) != 1 || files[0] != batch[0] {
		t.Fatalf("with one alert of the batch pending, pending/ holds %v, want %v", files, batch)
	}
	// A restart now delivers only the alert still pending.
	stop()
	reopened, err := OpenOutbox(dir, []Sink{g}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if reopened.Depth() != 1 || reopened.pending[as[2].ID] == nil {
		t.Fatalf("after reopen Depth = %d, want only %s", reopened.Depth(), as[2].ID)
	}
	g.let(as[2].ID)
	run(t, reopened)
	poll.Until(t, "the last alert to be delivered", func() bool { return reopened.Depth() == 0 })
	if files := pendingFiles(t, dir); len(files) != 0 {
		t.Errorf("every alert delivered, pending/ still holds %v", files)
	}
}

func TestDeliveredIDRefusedAfterReopen(t *testing.T) {
	dir := t.TempDir()
	g := newGate()
	g.let(testAlert(1).ID)
	o, err := OpenOutbox(dir, []Sink{g}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	run(t, o)
	if ok, err := o.Enqueue(testAlert(1)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	poll.Until(t, "the alert to be delivered", func() bool { return o.Depth() == 0 })
	reopened, err := OpenOutbox(dir, []Sink{g}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := reopened.Enqueue(testAlert(1)); err != nil || ok {
		t.Errorf("re-Enqueue of a delivered alert after reopen = %v, %v; want false", ok, err)
	}
	if reopened.Depth() != 0 || g.got[testAlert(1).ID] != 1 {
		t.Errorf("Depth %d, deliveries %v", reopened.Depth(), g.got)
	}
}

func TestOpenPrunesTheDoneJournal(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	opts := testOptions()
	opts.Retention = 24 * time.Hour
	opts.Now = func() time.Time { return now }
	o, err := OpenOutbox(dir, nil, opts) // no sinks: retired at once
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2} {
		if ok, err := o.Enqueue(testAlert(i)); err != nil || !ok {
			t.Fatalf("Enqueue = %v, %v", ok, err)
		}
	}
	now = now.Add(20 * time.Hour)
	if ok, err := o.Enqueue(testAlert(3)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	now = now.Add(5 * time.Hour) // 1 and 2 are past the retention, 3 is not
	reopened, err := OpenOutbox(dir, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "done.log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "2026-12-01T23:00:00Z dec-003-0\n"; string(raw) != want {
		t.Errorf("done.log after open = %q, want %q", raw, want)
	}
	if ok, _ := reopened.Enqueue(testAlert(3)); ok {
		t.Error("an alert within the retention was accepted again")
	}
	if ok, err := reopened.Enqueue(testAlert(1)); err != nil || !ok {
		t.Errorf("Enqueue of an alert past the retention = %v, %v; want true", ok, err)
	}
}

// TestMigratesTheOlderLayout: a daemon upgraded over an outbox of one
// file per alert loses nothing: pending alerts are delivered to the sinks
// that had not taken them, delivered ones stay refused, done/ moves into
// done.log.
func TestMigratesTheOlderLayout(t *testing.T) {
	dir := t.TempDir()
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []int{1, 3} {
		raw, err := json.Marshal(stored{Seq: uint64(7 + i), Alert: testAlert(id)})
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(dir, "pending", testAlert(id).ID+".json"), raw)
	}
	write(filepath.Join(dir, "sent", "log", testAlert(3).ID), nil) // 3 reached one sink of two
	write(filepath.Join(dir, "done", testAlert(2).ID+".json"), []byte(`{}`))
	write(filepath.Join(dir, "done", testAlert(4).ID+".json"), []byte(`{}`))
	old := time.Now().Add(-31 * 24 * time.Hour) // past the default retention
	if err := os.Chtimes(filepath.Join(dir, "done", testAlert(4).ID+".json"), old, old); err != nil {
		t.Fatal(err)
	}

	g := newGate()
	var logged strings.Builder
	var logMu sync.Mutex
	sinks := []Sink{NewWriter("log", lockedWriter{&logMu, &logged}), g}
	o, err := OpenOutbox(dir, sinks, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if o.Depth() != 2 {
		t.Fatalf("Depth = %d, want 2 (alerts 1 and 3)", o.Depth())
	}
	if _, err := os.Stat(filepath.Join(dir, "done")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("done/ is still there: %v", err)
	}
	if ok, _ := o.Enqueue(testAlert(2)); ok {
		t.Error("an alert delivered before the upgrade was accepted again")
	}
	g.let(testAlert(1).ID, testAlert(3).ID)
	run(t, o)
	poll.Until(t, "the migrated alerts to be delivered", func() bool { return o.Depth() == 0 })
	if files := pendingFiles(t, dir); len(files) != 0 {
		t.Errorf("pending/ still holds %v", files)
	}
	logMu.Lock()
	if strings.Contains(logged.String(), testAlert(3).ID) || !strings.Contains(logged.String(), testAlert(1).ID) {
		t.Errorf("the log sink got %q; want alert 1 and not 3, which it had taken", logged.String())
	}
	logMu.Unlock()
	if g.got[testAlert(1).ID] != 1 || g.got[testAlert(3).ID] != 1 {
		t.Errorf("gate deliveries %v", g.got)
	}
	reopened, err := OpenOutbox(dir, sinks, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2, 3} {
		if ok, _ := reopened.Enqueue(testAlert(i)); ok {
			t.Errorf("alert %d accepted again after the migration", i)
		}
	}
	if ok, err := reopened.Enqueue(testAlert(4)); err != nil || !ok {
		t.Errorf("alert 4, past its retention before the upgrade: Enqueue = %v, %v; want true", ok, err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestTornWritesAreIgnoredOnOpen: a crash can leave a half-written last
// line in done.log (appended without fsync) or a temporary batch file
// whose rename never happened (its Enqueue had not returned). Open skips
// both, and the journal stays usable for the lines after.
func TestTornWritesAreIgnoredOnOpen(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOutbox(dir, nil, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := o.Enqueue(testAlert(1)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "done.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(time.Now().UTC().Format(time.RFC3339Nano) + " dec-00"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	torn := `{"seq":9,"alert":{"id":"dec-009-0","severity":"high","code":"off_hours","mess`
	if err := os.WriteFile(filepath.Join(dir, "pending", ".tmp-123456"), []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	// A segment whose last batch was cut short: dec-007-0 was written and
	// fsync'd, the next batch was not.
	seg := `{"seq":7,"alert":{"id":"dec-007-0","code":"off_hours"}}` + "\n" + torn
	if err := os.WriteFile(filepath.Join(dir, "pending", "seg-7.jsonl"), []byte(seg), 0o600); err != nil {
		t.Fatal(err)
	}

	g := newGate() // takes nothing: what open loads stays pending
	o, err = OpenOutbox(dir, []Sink{g}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if o.Depth() != 1 || o.pending["dec-007-0"] == nil {
		t.Errorf("Depth = %d, want 1: dec-007-0 and not the torn batches", o.Depth())
	}
	if files := pendingFiles(t, dir); len(files) != 1 || files[0] != "seg-7.jsonl" {
		t.Errorf("pending/ holds %v after open, want seg-7.jsonl", files)
	}
	if ok, _ := o.Enqueue(testAlert(1)); ok {
		t.Error("the line before the torn one was lost")
	}
	if ok, err := o.Enqueue(testAlert(2)); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	o, err = OpenOutbox(dir, nil, testOptions()) // no sinks: 2 and 7 retire
	if err != nil {
		t.Fatal(err)
	}
	if files := pendingFiles(t, dir); len(files) != 0 {
		t.Errorf("with nothing pending, pending/ holds %v after open", files)
	}
	for _, i := range []int{1, 2, 7} {
		if ok, _ := o.Enqueue(testAlert(i)); ok {
			t.Errorf("alert %d, retired around a torn line, was accepted again", i)
		}
	}
}

// TestCorruptBatchFails: only a segment's last write can be torn (the
// writer appends no more to a segment after a failed write), so a bad
// line followed by good ones is damage an operator must see.
func TestCorruptBatchFails(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pending"), 0o700); err != nil {
		t.Fatal(err)
	}
	good := `{"seq":1,"alert":{"id":"dec-001-0","code":"off_hours"}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "pending", "seg-1.jsonl"), []byte(good+"not json\n"+good), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOutbox(dir, nil, testOptions()); err == nil || !strings.Contains(err.Error(), "seg-1.jsonl") {
		t.Errorf("OpenOutbox over a corrupt batch = %v, want an error naming it", err)
	}
}

// TestSegmentsRotateAndGo: past segmentSize the writer starts a new
// segment, and the old one goes once its alerts are delivered, while the
// daemon runs.
func TestSegmentsRotateAndGo(t *testing.T) {
	dir := t.TempDir()
	g := newGate()
	o, err := OpenOutbox(dir, []Sink{g}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	var first []Alert
	var ids []string
	for i := 0; ; i++ {
		a := testAlert(i)
		a.Message = strings.Repeat("m", 1000)
		first = append(first, a)
		ids = append(ids, a.ID)
		if len(first)*1000 > segmentSize {
			break
		}
	}
	enqueueOneBatch(t, o, first)
	full := pendingFiles(t, dir)
	last := testAlert(len(first))
	if ok, err := o.Enqueue(last); err != nil || !ok {
		t.Fatalf("Enqueue = %v, %v", ok, err)
	}
	files := pendingFiles(t, dir)
	if len(full) != 1 || len(files) != 2 {
		t.Fatalf("pending/ holds %v, then %v: want one segment, then two", full, files)
	}
	g.let(ids...)
	run(t, o)
	poll.Until(t, "the first segment's alerts to be delivered", func() bool { return o.Depth() == 1 })
	if files := pendingFiles(t, dir); len(files) != 1 || files[0] == full[0] {
		t.Errorf("after delivering its alerts, pending/ holds %v; want only the current segment, not %s", files, full[0])
	}
	g.let(last.ID)
	poll.Until(t, "the last alert to be delivered", func() bool { return o.Depth() == 0 })
	if files := pendingFiles(t, dir); len(files) != 1 {
		t.Errorf("the current segment is kept for the next batches; pending/ holds %v", files)
	}
	reopened, err := OpenOutbox(dir, []Sink{g}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if files := pendingFiles(t, dir); reopened.Depth() != 0 || len(files) != 0 {
		t.Errorf("after reopen Depth %d, pending/ %v; want nothing", reopened.Depth(), files)
	}
}

// TestRetiredAlertNotRevivedPastRetention: a segment holds alerts already
// delivered next to one still pending (its sink is down for longer than
// the retention). The delivered ones' IDs are kept while the segment is
// there, or a restart would read them as pending and deliver them again.
func TestRetiredAlertNotRevivedPastRetention(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	opts := testOptions()
	opts.Retention = time.Hour
	opts.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	g := newGate()
	o, err := OpenOutbox(dir, []Sink{g}, opts)
	if err != nil {
		t.Fatal(err)
	}
	enqueueOneBatch(t, o, []Alert{testAlert(1), testAlert(2)})
	g.let(testAlert(1).ID)
	stop := run(t, o)
	poll.Until(t, "alert 1 to be delivered", func() bool { return o.Depth() == 1 })
	stop()
	mu.Lock()
	now = now.Add(3 * time.Hour)
	mu.Unlock()
	o.prune()
	reopened, err := OpenOutbox(dir, []Sink{g}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if reopened.Depth() != 1 || reopened.pending[testAlert(2).ID] == nil {
		t.Errorf("after the retention and a restart Depth = %d, want only alert 2", reopened.Depth())
	}
	g.let(testAlert(2).ID)
	run(t, reopened)
	poll.Until(t, "alert 2 to be delivered", func() bool { return reopened.Depth() == 0 })
	if g.got[testAlert(1).ID] != 1 {
		t.Errorf("alert 1 delivered %d times, want 1", g.got[testAlert(1).ID])
	}
	if files := pendingFiles(t, dir); len(files) != 0 {
		t.Errorf("pending/ holds %v", files)
	}
	reopened.prune()
	if ok, err := reopened.Enqueue(testAlert(1)); err != nil || !ok {
		t.Errorf("once no file holds it, alert 1 past its retention: Enqueue = %v, %v; want true", ok, err)
	}
}

// TestCloseWaitsForTheWriter: Close returns only once the batch being
// written is durable, releases the files, and refuses later alerts; the
// alert written before it is pending after a reopen.
func TestCloseWaitsForTheWriter(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOutbox(dir, []Sink{newGate()}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	o.writing = true // hold the writer back
	o.mu.Unlock()
	enqueued := make(chan error, 1)
	go func() {
		_, err := o.Enqueue(testAlert(1))
		enqueued <- err
	}()
	poll.Until(t, "the alert to be queued", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.queue) == 1
	})
	closed := make(chan error, 1)
	go func() { closed <- o.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a batch still to write", err)
	case <-time.After(50 * time.Millisecond):
	}
	go o.writeQueued()
	if err := <-enqueued; err != nil {
		t.Fatalf("the alert queued before Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := o.Enqueue(testAlert(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close: %v, want ErrClosed", err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	again, err := OpenOutbox(dir, []Sink{newGate()}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Close() })
	if n := again.Depth(); n != 1 {
		t.Errorf("after reopen %d alerts pending, want the one written before Close", n)
	}
}
