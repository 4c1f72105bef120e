package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/gatelog/gatelog/plugins/adapter"
)

// State is where an adapter is in its life.
type State int

// The adapter states. Only Ready serves calls.
const (
	// Starting: the first start has not finished yet.
	Starting State = iota
	// Ready: the process runs and answers health checks.
	Ready
	// Down: the process died, failed a health check or failed to start;
	// a restart is scheduled.
	Down
	// Refused: the executable failed its checksum or the adapter rejected
	// its settings; it is not retried until the host is recreated.
	Refused
	// Stopped: the host was closed.
	Stopped
)

func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Down:
		return "down"
	case Refused:
		return "refused"
	default:
		return "stopped"
	}
}

// Status is a snapshot of one adapter.
type Status struct {
	Name    string
	State   State
	Since   time.Time
	PID     int
	Version string
	// Restarts counts how often the adapter went down after it had run.
	Restarts  int
	LastError string
}

// supervisor owns one adapter: it starts the process, watches it and
// restarts it, and hands out the current client to callers.
type supervisor struct {
	name     string
	path     string
	args     []string
	sum      []byte
	settings map[string]string
	opts     *Options
	log      *slog.Logger

	poke        chan struct{} // a call failed: health-check now
	started     chan struct{} // closed after the first start attempt
	startedOnce sync.Once

	mu       sync.RWMutex
	state    State
	since    time.Time
	pc       *plugin.Client
	cmd      *exec.Cmd
	ac       *adapter.Client
	info     adapter.Info // kept while down, for Fallback
	pid      int
	restarts int
	lastErr  error
}

func refused(err error) bool {
	return errors.Is(err, ErrChecksumMismatch) || errors.Is(err, adapter.ErrBadSettings)
}

func (s *supervisor) run(ctx context.Context) {
	defer s.setState(Stopped, nil)
	// Start waits for the first attempt; its state and log come first.
	firstDone := func() { s.startedOnce.Do(func() { close(s.started) }) }
	defer firstDone()
	backoff := s.opts.MinBackoff
	for {
		err := s.start(ctx)
		switch {
		case ctx.Err() != nil:
			s.shutdown(true)
			return
		case err != nil && refused(err):
			s.setState(Refused, err)
			s.log.Error("adapter refused", "error", err)
			firstDone()
			<-ctx.Done()
			return
		case err != nil:
			s.setState(Down, err)
			s.log.Error("adapter failed to start", "error", err, "retry_in", backoff)
			firstDone()
		default:
			upAt := time.Now()
			st := s.status()
			s.log.Info("adapter started", "pid", st.PID, "version", st.Version, "path", s.path)
			firstDone()
			reason := s.watch(ctx)
			s.shutdown(ctx.Err() != nil)
			if ctx.Err() != nil {
				return
			}
			if time.Since(upAt) >= s.opts.MaxBackoff {
				backoff = s.opts.MinBackoff
			}
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			s.setState(Down, reason)
			s.log.Warn("adapter down, restarting", "reason", reason, "retry_in", backoff)
			if s.opts.OnDown != nil {
				s.opts.OnDown(ctx, s.name, reason)
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, s.opts.MaxBackoff)
	}
}

// start launches the process and brings it to Ready: checksum, handshake,
// Info, Configure.
func (s *supervisor) start(ctx context.Context) error {
	got, err := fileSHA256(s.path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, s.sum) {
		return fmt.Errorf("%w: %s has sha256 %x, the config expects %x", ErrChecksumMismatch, s.path, got, s.sum)
	}
	cmd := exec.Command(s.path, s.args...)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  adapter.Handshake,
		Plugins:          adapter.PluginSet(nil),
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: s.sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		// Adapters get none of the daemon's environment (it may hold
		// credentials); they need nothing from it.
		SkipHostEnv:  true,
		StartTimeout: s.opts.StartTimeout,
		// go-plugin's own parsing of plugin stderr type-asserts fields of
		// JSON lines and panics on unexpected types, which an adapter could
		// trigger; keep its logger off and read stderr ourselves.
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard}),
		Stderr: &stderrLog{ctx: ctx, log: s.log},
	})
	ok := false
	defer func() {
		if !ok {
			s.stopProcess(pc, cmd, false)
		}
	}()
	rpc, err := pc.Client()
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) || strings.Contains(err.Error(), plugin.ErrChecksumsDoNotMatch.Error()) {
			return fmt.Errorf("%w: %s changed while starting", ErrChecksumMismatch, s.path)
		}
		return fmt.Errorf("start %s: %w", s.path, err)
	}
	raw, err := rpc.Dispense(adapter.PluginName)
	if err != nil {
		return fmt.Errorf("dispense adapter from %s: %w", s.path, err)
	}
	ac, isClient := raw.(*adapter.Client)
	if !isClient {
		return fmt.Errorf("dispense adapter from %s: unexpected client type %T", s.path, raw)
	}
	callCtx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	info, err := ac.Info(callCtx)
	if err != nil {
		return fmt.Errorf("adapter info: %w", err)
	}
	if info.Name == "" {
		return errors.New("adapter info: the adapter gave no name")
	}
	if u := info.Unavailable; u != nil && (u.Status < 400 || u.Status > 599) {
		s.log.Warn("ignoring the adapter's unavailable answer: status must be 400-599", "status", u.Status)
		info.Unavailable = nil
	}
	if err := ac.Configure(callCtx, s.settings); err != nil {
		return fmt.Errorf("configure adapter %s: %w", info.Name, err)
	}
	pid := 0
	if rc := pc.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	s.mu.Lock()
	s.pc, s.cmd, s.ac, s.info, s.pid = pc, cmd, ac, info, pid
	s.mu.Unlock()
	s.setState(Ready, nil)
	ok = true
	return nil
}

