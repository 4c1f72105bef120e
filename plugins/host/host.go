// Package host runs gatelog's CI adapters as supervised go-plugin processes
// and gives the daemon one call per direction: Translate a native payload
// into a Request, Render an outcome into the native answer.
//
// Every adapter executable is checked against a sha256 checksum before it is
// started, health-checked while it runs and restarted with backoff when it
// dies. While an adapter is down its calls fail with ErrUnavailable, and the
// daemon answers with Fallback: the CI system's native "blocked" (fail
// closed).
package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// Errors the daemon branches on. Errors from Translate and Render wrap at
// most one of them, together with the cause.
var (
	// ErrUnknownAdapter: no adapter of that name is configured (answer 404).
	ErrUnknownAdapter = errors.New("unknown adapter")
	// ErrUnavailable: the adapter is not running (starting, restarting after
	// a crash, refused) or a call to it failed. Answer with Fallback.
	ErrUnavailable = errors.New("adapter unavailable")
	// ErrChecksumMismatch: the executable is not the one the config names
	// by checksum; the adapter is refused and not retried.
	ErrChecksumMismatch = errors.New("adapter executable checksum mismatch")
	// ErrInvalidResponse: the adapter rendered something the host refuses
	// to send (e.g. no valid HTTP status). Answer with Fallback.
	ErrInvalidResponse = errors.New("adapter produced an invalid response")
)

// Config describes one adapter endpoint, /v1/adapters/{Name}.
type Config struct {
	// Name is the endpoint name: letters, digits, '-' and '_'.
	Name string
	// Builtin runs the named adapter built into the gatelog binary, as
	// `gatelog adapter serve Builtin`. Mutually exclusive with Command.
	Builtin string
	// Command is the path of a third-party adapter executable.
	Command string
	// Args are passed to Command.
	Args []string
	// SHA256 is the hex sha256 of Command, required with it. Built-in
	// adapters are checked against the checksum the gatelog binary had when
	// the host was created.
	SHA256 string
	// Settings are passed to the adapter's Configure after every start.
	Settings map[string]string
}

// Options tune a Host. The zero value is usable except for Logger.
type Options struct {
	// Logger receives the host's events and every adapter's stderr, tagged
	// with adapter=<name>. Required.
	Logger *slog.Logger
	// Self is the gatelog executable used for built-in adapters; default
	// os.Executable().
	Self string
	// HealthInterval is how often a running adapter is health-checked;
	// default 1s.
	HealthInterval time.Duration
	// CallTimeout bounds each call to an adapter (and each health check);
	// default 5s.
	CallTimeout time.Duration
	// OnDown, if set, is told each time a running adapter goes down (it
	// is then restarted with backoff): the daemon raises an alert and logs
	// the event. ctx ends when the host closes.
	OnDown func(ctx context.Context, name string, reason error)
	// StartTimeout bounds the start of an adapter process up to its first
	// answer; default 10s.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before restarting a crashed
	// adapter; it doubles on each consecutive failure. Defaults 250ms, 30s.
	MinBackoff, MaxBackoff time.Duration
	// MaxResponseBytes bounds a rendered body; default 1 MiB.
	MaxResponseBytes int
	// MaxPayloadBytes bounds a payload passed to an adapter; default 3 MiB
	// (gRPC refuses messages over 4 MiB). Larger payloads are bad payloads.
	MaxPayloadBytes int
}

