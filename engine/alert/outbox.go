package alert

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
// On disk (dir):
//
//   - pending/seg-<seq>.jsonl is a segment of the pending journal: the
//     alerts stored, a JSON line each ({"seq":…,"alert":{…}}), <seq> being
//     the first one's. Each group commit (see Enqueue) appends its batch to
//     the current segment and fsyncs it: one write and one flush per batch,
//     where a file per alert cost a create, a rename and a directory flush
//     each. A new segment starts past segmentSize, after a failed write and
//     at every open (its creation is made durable with a directory fsync);
//     a segment other than the current one is removed once its last alert
//     is retired. Only the last batch of a segment can be torn (a crash
//     while it was written: its Enqueue had not returned), so open skips
//     unreadable lines at a segment's end and refuses one anywhere else.
//   - sent/<sink>/<id> marks a delivery to one of several sinks.
//   - done.log lists the delivered (retired) alerts, a line each:
//     "<RFC 3339 time> <id>\n", so that an ID is refused for Retention. It
//     is appended to and not fsync'd, which would cost a flush per
//     delivered alert: a line lost in a power cut can only have an alert
//     that was already delivered delivered again (read back as pending
//     from a segment still on disk, or accepted again by Enqueue), which
//     at-least-once delivery allows; the older layout's rename into done/
//     was not fsync'd either. It is read into memory at open and rewritten
//     (temporary file, rename, directory fsync) at open when it holds an
//     unreadable line, such as a torn last one (skipped), and at every
//     prune that forgets IDs: those past Retention that no file of
//     pending/ holds any more (see doneEntry).
//   - created holds when the outbox was made (see Covers).
//
// The older layout, one file per alert (pending/<id>.json, done/<id>.json),
// is still read: such a pending alert is delivered and its file removed
// as for a segment of one, and done/ is moved into done.log at open.
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
	// done holds the delivered alerts within Retention, as done.log does
	// on disk; doneLog is that file, open to append.
	done    map[string]doneEntry
	doneLog *os.File
	// current is the segment the writer appends to (nil: it starts one).
	current *pendingFile
	// closed is set by Close; idle is signalled when a writer stops.
	closed bool
	idle   *sync.Cond
}

// ErrClosed is returned by Enqueue after Close.
var ErrClosed = errors.New("outbox is closed")

type pendingAlert struct {
	stored
	// file is where the alert is stored, shared with the other alerts of its segment.
	file *pendingFile
	// left holds the sinks still to deliver to, with their retry state.
	left map[string]*attempt
}

// pendingFile is one file of pending/ and how many of its alerts are not
// retired yet; at zero it is removed, unless it is the current segment.
// f and size belong to the writer (writeQueued), and are set only on the
// current segment.
type pendingFile struct {
	path    string
	live    int
	removed bool
	f       *os.File
	size    int
}

// doneEntry is when a delivered alert was retired, and the file of
// pending/ that still holds it (nil or removed: none). Its ID is not
// forgotten while that file is there: a restart would read the alert
// from it as pending again.
type doneEntry struct {
	at   time.Time
	file *pendingFile
}

// segmentSize is the size past which the writer starts a new segment, so
// that a delivered segment's space comes back while alerts flow.
const segmentSize = 1 << 20

