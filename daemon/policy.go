package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/gatelog/gatelog/engine"
	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/record/decision"
)

// PolicyUpdateAction is the action of the record the daemon logs for every
// policy change.
const PolicyUpdateAction = "policy.update"

// PolicyChange describes one attempt to load a new policy.
type PolicyChange struct {
	// Changed is false when the new files are the ones already in force.
	Changed  bool
	Old, New decision.Policy
	// Origin is where the new policy came from; Trigger what loaded it.
	Origin, Trigger string
	// TestsPassed counts the new policy's Rego tests (all passed).
	TestsPassed int
	// Receipt is the logged policy.update record.
	Receipt decision.Receipt
}

// Policy identifies the policy in force.
func (s *Server) Policy() decision.Policy { return s.policies.Policy() }

// ReloadPolicy puts src in force, but only if it compiles and its Rego
// tests pass, and only once its policy.update record (old and new
// identity, origin, trigger) is durably in the log: a policy change that
// cannot be logged is not made. On any error the running policy stays and
// decisions continue uninterrupted. Files identical to the running policy
// change nothing and log nothing.
func (s *Server) ReloadPolicy(ctx context.Context, src engine.Source, trigger string) (PolicyChange, error) {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	ch := PolicyChange{Old: s.policies.Policy(), Origin: src.Origin, Trigger: trigger}
	// The same files again (a SIGHUP, a touched file) need no compile.
	if digest, err := engine.Digest(src.FS); err == nil && digest == ch.Old.SHA256 && src.Revision == ch.Old.Revision {
		ch.New = ch.Old
		s.logger.Info("policy unchanged", "trigger", trigger, "origin", src.Origin, "sha256", ch.New.SHA256)
		return ch, nil
	}
	p, err := engine.Prepare(ctx, src, true)
	if err != nil {
		s.logger.Error("policy not loaded; the running policy stays in force",
			"trigger", trigger, "origin", src.Origin, "running_sha256", ch.Old.SHA256, "err", err)
		return ch, err
	}
	ch.New = p.Policy()
	if p.Tests != nil {
		ch.TestsPassed = p.Tests.Passed
	}
	if ch.New.SHA256 == ch.Old.SHA256 && ch.New.Revision == ch.Old.Revision {
		s.logger.Info("policy unchanged", "trigger", trigger, "origin", src.Origin, "sha256", ch.New.SHA256)
		return ch, nil
	}
	rc, err := s.logPolicyUpdate(ctx, ch)
	if err != nil {
		s.logger.Error("policy change could not be logged, so it is not made; the running policy stays in force",
			"trigger", trigger, "origin", src.Origin, "new_sha256", ch.New.SHA256, "err", err)
		return ch, err
	}
	ch.Receipt, ch.Changed = rc, true
	s.policies.Swap(p)
	s.rememberLoggedPolicy(ch.New)
	s.logger.Info("policy loaded", "trigger", trigger, "origin", src.Origin,
		"old_sha256", ch.Old.SHA256, "new_sha256", ch.New.SHA256, "revision", ch.New.Revision,
		"tests_passed", ch.TestsPassed, "log_index", rc.LogIndex, "record", rc.DecisionID)
	return ch, nil
}

// logPolicyUpdate records a policy change (decision.KindAdmin, action
// PolicyUpdateAction): the request is the change (resource kind "policy",
// the old and new identity as attributes) and the policy is the new one.
func (s *Server) logPolicyUpdate(ctx context.Context, ch PolicyChange) (decision.Receipt, error) {
	reason := fmt.Sprintf("policy loaded by %s from %s: sha256 %s -> %s", ch.Trigger, ch.Origin, ch.Old.SHA256, ch.New.SHA256)
	if ch.Old.Revision != "" || ch.New.Revision != "" {
		reason += fmt.Sprintf(", revision %q -> %q", ch.Old.Revision, ch.New.Revision)
	}
	reason += fmt.Sprintf("; it compiled and its %d Rego tests passed", ch.TestsPassed)
	attrs := map[string]any{"new": policyIdentity(ch.New), "origin": ch.Origin, "trigger": ch.Trigger, "tests_passed": ch.TestsPassed}
	if ch.Old != (decision.Policy{}) {
		attrs["old"] = policyIdentity(ch.Old)
	}
	return s.recorder.Record(ctx, s.policyRecord(ch.New, attrs, reason), false)
}

// policyRecord is the administrative record of a policy put in force (at
// a start or a reload): the daemon is its subject and caller, the policy
// (its identity in attrs) its resource.
func (s *Server) policyRecord(p decision.Policy, attrs map[string]any, reason string) decision.Record {
	return decision.Record{
		Kind: decision.KindAdmin,
		Request: decision.Request{
			Subject:  decision.Subject{ID: "gatelog-daemon", Kind: "service", Verified: true},
			Action:   PolicyUpdateAction,
			Resource: decision.Resource{System: "gatelog", Kind: "policy", Name: engine.Entrypoint, Attributes: attrs},
			Context:  decision.Context{Time: s.recorder.Now().UTC().Format(time.RFC3339)},
			Source:   decision.Source{Adapter: "gatelog", AdapterVersion: s.cfg.Version},
		},
		Caller: decision.Caller{ID: "gatelog-daemon", Kind: "daemon"},
		Admin:  &decision.Admin{Reason: reason},
		Policy: p,
	}
}

