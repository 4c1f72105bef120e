package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatelog/gatelog/internal/durable"
)

// Options tunes an Outbox. Zero values take the defaults.
type Options struct {
	// MinBackoff and MaxBackoff bound the wait between attempts to deliver
	// one alert to one sink (doubling from min, capped at max).
	MinBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds one delivery attempt.
	AttemptTimeout time.Duration
	// Retention is how long the IDs of delivered alerts are kept to
	// refuse duplicates.
	Retention time.Duration
	// PruneInterval is how often Run forgets delivered alerts older than
	// Retention (they are also forgotten at every open).
	PruneInterval time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// Outbox is the durable queue between alert producers and sinks.
//
// On disk (dir): pending/<id>.json holds an alert not yet taken by every
// sink, sent/<sink>/<id> marks a delivery, done/<id>.json keeps a
// delivered alert for Retention so that its ID is not accepted twice.
type Outbox struct {
	dir   string
	sinks []Sink
	opts  Options
	log   *slog.Logger

	mu      sync.Mutex
	seq     uint64
	pending map[string]*pendingAlert
	// inflight holds the alerts being written (by ID), queue those waiting
	// for the writer, writing whether a writer runs (see Enqueue).
	inflight map[string]*write
	queue    []*write
	writing  bool
	wake     map[string]chan struct{}
	subs     map[chan Alert]struct{}
	recent   []Alert
	created  time.Time
}

type pendingAlert struct {
	stored
	// left holds the sinks still to deliver to, with their retry state.
	left map[string]*attempt
}

// write is an alert on its way to pending/; done is closed once err says
// how it went.
type write struct {
	st   stored
	raw  []byte
	err  error
	done chan struct{}
}

type attempt struct {
	n    int
	next time.Time
}

// stored is the on-disk form of a pending alert.
type stored struct {
	Seq   uint64 `json:"seq"`
	Alert Alert  `json:"alert"`
}

// recentSize is how many alerts the stream replays on request.
const recentSize = 100

// OpenOutbox opens (or creates) the outbox in dir for sinks and loads the
// alerts that were pending when it last stopped. Call Run to deliver.
func OpenOutbox(dir string, sinks []Sink, opts Options) (*Outbox, error) {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 10 * time.Second
	}
	if opts.Retention <= 0 {
		opts.Retention = 30 * 24 * time.Hour
	}
	if opts.PruneInterval <= 0 {
		opts.PruneInterval = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	o := &Outbox{
		dir: dir, sinks: sinks, opts: opts, log: opts.Logger,
		pending: map[string]*pendingAlert{}, inflight: map[string]*write{}, wake: map[string]chan struct{}{}, subs: map[chan Alert]struct{}{},
	}
	seen := map[string]bool{}
	for _, s := range sinks {
		if !idRE.MatchString(s.Name()) || seen[s.Name()] {
			return nil, fmt.Errorf("%w: sink name %q must be unique and use letters, digits, '.', '_' or '-'", ErrInvalid, s.Name())
		}
		seen[s.Name()] = true
		o.wake[s.Name()] = make(chan struct{}, 1)
		if err := os.MkdirAll(filepath.Join(dir, "sent", s.Name()), 0o700); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
	}
	for _, d := range []string{"pending", "done"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
	}
	if err := o.load(); err != nil {
		return nil, err
	}
	o.prune()
	if err := o.loadCreated(); err != nil {
		return nil, err
	}
	return o, nil
}

// loadCreated reads (or, on first open, writes) when the outbox was made.
func (o *Outbox) loadCreated() error {
	path := filepath.Join(o.dir, "created")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		o.created = o.opts.Now().UTC()
		return durable.WriteFile(path, []byte(o.created.Format(time.RFC3339Nano)))
	}
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if o.created, err = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(raw))); err != nil {
		return fmt.Errorf("outbox: %s is corrupt: %v", path, err)
	}
	return nil
}

// Covers reports whether an alert raised at t can be handed to Enqueue
// without risk of a second delivery: the outbox existed then, and an alert
// it delivered at that time is still remembered (well within Retention).
func (o *Outbox) Covers(t time.Time) bool {
	return !t.Before(o.created) && t.After(o.opts.Now().Add(-o.opts.Retention/2))
}