// write is an alert on its way to pending/; done is closed once err says
// how it went. alert is the alert's JSON, marshalled before the lock.
type write struct {
	st    stored
	alert []byte
	err   error
	done  chan struct{}
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
		done: map[string]doneEntry{},
	}
	o.idle = sync.NewCond(&o.mu)
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
	if err := os.MkdirAll(filepath.Join(dir, "pending"), 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	if err := o.loadDone(); err != nil {
		return nil, err
	}
	if err := o.load(); err != nil {
		return nil, err
	}
	if err := durable.SyncDirs(filepath.Join(dir, "pending")); err != nil {
		// The removals of delivered segments must be durable before
		// prune forgets their IDs.
		return nil, fmt.Errorf("outbox: %w", err)
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

// loadDone reads done.log, and the older layout's done/, into o.done,
// and opens done.log to append. It rewrites the journal first when it
// held unreadable lines (appending after a torn one would spoil the next)
// or done/ had IDs to move in. Expired IDs are left to prune, which
// knows, once pending/ is read, which ones no file holds any more.
func (o *Outbox) loadDone() error {
	rewrite := false
	raw, err := os.ReadFile(o.donePath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("outbox: %w", err)
	}
	for len(raw) > 0 {
		line, rest, complete := bytes.Cut(raw, []byte{'\n'})
		raw = rest
		ts, id, ok := strings.Cut(string(line), " ")
		t, terr := time.Parse(time.RFC3339Nano, ts)
		if !complete || !ok || terr != nil || !idRE.MatchString(id) {
			// A line torn by a crash, or garbage a power cut left in the
			// unsynced tail: that alert's dedup is lost, nothing else.
			rewrite = true
			continue
		}
		if old, ok := o.done[id]; !ok || t.After(old.at) {
			o.done[id] = doneEntry{at: t}
		}
	}
	legacy := filepath.Join(o.dir, "done")
	ents, err := os.ReadDir(legacy)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("outbox: %w", err)
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		fi, ierr := e.Info()
		if !ok || !idRE.MatchString(id) || ierr != nil {
			continue
		}
		if old, ok := o.done[id]; !ok || fi.ModTime().After(old.at) {
			o.done[id] = doneEntry{at: fi.ModTime()}
		}
	}
	if rewrite || len(ents) > 0 {
		if err := o.compactDone(); err != nil {
			return err
		}
	} else if err := o.openDoneLog(); err != nil {
		return err
	}
	if err == nil {
		// done/ is in done.log, durably: the older layout can go.
		for _, e := range ents {
			_ = os.Remove(filepath.Join(legacy, e.Name()))
		}
		if err := os.Remove(legacy); err != nil && !errors.Is(err, os.ErrNotExist) {
			o.log.Warn("outbox: cannot remove the older layout's done/ (its IDs are in done.log)", "err", err)
		}
	}
	return nil
}

// compactDone rewrites done.log with o.done, durably, and reopens it to
// append. Called with o.mu held (or before the outbox is shared).
func (o *Outbox) compactDone() error {
	ids := make([]string, 0, len(o.done))
	for id := range o.done {
		ids = append(ids, id)
	}
	// Oldest first, as appends would have left it: easier to read.
	slices.SortFunc(ids, func(a, b string) int { return o.done[a].at.Compare(o.done[b].at) })
	buf := make([]byte, 0, len(ids)*64)
	for _, id := range ids {
		buf = appendDoneLine(buf, o.done[id].at, id)
	}
	if err := durable.WriteFile(o.donePath(), buf); err != nil {
		return fmt.Errorf("outbox: rewrite %s: %w", o.donePath(), err)
	}
	return o.openDoneLog()
}

func (o *Outbox) openDoneLog() error {
	if o.doneLog != nil {
		_ = o.doneLog.Close()
		o.doneLog = nil
	}
	f, err := os.OpenFile(o.donePath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	o.doneLog = f
	return nil
}

func appendDoneLine(buf []byte, t time.Time, id string) []byte {
	buf = t.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, id...)
	return append(buf, '\n')
}

// load reads pending alerts back after a restart: segments, and the
// older layout's one file per alert. Alerts done.log lists as delivered
// are skipped (the removal of their file had not reached the disk).
func (o *Outbox) load() error {
	dir := filepath.Join(o.dir, "pending")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		f := &pendingFile{path: path}
		if seq, ok := strings.CutPrefix(e.Name(), "seg-"); ok && strings.HasSuffix(seq, ".jsonl") {
			if err := o.loadSegment(f); err != nil {
				return err
			}
			// Even an empty segment's name is taken: number past it.
			if n, err := strconv.ParseUint(strings.TrimSuffix(seq, ".jsonl"), 10, 64); err == nil {
				o.seq = max(o.seq, n)
			}
		} else if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && idRE.MatchString(id) {
			raw, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("outbox: %w", err)
			}
			var st stored
			if err := json.Unmarshal(raw, &st); err != nil || st.Alert.ID != id {
				return fmt.Errorf("outbox: pending alert %s is corrupt (move it aside to continue): %v", path, err)
			}
			o.loadPending(st, f)
		} else {
			// A temporary file of a write that never completed: its
			// Enqueue returned an error, or never returned, so nobody
			// relies on it.
			_ = os.Remove(path)
			continue
		}
		if f.live == 0 {
			o.removeFile(f)
		}
	}
	for id, p := range o.pending {
		if len(p.left) == 0 {
			o.finish(id)
		}
	}
	return nil
}