// watch health-checks the running adapter until it fails or ctx is done,
// and returns why it failed.
func (s *supervisor) watch(ctx context.Context) error {
	t := time.NewTicker(s.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.poke:
		}
		if err := s.check(ctx); err != nil {
			return err
		}
	}
}

func (s *supervisor) check(ctx context.Context) error {
	s.mu.RLock()
	pc, ac := s.pc, s.ac
	s.mu.RUnlock()
	if pc.Exited() {
		return errors.New("adapter process exited")
	}
	callCtx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	if err := ac.Ping(callCtx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("health check: %w", err)
	}
	return nil
}

// shutdown stops the process, if any; calls fail with ErrUnavailable from
// here on until the next start. graceful asks the adapter to exit first (on
// Close); otherwise (it crashed or hung) it is killed at once.
func (s *supervisor) shutdown(graceful bool) {
	s.mu.Lock()
	pc, cmd := s.pc, s.cmd
	s.pc, s.cmd, s.ac, s.pid = nil, nil, nil, 0
	if s.state == Ready {
		s.state, s.since = Down, time.Now()
	}
	s.mu.Unlock()
	if pc != nil {
		s.stopProcess(pc, cmd, graceful)
	}
}

// stopProcess ends an adapter process. go-plugin's Kill first asks the
// adapter over gRPC to shut down and waits for that answer without a
// deadline, so a hung adapter would block it forever: kill the process
// directly when it is not expected to cooperate, or when it does not exit
// in time.
func (s *supervisor) stopProcess(pc *plugin.Client, cmd *exec.Cmd, graceful bool) {
	kill := func() {
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	}
	if !graceful {
		kill()
	}
	done := make(chan struct{})
	go func() {
		pc.Kill()
		close(done)
	}()
	t := time.NewTimer(s.opts.CallTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		kill()
		<-done
	}
}

func (s *supervisor) setState(st State, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != st {
		s.since = time.Now()
	}
	s.state = st
	if err != nil || st == Ready {
		s.lastErr = err
	}
}

func (s *supervisor) status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Status{Name: s.name, State: s.state, Since: s.since, PID: s.pid, Version: s.info.Version, Restarts: s.restarts}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	return st
}

// startErr is why the adapter is not ready, or nil when it is.
func (s *supervisor) startErr() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.state == Ready {
		return nil
	}
	if s.lastErr != nil {
		return s.lastErr
	}
	return fmt.Errorf("adapter is %s", s.state)
}

// client returns the adapter to call, or an error wrapping ErrUnavailable
// (and the reason it is down).
func (s *supervisor) client() (*adapter.Client, adapter.Info, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.state != Ready || s.ac == nil {
		err := fmt.Errorf("adapter %q is %s: %w", s.name, s.state, ErrUnavailable)
		if s.lastErr != nil {
			err = fmt.Errorf("%w: %w", err, s.lastErr)
		}
		return nil, adapter.Info{}, err
	}
	return s.ac, s.info, nil
}

// callFailed turns a failed call into an ErrUnavailable error and asks the
// supervisor to health-check now, so a dead adapter is restarted without
// waiting for the next tick.
func (s *supervisor) callFailed(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("adapter %q: %s: %w", s.name, op, ctx.Err())
	}
	select {
	case s.poke <- struct{}{}:
	default:
	}
	return fmt.Errorf("adapter %q: %s: %w: %w", s.name, op, ErrUnavailable, err)
}

func (s *supervisor) unavailable() *adapter.Response {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.info.Unavailable == nil {
		return nil
	}
	r := *s.info.Unavailable
	r.Headers = r.Headers.Clone()
	r.Body = slices.Clone(r.Body)
	return &r
}

// stderrLog sends an adapter process's stderr to the daemon's logger, one
// record per line. hclog JSON lines (what adapter.Serve writes) keep their
// level, message and fields; other lines are logged at info, and a Go panic
// or fatal error and everything after it at error.
type stderrLog struct {
	ctx       context.Context
	log       *slog.Logger
	mu        sync.Mutex
	buf       []byte
	panicking bool
}

const maxStderrLine = 64 << 10

func (w *stderrLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxStderrLine {
				w.emit(w.buf)
				w.buf = w.buf[:0]
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.emit(w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *stderrLog) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	var entry map[string]any
	if line[0] == '{' && json.Unmarshal(line, &entry) == nil {
		if msg, ok := entry["@message"].(string); ok {
			level := slog.LevelInfo
			if l, ok := entry["@level"].(string); ok {
				level = hclogLevel(l)
			}
			keys := make([]string, 0, len(entry))
			for k := range entry {
				switch k {
				case "@message", "@level", "@timestamp", "@caller":
				default:
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			attrs := make([]any, 0, 2*len(keys))
			for _, k := range keys {
				attrs = append(attrs, strings.TrimPrefix(k, "@"), entry[k])
			}
			w.log.Log(w.ctx, level, msg, attrs...)
			return
		}
	}
	s := string(line)
	if strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") {
		w.panicking = true
	}
	level := slog.LevelInfo
	if w.panicking {
		level = slog.LevelError
	}
	w.log.Log(w.ctx, level, s, "stream", "stderr")
}

func hclogLevel(l string) slog.Level {
	switch strings.ToLower(l) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