func policyIdentity(p decision.Policy) map[string]any {
	return map[string]any{"sha256": p.SHA256, "revision": p.Revision}
}

// PolicyLoggedFile remembers the identity of the last policy this daemon
// logged (at a start or a reload), so a restart on the same policy logs
// nothing, and one on a policy changed while the daemon was down does.
const PolicyLoggedFile = "policy-logged.json"

// logStartPolicy records the policy a daemon starts with (decision.KindAdmin,
// action PolicyUpdateAction, trigger "start") unless it is the one this
// daemon last logged: the log names the policy in force from the first
// decision on, including one changed while the daemon was down.
func (s *Server) logStartPolicy(ctx context.Context) error {
	p := s.policies.Policy()
	if last, err := os.ReadFile(filepath.Join(s.cfg.DataDir, PolicyLoggedFile)); err == nil {
		var was decision.Policy
		if json.Unmarshal(last, &was) == nil && was.SHA256 == p.SHA256 && was.Revision == p.Revision {
			return nil
		}
	}
	reason := fmt.Sprintf("policy in force at start-up: sha256 %s", p.SHA256)
	if p.Revision != "" {
		reason += fmt.Sprintf(", revision %q", p.Revision)
	}
	attrs := map[string]any{"new": policyIdentity(p), "trigger": "start"}
	if _, err := s.recorder.Record(ctx, s.policyRecord(p, attrs, reason), false); err != nil {
		return err
	}
	s.rememberLoggedPolicy(p)
	return nil
}

// rememberLoggedPolicy notes p as the last policy logged. Losing the note
// costs one more start-up record, never a missing one.
func (s *Server) rememberLoggedPolicy(p decision.Policy) {
	raw, err := json.Marshal(decision.Policy{SHA256: p.SHA256, Revision: p.Revision})
	if err == nil {
		err = durable.WriteFile(filepath.Join(s.cfg.DataDir, PolicyLoggedFile), raw)
	}
	if err != nil {
		s.logger.Warn("the logged policy is not remembered; the next start logs it again", "err", err)
	}
}

// PolicyWatch says where the running policy comes from and what reloads
// it. Exactly one of Dir, BundleFile and BundleURL is set, or none for
// the embedded library (which never changes, though its DataFiles may).
type PolicyWatch struct {
	// Dir is a policy directory, reloaded when its files change.
	Dir string
	// BundleFile is a bundle on disk, reloaded when the file changes.
	BundleFile string
	// BundleURL is polled every PollInterval (default 30s) with
	// If-None-Match, so an unchanged bundle costs a 304.
	BundleURL    string
	PollInterval time.Duration
	// ETag is the ETag of the bundle the daemon started with.
	ETag string
	// Verification, if set, is the key bundles must be signed with.
	Verification *engine.BundleVerification
	// Client fetches bundles; nil means a client with a 30s timeout.
	Client *http.Client
	// Signals reloads on every receive (the daemon sends SIGHUP here).
	Signals <-chan os.Signal
	// Debounce is the quiet time after a file change before reloading
	// (default 250ms).
	Debounce time.Duration
	// DataFiles (JSON/YAML) replace the data files of every policy loaded,
	// and are read again on every reload: an organisation's configuration
	// of the bundled library (serve --policy-data). They are not watched;
	// SIGHUP reloads them.
	DataFiles []string
	// Embedded is the bundled library, reloaded with DataFiles when no
	// Dir, BundleFile or BundleURL is set.
	Embedded engine.Source
}