func (o *Options) setDefaults() error {
	if o.Logger == nil {
		return errors.New("host: Options.Logger is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.HealthInterval, time.Second)
	def(&o.CallTimeout, 5*time.Second)
	def(&o.StartTimeout, 10*time.Second)
	def(&o.MinBackoff, 250*time.Millisecond)
	def(&o.MaxBackoff, 30*time.Second)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = 1 << 20
	}
	if o.MaxPayloadBytes <= 0 || o.MaxPayloadBytes > 3<<20 {
		o.MaxPayloadBytes = 3 << 20
	}
	return nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// Host supervises the configured adapters. Create it with New, then Start
// it; it is safe for concurrent use.
type Host struct {
	opts   Options
	sups   map[string]*supervisor
	names  []string
	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates the configs; it starts nothing.
func New(configs []Config, opts Options) (*Host, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	h := &Host{opts: opts, sups: make(map[string]*supervisor, len(configs))}
	var selfSum []byte
	for i, c := range configs {
		if !validName.MatchString(c.Name) {
			return nil, fmt.Errorf("adapter %d: name %q: want letters, digits, '-' or '_' (at most 63)", i, c.Name)
		}
		if _, dup := h.sups[c.Name]; dup {
			return nil, fmt.Errorf("adapter %q: configured twice", c.Name)
		}
		s := &supervisor{
			name:     c.Name,
			settings: maps.Clone(c.Settings),
			opts:     &h.opts,
			log:      opts.Logger.With("adapter", c.Name),
			poke:     make(chan struct{}, 1),
			started:  make(chan struct{}),
			state:    Starting,
		}
		switch {
		case c.Builtin != "" && c.Command != "":
			return nil, fmt.Errorf("adapter %q: set builtin or command, not both", c.Name)
		case c.Builtin != "":
			if c.SHA256 != "" {
				return nil, fmt.Errorf("adapter %q: sha256 applies to a command, not to built-in %q", c.Name, c.Builtin)
			}
			if selfSum == nil {
				self := h.opts.Self
				if self == "" {
					var err error
					if self, err = os.Executable(); err != nil {
						return nil, fmt.Errorf("adapter %q: locate the gatelog executable: %w", c.Name, err)
					}
					h.opts.Self = self
				}
				sum, err := fileSHA256(self)
				if err != nil {
					return nil, fmt.Errorf("adapter %q: %w", c.Name, err)
				}
				selfSum = sum
			}
			s.path, s.args, s.sum = h.opts.Self, []string{"adapter", "serve", c.Builtin}, selfSum
		case c.Command != "":
			sum, err := hex.DecodeString(c.SHA256)
			if err != nil || len(sum) != sha256.Size {
				return nil, fmt.Errorf("adapter %q: sha256 %q: want the 64 hex digits of the executable's sha256 (gatelog adapter checksum %s)", c.Name, c.SHA256, c.Command)
			}
			s.path, s.args, s.sum = c.Command, slices.Clone(c.Args), sum
		default:
			return nil, fmt.Errorf("adapter %q: set builtin (e.g. \"tekton\") or command", c.Name)
		}
		h.sups[c.Name] = s
		h.names = append(h.names, c.Name)
	}
	slices.Sort(h.names)
	return h, nil
}

// Start launches every adapter and waits until each has been started once
// (or ctx is done). The error joins the adapters that did not come up; they
// are retried in the background except when refused (checksum mismatch or
// settings the adapter rejects). Adapters run until Close.
func (h *Host) Start(ctx context.Context) error {
	h.mu.Lock()
	if h.cancel != nil {
		h.mu.Unlock()
		return errors.New("host: already started")
	}
	// The supervisors outlive the call; Close stops them.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	h.mu.Unlock()

	for _, name := range h.names {
		s := h.sups[name]
		h.wg.Go(func() { s.run(runCtx) })
	}
	var errs []error
	for _, name := range h.names {
		s := h.sups[name]
		select {
		case <-s.started:
			if err := s.startErr(); err != nil {
				errs = append(errs, fmt.Errorf("adapter %q: %w", name, err))
			}
		case <-ctx.Done():
			return fmt.Errorf("host: waiting for adapters: %w", ctx.Err())
		}
	}
	return errors.Join(errs...)
}

// Close stops every adapter process and waits for the supervisors.
func (h *Host) Close() error {
	h.mu.Lock()
	cancel := h.cancel
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	h.wg.Wait()
	return nil
}

// Names lists the configured adapter endpoints, sorted.
func (h *Host) Names() []string { return slices.Clone(h.names) }

// Status reports every adapter's state, sorted by name, for /readyz and
// metrics.
func (h *Host) Status() []Status {
	out := make([]Status, 0, len(h.names))
	for _, name := range h.names {
		out = append(out, h.sups[name].status())
	}
	return out
}

func (h *Host) supervisor(name string) (*supervisor, error) {
	s, ok := h.sups[name]
	if !ok {
		return nil, fmt.Errorf("adapter %q: %w", name, ErrUnknownAdapter)
	}
	return s, nil
}

// Translate asks adapter name to turn a native payload into a Request and
// checks the result (adapter.ValidateRequest). The subject in the Request is
// only what the payload claims: the daemon must replace it with the verified
// identity, or mark it vouched for when the caller may vouch. Source.Adapter
// is set to the endpoint name and Source.AdapterVersion to the adapter's
// version.
//
// Errors: ErrUnknownAdapter; adapter.ErrBadPayload (the payload's fault,
// also decision.ErrBadRequest); adapter.ErrInvalidRequest (the adapter's
// output was refused); ErrUnavailable (the adapter is down or failed). In
// every case pass the error on to Render so the CI system gets its native
// "blocked".
func (h *Host) Translate(ctx context.Context, name string, body []byte, headers map[string][]string) (decision.Request, error) {
	s, err := h.supervisor(name)
	if err != nil {
		return decision.Request{}, err
	}
	if len(body) > h.opts.MaxPayloadBytes {
		return decision.Request{}, fmt.Errorf("adapter %q: %w: payload of %d bytes exceeds %d", name, adapter.ErrBadPayload, len(body), h.opts.MaxPayloadBytes)
	}
	c, info, err := s.client()
	if err != nil {
		return decision.Request{}, err
	}
	callCtx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
	defer cancel()
	req, err := c.Translate(callCtx, adapter.Native{Body: body, Headers: headers})
	switch {
	case err == nil:
	case errors.Is(err, adapter.ErrBadPayload), errors.Is(err, adapter.ErrInvalidRequest):
		return decision.Request{}, fmt.Errorf("adapter %q: %w", name, err)
	default:
		return decision.Request{}, s.callFailed(ctx, "translate", err)
	}
	if err := adapter.ValidateRequest(req); err != nil {
		return decision.Request{}, fmt.Errorf("adapter %q: %w", name, err)
	}
	req.Source.Adapter = name
	req.Source.AdapterVersion = info.Version
	return req, nil
}

// Render asks adapter name for the native answer to a payload, given the
// receipt for its request or the error that stopped the decision (any error
// from Translate or from deciding; decideErr wins when both are set). The
// error is classified with FailureOf; only bad-request and explicit
// *adapter.Failure messages reach the CI system.
//
// Errors: ErrUnknownAdapter, ErrUnavailable, ErrInvalidResponse. On any
// error answer with Fallback.
func (h *Host) Render(ctx context.Context, name string, body []byte, headers map[string][]string, receipt *decision.Receipt, decideErr error) (adapter.Response, error) {
	s, err := h.supervisor(name)
	if err != nil {
		return adapter.Response{}, err
	}
	out := adapter.Outcome{Receipt: receipt}
	if decideErr != nil || receipt == nil {
		out = adapter.Outcome{Failure: FailureOf(decideErr)}
	}
	if len(body) > h.opts.MaxPayloadBytes {
		// Translate refused it; answer without sending it over the wire.
		body = nil
	}
	c, _, err := s.client()
	if err != nil {
		return adapter.Response{}, err
	}
	callCtx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
	defer cancel()
	resp, err := c.Render(callCtx, adapter.Native{Body: body, Headers: headers}, out)
	if err != nil {
		return adapter.Response{}, s.callFailed(ctx, "render", err)
	}
	if resp.Status < 200 || resp.Status > 599 {
		return adapter.Response{}, fmt.Errorf("adapter %q: %w: status %d", name, ErrInvalidResponse, resp.Status)
	}
	if len(resp.Body) > h.opts.MaxResponseBytes {
		return adapter.Response{}, fmt.Errorf("adapter %q: %w: body of %d bytes exceeds %d", name, ErrInvalidResponse, len(resp.Body), h.opts.MaxResponseBytes)
	}
	return resp, nil
}

// FailureOf classifies an error from the request path for rendering: host
// errors first (an adapter that is down or misbehaved is Unavailable or
// Internal), then adapter.FailureOf.
func FailureOf(err error) *adapter.Failure {
	var f *adapter.Failure
	switch {
	case errors.As(err, &f):
		return f
	case errors.Is(err, ErrUnavailable):
		return &adapter.Failure{Kind: adapter.Unavailable, Message: "gatelog adapter is unavailable"}
	case errors.Is(err, adapter.ErrInvalidRequest), errors.Is(err, ErrInvalidResponse):
		return &adapter.Failure{Kind: adapter.Internal, Message: "gatelog adapter failed"}
	default:
		return adapter.FailureOf(err)
	}
}

// Fallback is the answer for adapter name when Render could not produce
// one: 404 for an unknown adapter, else the adapter's own declared
// "unavailable" answer (adapter.Info.Unavailable, if its status is 400 or
// more), else a plain 503. It never asks the adapter and never allows.
func (h *Host) Fallback(name string, err error) adapter.Response {
	s, ok := h.sups[name]
	if !ok || errors.Is(err, ErrUnknownAdapter) {
		return jsonResponse(http.StatusNotFound, fmt.Sprintf("no gatelog adapter named %q", name))
	}
	if u := s.unavailable(); u != nil {
		return *u
	}
	return jsonResponse(http.StatusServiceUnavailable, fmt.Sprintf("gatelog adapter %q is unavailable", name))
}

func jsonResponse(status int, reason string) adapter.Response {
	body, _ := json.Marshal(map[string]any{"allow": false, "reasons": []string{reason}})
	h := http.Header{"Content-Type": {"application/json"}}
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
	return adapter.Response{Status: status, Headers: h, Body: append(body, '\n')}
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checksum executable: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("checksum executable %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// FileSHA256 returns the hex sha256 of a file, the form Config.SHA256 takes.
func FileSHA256(path string) (string, error) {
	sum, err := fileSHA256(path)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum), nil
}