// load reads pending alerts back after a restart.
func (o *Outbox) load() error {
	ents, err := os.ReadDir(filepath.Join(o.dir, "pending"))
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !idRE.MatchString(id) {
			// A temporary file of a write that never completed: its
			// Enqueue returned an error, so nobody relies on it.
			_ = os.Remove(filepath.Join(o.dir, "pending", e.Name()))
			continue
		}
		raw, err := os.ReadFile(filepath.Join(o.dir, "pending", e.Name()))
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		var st stored
		if err := json.Unmarshal(raw, &st); err != nil || st.Alert.ID != id {
			return fmt.Errorf("outbox: pending alert %s is corrupt (move it aside to continue): %v", e.Name(), err)
		}
		p := &pendingAlert{stored: st, left: map[string]*attempt{}}
		for _, s := range o.sinks {
			if _, err := os.Stat(o.sentPath(s.Name(), id)); err != nil {
				p.left[s.Name()] = &attempt{}
			}
		}
		o.pending[id] = p
		o.seq = max(o.seq, st.Seq)
	}
	for id, p := range o.pending {
		if len(p.left) == 0 {
			o.finish(id)
		}
	}
	return nil
}

// prune forgets delivered alerts older than the retention.
func (o *Outbox) prune() {
	dir := filepath.Join(o.dir, "done")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	cutoff := o.opts.Now().Add(-o.opts.Retention)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func (o *Outbox) pendingPath(id string) string { return filepath.Join(o.dir, "pending", id+".json") }
func (o *Outbox) donePath(id string) string    { return filepath.Join(o.dir, "done", id+".json") }
func (o *Outbox) sentPath(sink, id string) string {
	return filepath.Join(o.dir, "sent", sink, id)
}

// Enqueue stores a durably (written and fsync'd) and schedules its
// delivery to every sink. It reports false, and does nothing, when an
// alert with the same ID is already pending or was delivered.
//
// Concurrent calls share their disk work (group commit): one writer takes
// every alert queued while it wrote the last batch and writes them
// together, so a burst of alerting decisions waits for about one write
// each, not for one another's.
func (o *Outbox) Enqueue(a Alert) (bool, error) {
	if err := a.Validate(); err != nil {
		return false, err
	}
	if a.Time == "" {
		a.Time = o.opts.Now().UTC().Format(time.RFC3339Nano)
	}
	o.mu.Lock()
	if _, ok := o.pending[a.ID]; ok {
		o.mu.Unlock()
		return false, nil
	}
	if w, ok := o.inflight[a.ID]; ok {
		// Being written for another caller: its outcome is ours.
		o.mu.Unlock()
		<-w.done
		return false, w.err
	}
	if _, err := os.Stat(o.donePath(a.ID)); err == nil {
		o.mu.Unlock()
		return false, nil
	}
	o.seq++
	w := &write{st: stored{Seq: o.seq, Alert: a}, done: make(chan struct{})}
	raw, err := json.Marshal(w.st)
	if err != nil {
		o.mu.Unlock()
		return false, err
	}
	w.raw = raw
	o.inflight[a.ID] = w
	o.queue = append(o.queue, w)
	if !o.writing {
		o.writing = true
		go o.writeQueued()
	}
	o.mu.Unlock()
	<-w.done
	return w.err == nil, w.err
}

// writeQueued writes queued alerts, a batch at a time, until none is left.
func (o *Outbox) writeQueued() {
	for {
		o.mu.Lock()
		batch := o.queue
		o.queue = nil
		if len(batch) == 0 {
			o.writing = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		files := make([]durable.File, len(batch))
		for i, w := range batch {
			files[i] = durable.File{Path: o.pendingPath(w.st.Alert.ID), Data: w.raw}
		}
		errs := durable.WriteFiles(files)
		o.mu.Lock()
		for i, w := range batch {
			delete(o.inflight, w.st.Alert.ID)
			if errs[i] != nil {
				w.err = fmt.Errorf("outbox: store alert %s: %w", w.st.Alert.ID, errs[i])
				continue
			}
			o.publish(w.st)
		}
		o.mu.Unlock()
		for _, w := range batch {
			close(w.done)
		}
	}
}

// publish makes a stored alert pending for every sink and tells the
// delivery loops and subscribers. Called with o.mu held.
func (o *Outbox) publish(st stored) {
	p := &pendingAlert{stored: st, left: map[string]*attempt{}}
	for _, s := range o.sinks {
		p.left[s.Name()] = &attempt{}
	}
	a := st.Alert
	o.pending[a.ID] = p
	if len(p.left) == 0 {
		o.finish(a.ID)
	}
	for _, ch := range o.wake {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	o.recent = append(o.recent, a)
	if len(o.recent) >= 2*recentSize {
		// Trimmed in steps of recentSize, so not copied on every alert.
		o.recent = slices.Clone(o.recent[len(o.recent)-recentSize:])
	}
	for ch := range o.subs {
		select {
		case ch <- a:
		default: // a slow subscriber misses live alerts; sinks never do
		}
	}
}

// Depth is the number of alerts not yet delivered to every sink.
func (o *Outbox) Depth() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending)
}

// Subscribe returns the most recent alerts (up to n, oldest first) and a
// channel of the alerts enqueued from now on, until cancel is called.
func (o *Outbox) Subscribe(n int) (recent []Alert, live <-chan Alert, cancel func()) {
	ch := make(chan Alert, 64)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.subs[ch] = struct{}{}
	n = min(max(n, 0), len(o.recent))
	recent = slices.Clone(o.recent[len(o.recent)-n:])
	return recent, ch, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		delete(o.subs, ch)
	}
}