// WatchPolicy reloads the policy on SIGHUP, file changes and bundle polls
// until ctx ends. Every attempt goes through ReloadPolicy, so a broken
// policy is logged and never replaces the running one.
func (s *Server) WatchPolicy(ctx context.Context, w PolicyWatch) error {
	sources := 0
	for _, s := range []string{w.Dir, w.BundleFile, w.BundleURL} {
		if s != "" {
			sources++
		}
	}
	if sources > 1 {
		return errors.New("policy watch: set at most one of Dir, BundleFile and BundleURL")
	}
	if w.Debounce <= 0 {
		w.Debounce = 250 * time.Millisecond
	}
	var changed <-chan struct{}
	var err error
	switch {
	case w.Dir != "":
		changed, err = engine.WatchDir(ctx, w.Dir, w.Debounce)
	case w.BundleFile != "":
		// Watch the directory: tools replace a bundle by renaming over it.
		changed, err = engine.WatchDir(ctx, filepath.Dir(w.BundleFile), w.Debounce)
	}
	if err != nil {
		// Reloads on SIGHUP still work; say that file changes will not.
		s.logger.Error("policy files are not watched; reload with SIGHUP", "err", err)
	}
	var poll <-chan time.Time
	var fetcher *BundleFetcher
	if w.BundleURL != "" {
		if w.PollInterval <= 0 {
			w.PollInterval = 30 * time.Second
		}
		t := time.NewTicker(w.PollInterval)
		defer t.Stop()
		poll = t.C
		fetcher = &BundleFetcher{URL: w.BundleURL, Verification: w.Verification, Client: w.Client, ETag: w.ETag}
	}
	// withData gives a freshly loaded policy the operator's data files.
	withData := func(src engine.Source) (engine.Source, error) {
		if len(w.DataFiles) == 0 {
			return src, nil
		}
		return src.WithDataFiles(w.DataFiles)
	}
	reload := func(trigger string) {
		switch {
		case fetcher != nil:
			src, etag, err := fetcher.Fetch(ctx)
			if errors.Is(err, ErrNotModified) {
				return
			}
			if err == nil {
				var derr error
				if src, derr = withData(src); derr != nil {
					// The operator's files, not the bundle: try this
					// bundle again once they are fixed.
					s.logger.Error("policy data not loaded; the running policy stays in force", "trigger", trigger, "files", w.DataFiles, "err", derr)
					return
				}
			}
			if err != nil {
				s.logger.Error("policy bundle fetch failed; the running policy stays in force", "trigger", trigger, "url", redactURL(w.BundleURL), "err", err)
				if !errors.Is(err, engine.ErrPolicy) {
					return
				}
			} else if _, err := s.ReloadPolicy(ctx, src, trigger); err != nil && !errors.Is(err, engine.ErrPolicy) {
				return // not logged: try this bundle again next time
			}
			// Loaded, or a broken bundle: either way wait for the next ETag.
			fetcher.ETag = etag
		case w.Dir != "":
			src, err := engine.LoadDir(w.Dir)
			if err == nil {
				src, err = withData(src)
			}
			if err == nil {
				_, _ = s.ReloadPolicy(ctx, src, trigger) // it logs why it refused
			} else {
				s.logger.Error("policy not loaded; the running policy stays in force", "trigger", trigger, "dir", w.Dir, "err", err)
			}
		case w.BundleFile != "":
			src, err := engine.LoadBundleFile(w.BundleFile, w.Verification)
			if err == nil {
				src, err = withData(src)
			}
			if err == nil {
				_, _ = s.ReloadPolicy(ctx, src, trigger) // it logs why it refused
			} else {
				s.logger.Error("policy not loaded; the running policy stays in force", "trigger", trigger, "bundle", w.BundleFile, "err", err)
			}
		case len(w.DataFiles) > 0 && w.Embedded.FS != nil:
			src, err := withData(w.Embedded)
			if err == nil {
				_, _ = s.ReloadPolicy(ctx, src, trigger) // it logs why it refused
			} else {
				s.logger.Error("policy data not loaded; the running policy stays in force", "trigger", trigger, "files", w.DataFiles, "err", err)
			}
		default:
			s.logger.Info("policy reload asked for, but the embedded library cannot change", "trigger", trigger)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-w.Signals:
			if !ok {
				w.Signals = nil
				continue
			}
			reload(sig.String())
		case _, ok := <-changed:
			if !ok {
				changed = nil
				continue
			}
			reload("file change")
		case <-poll:
			reload("bundle poll")
		}
	}
}

// ErrNotModified means the bundle server answered 304: nothing new.
var ErrNotModified = errors.New("bundle not modified")

// BundleFetcher downloads a policy bundle over HTTP(S), conditionally on
// the ETag of the last one it fetched.
type BundleFetcher struct {
	URL          string
	Verification *engine.BundleVerification
	Client       *http.Client
	// ETag is sent as If-None-Match when set.
	ETag string
}

// Fetch gets the bundle and loads (and, if configured, verifies) it. It
// returns the response's ETag, ErrNotModified on a 304, and an error
// wrapping engine.ErrPolicy when the bundle itself is refused.
func (f *BundleFetcher) Fetch(ctx context.Context) (engine.Source, string, error) {
	client := f.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return engine.Source{}, "", fmt.Errorf("bundle URL: %w", err)
	}
	if f.ETag != "" {
		req.Header.Set("If-None-Match", f.ETag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return engine.Source{}, "", fmt.Errorf("fetch bundle %s: %s", redactURL(f.URL), redactErr(err, f.URL))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return engine.Source{}, f.ETag, ErrNotModified
	case http.StatusOK:
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return engine.Source{}, "", fmt.Errorf("fetch bundle %s: %s", redactURL(f.URL), resp.Status)
	}
	etag := resp.Header.Get("ETag")
	src, err := engine.LoadBundle(resp.Body, f.Verification, redactURL(f.URL))
	if err != nil {
		return engine.Source{}, etag, err
	}
	return src, etag, nil
}

// redactURL drops credentials and the query (tokens often live there) so
// a bundle URL can be logged and recorded.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	u.Fragment = ""
	return u.String()
}

func redactErr(err error, raw string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " " + redactURL(raw) + ": " + ue.Err.Error()
	}
	return err.Error()
}