// loadSegment reads the alerts of a segment. A torn end (a batch whose
// write or flush had not finished: its Enqueue never reported success) is
// skipped; a bad line followed by good ones is damage, reported.
func (o *Outbox) loadSegment(f *pendingFile) error {
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	var torn, tornAt int
	for n := 1; len(raw) > 0; n++ {
		line, rest, complete := bytes.Cut(raw, []byte{'\n'})
		raw = rest
		var st stored
		if err := json.Unmarshal(line, &st); !complete || err != nil || !idRE.MatchString(st.Alert.ID) {
			if torn == 0 {
				tornAt = n
			}
			torn++
			continue
		}
		if torn > 0 {
			return fmt.Errorf("outbox: pending segment %s is corrupt at line %d (move it aside to continue)", f.path, tornAt)
		}
		o.loadPending(st, f)
	}
	if torn > 0 {
		o.log.Warn("outbox: skipped the torn end of a pending segment (a write a crash interrupted; its alerts had not been reported stored)", "file", f.path, "line", tornAt)
	}
	return nil
}

// loadPending makes st, read from f, pending for the sinks that have no
// mark of its delivery.
func (o *Outbox) loadPending(st stored, f *pendingFile) {
	id := st.Alert.ID
	o.seq = max(o.seq, st.Seq)
	if e, ok := o.done[id]; ok {
		e.file = f
		o.done[id] = e
		return
	}
	if _, ok := o.pending[id]; ok {
		return
	}
	p := &pendingAlert{stored: st, file: f, left: map[string]*attempt{}}
	f.live++
	for _, s := range o.sinks {
		if _, err := os.Stat(o.sentPath(s.Name(), id)); err != nil {
			p.left[s.Name()] = &attempt{}
		}
	}
	o.pending[id] = p
}

// prune forgets delivered alerts older than the retention that no file
// of pending/ holds any more, and rewrites done.log without them. An idle
// current segment with nothing pending is closed and removed first, so
// that a quiet outbox does not keep its IDs past the retention.
func (o *Outbox) prune() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur := o.current; cur != nil && cur.live == 0 && !o.writing {
		// No writer runs (o.writing), and the next reads o.current
		// under o.mu: nobody is appending to it.
		o.current = nil
		o.retireSegment(cur)
	}
	cutoff := o.opts.Now().Add(-o.opts.Retention)
	n := len(o.done)
	maps.DeleteFunc(o.done, func(_ string, e doneEntry) bool {
		return e.at.Before(cutoff) && (e.file == nil || e.file.removed)
	})
	if len(o.done) == n {
		return
	}
	// The files removed since the last prune must stay removed before
	// their IDs are forgotten.
	if err := durable.SyncDirs(filepath.Join(o.dir, "pending")); err != nil {
		o.log.Error("outbox: cannot sync pending/; retrying at the next prune", "err", err)
		return
	}
	if err := o.compactDone(); err != nil {
		o.log.Error("outbox: cannot compact the delivered alerts' journal; retrying at the next prune", "err", err)
	}
}