// Run delivers alerts to every sink, and forgets delivered ones once
// their retention is over, until ctx ends.
func (o *Outbox) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range o.sinks {
		wg.Go(func() { o.deliverLoop(ctx, s) })
	}
	wg.Go(func() {
		t := time.NewTicker(o.opts.PruneInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				o.prune()
			}
		}
	})
	wg.Wait()
}

// due returns the alerts sink may try now, oldest first, and when the
// next one becomes due.
func (o *Outbox) due(sink string, now time.Time) ([]Alert, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*pendingAlert
	var next time.Time
	for _, p := range o.pending {
		at, ok := p.left[sink]
		if !ok {
			continue
		}
		if at.next.After(now) {
			if next.IsZero() || at.next.Before(next) {
				next = at.next
			}
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *pendingAlert) int { return cmp.Compare(a.Seq, b.Seq) })
	as := make([]Alert, len(out))
	for i, p := range out {
		as[i] = p.Alert
	}
	return as, next
}

func (o *Outbox) deliverLoop(ctx context.Context, s Sink) {
	for {
		due, next := o.due(s.Name(), o.opts.Now())
		for _, a := range due {
			if ctx.Err() != nil {
				return
			}
			actx, cancel := context.WithTimeout(ctx, o.opts.AttemptTimeout)
			err := s.Deliver(actx, a)
			cancel()
			o.record(s.Name(), a.ID, err)
		}
		if len(due) > 0 {
			continue
		}
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(max(next.Sub(o.opts.Now()), time.Millisecond))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-o.wake[s.Name()]:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// record notes the outcome of one delivery attempt.
func (o *Outbox) record(sink, id string, err error) {
	if err == nil && len(o.sinks) > 1 {
		// Mark before forgetting, so that a restart delivers the alert
		// only to the sinks that have not taken it. The mark is not
		// fsync'd: one lost in a crash means this sink gets the alert
		// again, which at-least-once delivery allows, and a sync here cost
		// a disk flush per alert and sink, in series. With one sink there
		// is nothing to mark: the alert is retired (finish) right away,
		// and one not retired yet is delivered again after a restart.
		if werr := os.WriteFile(o.sentPath(sink, id), nil, 0o600); werr != nil {
			o.log.Error("outbox: cannot record a delivery; it will be repeated", "sink", sink, "alert", id, "err", werr)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pending[id]
	if !ok {
		return
	}
	at := p.left[sink]
	if at == nil {
		return
	}
	if err == nil {
		delete(p.left, sink)
		if len(p.left) == 0 {
			o.finish(id)
		}
		return
	}
	at.n++
	wait := o.opts.MinBackoff << min(at.n-1, 20)
	if wait > o.opts.MaxBackoff || wait <= 0 {
		wait = o.opts.MaxBackoff
	}
	// Jitter so that sinks coming back are not hit by every alert at once.
	wait = wait/2 + rand.N(wait/2+1)
	at.next = o.opts.Now().Add(wait)
	o.log.Warn("alert delivery failed; will retry", "sink", sink, "alert", id, "attempt", at.n, "retry_in", wait.Round(time.Millisecond), "err", err)
}

// finish moves a fully delivered alert to done/. Called with o.mu held.
func (o *Outbox) finish(id string) {
	delete(o.pending, id)
	if err := os.Rename(o.pendingPath(id), o.donePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		o.log.Error("outbox: cannot retire a delivered alert", "alert", id, "err", err)
		return
	}
	for _, s := range o.sinks {
		_ = os.Remove(o.sentPath(s.Name(), id))
	}
}