func (o *Outbox) segmentPath(seq uint64) string {
	return filepath.Join(o.dir, "pending", "seg-"+strconv.FormatUint(seq, 10)+".jsonl")
}
func (o *Outbox) donePath() string { return filepath.Join(o.dir, "done.log") }
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
	raw, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false, fmt.Errorf("store alert %s: %w", a.ID, ErrClosed)
	}
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
	if _, ok := o.done[a.ID]; ok {
		o.mu.Unlock()
		return false, nil
	}
	o.seq++
	w := &write{st: stored{Seq: o.seq, Alert: a}, alert: raw, done: make(chan struct{})}
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
// A batch is one append and one fsync of the current segment (see
// Outbox), however many alerts it holds.
func (o *Outbox) writeQueued() {
	var buf []byte
	for {
		o.mu.Lock()
		batch := o.queue
		o.queue = nil
		seg := o.current
		if len(batch) == 0 {
			o.writing = false
			o.idle.Broadcast()
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		buf = buf[:0]
		for _, w := range batch {
			// The line json.Marshal(stored) would give, without
			// marshalling the alert again under the writer.
			buf = append(buf, `{"seq":`...)
			buf = strconv.AppendUint(buf, w.st.Seq, 10)
			buf = append(buf, `,"alert":`...)
			buf = append(buf, w.alert...)
			buf = append(buf, "}\n"...)
		}
		var err error
		if seg == nil || seg.size >= segmentSize {
			seg, err = o.createSegment(batch[0].st.Seq)
		}
		if err == nil {
			err = seg.append(buf)
		}
		o.mu.Lock()
		if seg != nil && seg != o.current {
			// A new segment (or none, its creation having failed)
			// replaces the current one.
			o.retireSegment(o.current)
			o.current = seg
		}
		for _, w := range batch {
			delete(o.inflight, w.st.Alert.ID)
			if err != nil {
				w.err = fmt.Errorf("outbox: store alert %s: %w", w.st.Alert.ID, err)
				continue
			}
			seg.live++
		}
		if err == nil {
			for _, w := range batch {
				o.publish(w.st, seg)
			}
		} else if o.current != nil {
			// The segment may end in part of this batch: append no more
			// to it, so that only its end can be torn (see loadSegment).
			cur := o.current
			o.current = nil
			o.retireSegment(cur)
		}
		o.mu.Unlock()
		for _, w := range batch {
			close(w.done)
		}
	}
}

// createSegment starts a segment of the pending journal, durably named.
func (o *Outbox) createSegment(seq uint64) (*pendingFile, error) {
	path := o.segmentPath(seq)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := durable.SyncDirs(filepath.Dir(path)); err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil, err
	}
	return &pendingFile{path: path, f: f}, nil
}

// append writes a batch at the end of the segment and fsyncs it.
func (b *pendingFile) append(buf []byte) error {
	n, err := b.f.Write(buf)
	b.size += n
	if err != nil {
		return err
	}
	return b.f.Sync()
}

// retireSegment closes a segment that is no longer current, and removes
// it if none of its alerts is pending. Called with o.mu held.
func (o *Outbox) retireSegment(b *pendingFile) {
	if b == nil {
		return
	}
	if b.f != nil {
		_ = b.f.Close()
		b.f = nil
	}
	if b.live == 0 {
		o.removeFile(b)
	}
}

func (o *Outbox) removeFile(b *pendingFile) {
	if err := os.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		o.log.Error("outbox: cannot remove a delivered segment", "file", b.path, "err", err)
		return
	}
	b.removed = true
}

// publish makes a stored alert pending for every sink and tells the
// delivery loops and subscribers. Called with o.mu held.
func (o *Outbox) publish(st stored, f *pendingFile) {
	p := &pendingAlert{stored: st, file: f, left: map[string]*attempt{}}
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

// Close waits for the alerts being written and releases the outbox's
// files. Call it after Run has returned; Enqueue then fails with
// ErrClosed. It is safe to call more than once.
func (o *Outbox) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	for o.writing {
		o.idle.Wait()
	}
	var errs []error
	if o.current != nil && o.current.f != nil {
		errs = append(errs, o.current.f.Close())
		o.current.f = nil
	}
	if o.doneLog != nil {
		errs = append(errs, o.doneLog.Close())
		o.doneLog = nil
	}
	return errors.Join(errs...)
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

// finish retires a fully delivered alert: done.log remembers its ID, and
// its file of pending/ goes once none of its alerts is pending. Called
// with o.mu held.
func (o *Outbox) finish(id string) {
	p := o.pending[id]
	delete(o.pending, id)
	now := o.opts.Now()
	o.done[id] = doneEntry{at: now, file: p.file}
	var err error
	if o.doneLog == nil {
		err = errors.New("done.log is not open")
	} else {
		var line [192]byte // a time, a space, an ID (up to 128 bytes), '\n'
		_, err = o.doneLog.Write(appendDoneLine(line[:0], now, id))
	}
	if err != nil {
		// Its file stays: after a restart the alert is delivered
		// again rather than forgotten.
		o.log.Error("outbox: cannot retire a delivered alert; it will be delivered again after a restart", "alert", id, "err", err)
		return
	}
	if p.file.live--; p.file.live == 0 && p.file != o.current {
		o.removeFile(p.file)
	}
	if len(o.sinks) > 1 {
		for _, s := range o.sinks {
			_ = os.Remove(o.sentPath(s.Name(), id))
		}
	}
}
