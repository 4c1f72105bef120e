// Package callback reports deployment protection decisions back to GitHub.
// A review is stored on disk (fsync'd) before Enqueue returns, then POSTed
// to the workflow run's deployment_callback_url as the GitHub App's
// installation (an installation token from the App's private key, through
// ghinstallation) and retried with backoff until GitHub takes it — across
// restarts, at least once, never silently dropped.
//
// On disk (dir): pending/<id>.json holds a review not yet taken,
// done/<id>.json a delivered one (kept for Retention so that the same ID is
// not queued twice), failed/<id>.json one GitHub refused for good (the run
// no longer waits, or GiveUpAfter passed), with the reason.
package callback

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"

	"github.com/gatelog/gatelog/internal/durable"
	"github.com/gatelog/gatelog/plugins/github"
)

// DefaultAPIURL is GitHub's REST API; GitHub Enterprise Server serves it at
// https://HOST/api/v3.
const DefaultAPIURL = "https://api.github.com"

// Options configures an Outbox. AppID and PrivateKey are required.
type Options struct {
	// AppID is the GitHub App's ID; PrivateKey its PEM private key (RSA).
	AppID      int64
	PrivateKey []byte
	// APIURL is the GitHub API the App lives on (default DefaultAPIURL).
	// Callback URLs must point into it.
	APIURL string
	// Transport carries the requests (default http.DefaultTransport).
	Transport http.RoundTripper
	// MinBackoff and MaxBackoff bound the wait between attempts at one
	// review (doubling from min); defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds one attempt, token included; default 30s.
	AttemptTimeout time.Duration
	// GiveUpAfter moves a review that GitHub has not taken to failed/
	// (GitHub stops waiting for a protection rule after 30 days); default
	// 30 days.
	GiveUpAfter time.Duration
	// Retention is how long delivered IDs are remembered; default 7 days.
	Retention time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Job is one review on its way to GitHub.
type Job struct {
	// ID names the job (the webhook delivery ID); letters, digits, '.',
	// '_' and '-'.
	ID string `json:"id"`
	// URL is the run's deployment_callback_url, as CheckURL returned it.
	URL            string        `json:"url"`
	InstallationID int64         `json:"installation_id"`
	Review         github.Review `json:"review"`
	DecisionID     string        `json:"decision_id,omitempty"`
	Enqueued       time.Time     `json:"enqueued"`
	// LastError is why the last attempt failed (failed/ and logs only).
	LastError string `json:"last_error,omitempty"`
}

// Errors callers branch on.
var (
	// ErrInvalid marks a job or callback URL that cannot be used.
	ErrInvalid = errors.New("invalid deployment review")
	// errPermanent marks an answer that retrying cannot change.
	errPermanent = errors.New("GitHub refused the review for good")
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Outbox is the durable queue of reviews. Create it with Open and deliver
// with Run; it is safe for concurrent use.
type Outbox struct {
	dir  string
	opts Options
	api  *url.URL
	apps *ghinstallation.AppsTransport
	log  *slog.Logger

	mu        sync.Mutex
	pending   map[string]*pendingJob
	transport map[int64]*ghinstallation.Transport
	wake      chan struct{}
	stats     Stats
}

type pendingJob struct {
	Job
	attempts int
	next     time.Time
}

// Stats counts what the outbox did since it was opened.
type Stats struct {
	Delivered, Retried, Failed uint64
}

// Open opens (or creates) the outbox in dir, parses the App's key and loads
// the reviews that were pending when it last stopped. Call Run to deliver.
func Open(dir string, opts Options) (*Outbox, error) {
	if opts.AppID <= 0 || len(opts.PrivateKey) == 0 {
		return nil, fmt.Errorf("%w: the GitHub App's ID and private key are required", ErrInvalid)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.MinBackoff, time.Second)
	def(&opts.MaxBackoff, 5*time.Minute)
	def(&opts.AttemptTimeout, 30*time.Second)
	def(&opts.GiveUpAfter, 30*24*time.Hour)
	def(&opts.Retention, 7*24*time.Hour)
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.APIURL == "" {
		opts.APIURL = DefaultAPIURL
	}
	api, err := parseAPIURL(opts.APIURL)
	if err != nil {
		return nil, err
	}
	apps, err := ghinstallation.NewAppsTransport(opts.Transport, opts.AppID, opts.PrivateKey)
	if err != nil {
		// The library's message names the parse problem, never the key.
		return nil, fmt.Errorf("%w: GitHub App private key: %w", ErrInvalid, err)
	}
	apps.BaseURL = strings.TrimRight(api.String(), "/")
	o := &Outbox{
		dir: dir, opts: opts, api: api, apps: apps, log: opts.Logger,
		pending: map[string]*pendingJob{}, transport: map[int64]*ghinstallation.Transport{},
		wake: make(chan struct{}, 1),
	}
	for _, d := range []string{"pending", "done", "failed"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("callback outbox: %w", err)
		}
	}
	if err := o.load(); err != nil {
		return nil, err
	}
	o.prune()
	return o, nil
}

func parseAPIURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: GitHub API URL %q: want https://HOST[/api/v3]", ErrInvalid, raw)
	}
	return u, nil
}

// CheckURL checks that a deployment_callback_url is the review endpoint of
// a workflow run of repo on the configured GitHub API, and returns it
// cleaned. The installation token is only ever sent there: a payload cannot
// make the daemon send it anywhere else.
func (o *Outbox) CheckURL(raw, repo string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: deployment_callback_url %q: %w", ErrInvalid, raw, err)
	}
	if u.Scheme != o.api.Scheme || !strings.EqualFold(u.Host, o.api.Host) || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%w: deployment_callback_url %q is not on the configured GitHub API %s", ErrInvalid, raw, o.api)
	}
	prefix := strings.TrimRight(o.api.EscapedPath(), "/") + "/repos/" + repo + "/actions/runs/"
	rest, ok := strings.CutPrefix(u.EscapedPath(), prefix)
	runID, ok2 := strings.CutSuffix(rest, "/deployment_protection_rule")
	if n, err := strconv.ParseUint(runID, 10, 63); !ok || !ok2 || err != nil || n == 0 || runID != strconv.FormatUint(n, 10) {
		return "", fmt.Errorf("%w: deployment_callback_url %q is not %s{run id}/deployment_protection_rule", ErrInvalid, raw, prefix)
	}
	return u.String(), nil
}

func (o *Outbox) path(state, id string) string { return filepath.Join(o.dir, state, id+".json") }

func (o *Outbox) load() error {
	dir := filepath.Join(o.dir, "pending")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("callback outbox: %w", err)
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !idRE.MatchString(id) {
			// A temporary file of a write that never completed: its
			// Enqueue returned an error, so nobody relies on it.
			_ = os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("callback outbox: %w", err)
		}
		var j Job
		if err := json.Unmarshal(raw, &j); err != nil || j.ID != id {
			return fmt.Errorf("callback outbox: pending review %s is corrupt (move it aside to continue): %v", e.Name(), err)
		}
		o.pending[id] = &pendingJob{Job: j}
	}
	if n := len(o.pending); n > 0 {
		o.log.Info("GitHub deployment reviews: resuming delivery", "pending", n)
	}
	return nil
}

// prune forgets delivered reviews older than the retention.
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

// Enqueue stores j durably (written and fsync'd) and schedules its
// delivery. It reports false, and does nothing, when a job with the same ID
// is pending, was delivered or failed. The URL must have passed CheckURL.
func (o *Outbox) Enqueue(j Job) (bool, error) {
	if !idRE.MatchString(j.ID) {
		return false, fmt.Errorf("%w: id %q must be 1-128 letters, digits, '.', '_' or '-'", ErrInvalid, j.ID)
	}
	if j.InstallationID <= 0 {
		return false, fmt.Errorf("%w: installation id %d", ErrInvalid, j.InstallationID)
	}
	if j.Review.EnvironmentName == "" || (j.Review.State != github.StateApproved && j.Review.State != github.StateRejected) {
		return false, fmt.Errorf("%w: review needs an environment_name and state approved or rejected", ErrInvalid)
	}
	if j.Enqueued.IsZero() {
		j.Enqueued = o.opts.Now().UTC()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.pending[j.ID]; ok {
		return false, nil
	}
	for _, state := range []string{"done", "failed"} {
		if _, err := os.Stat(o.path(state, j.ID)); err == nil {
			return false, nil
		}
	}
	raw, err := json.Marshal(j)
	if err != nil {
		return false, err
	}
	if err := durable.WriteFile(o.path("pending", j.ID), raw); err != nil {
		return false, fmt.Errorf("callback outbox: store review %s: %w", j.ID, err)
	}
	o.pending[j.ID] = &pendingJob{Job: j}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return true, nil
}

// Depth is the number of reviews not yet delivered.
func (o *Outbox) Depth() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending)
}

// Stats reports what the outbox did since Open.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stats
}

// Run delivers reviews until ctx ends.
func (o *Outbox) Run(ctx context.Context) {
	for {
		due, next := o.due(o.opts.Now())
		for _, j := range due {
			if ctx.Err() != nil {
				return
			}
			actx, cancel := context.WithTimeout(ctx, o.opts.AttemptTimeout)
			retryAfter, err := o.deliver(actx, j)
			cancel()
			o.record(j, retryAfter, err)
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
		case <-o.wake:
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

// due returns the jobs to try now, oldest first, and when the next one
// becomes due.
func (o *Outbox) due(now time.Time) ([]Job, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Job
	var next time.Time
	for _, p := range o.pending {
		if p.next.After(now) {
			if next.IsZero() || p.next.Before(next) {
				next = p.next
			}
			continue
		}
		out = append(out, p.Job)
	}
	slices.SortFunc(out, func(a, b Job) int { return cmp.Or(a.Enqueued.Compare(b.Enqueued), strings.Compare(a.ID, b.ID)) })
	return out, next
}

func (o *Outbox) installation(id int64) *ghinstallation.Transport {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.transport[id]
	if !ok {
		// One transport per installation keeps its token until it nears
		// expiry (ghinstallation refreshes it).
		t = ghinstallation.NewFromAppsTransport(o.apps, id)
		o.transport[id] = t
	}
	return t
}

// deliver makes one attempt. It returns GitHub's Retry-After, if any.
func (o *Outbox) deliver(ctx context.Context, j Job) (time.Duration, error) {
	body, err := json.Marshal(j.Review)
	if err != nil {
		return 0, fmt.Errorf("%w: encode review: %w", errPermanent, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errPermanent, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "gatelog")
	resp, err := o.installation(j.InstallationID).RoundTrip(req)
	if err != nil {
		var he *ghinstallation.HTTPError
		if errors.As(err, &he) && he.Response != nil && he.Response.Body != nil {
			he.Response.Body.Close()
			return 0, fmt.Errorf("installation token for installation %d: GitHub answered %s", j.InstallationID, he.Response.Status)
		}
		return 0, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return 0, nil
	}
	retryAfter := time.Duration(0)
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	err = fmt.Errorf("GitHub answered %s: %s", resp.Status, githubMessage(msg))
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusGone, http.StatusUnprocessableEntity:
		// 422: the run no longer waits for this environment (already
		// reviewed, cancelled or timed out); retrying cannot help.
		return 0, fmt.Errorf("%w: %w", errPermanent, err)
	}
	return retryAfter, err
}

// githubMessage is the "message" of a GitHub API error body, or the body.
func githubMessage(b []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return e.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// record notes the outcome of one attempt.
func (o *Outbox) record(j Job, retryAfter time.Duration, err error) {
	now := o.opts.Now()
	if err == nil {
		// Retire before forgetting: if the move is lost in a crash the
		// review is sent again (GitHub then answers 422), never dropped.
		if rerr := o.retire(j, "done"); rerr != nil {
			o.log.Error("GitHub deployment review delivered but not retired; it will be sent again", "id", j.ID, "err", rerr)
		}
		o.mu.Lock()
		delete(o.pending, j.ID)
		o.stats.Delivered++
		o.mu.Unlock()
		o.log.Info("GitHub deployment review delivered", "id", j.ID, "decision_id", j.DecisionID, "state", j.Review.State, "environment", j.Review.EnvironmentName)
		return
	}
	if errors.Is(err, errPermanent) || now.Sub(j.Enqueued) > o.opts.GiveUpAfter {
		j.LastError = err.Error()
		if rerr := o.retire(j, "failed"); rerr != nil {
			o.log.Error("cannot move a refused GitHub deployment review to failed/", "id", j.ID, "err", rerr)
		}
		o.mu.Lock()
		delete(o.pending, j.ID)
		o.stats.Failed++
		o.mu.Unlock()
		o.log.Error("GitHub deployment review refused for good; kept in failed/", "id", j.ID, "decision_id", j.DecisionID, "url", j.URL, "err", err)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pending[j.ID]
	if !ok {
		return
	}
	p.attempts++
	wait := o.opts.MinBackoff << min(p.attempts-1, 20)
	if wait > o.opts.MaxBackoff || wait <= 0 {
		wait = o.opts.MaxBackoff
	}
	wait = wait/2 + rand.N(wait/2+1)
	if retryAfter > wait {
		wait = min(retryAfter, o.opts.MaxBackoff)
	}
	p.next = now.Add(wait)
	o.stats.Retried++
	o.log.Warn("GitHub deployment review not delivered; will retry", "id", j.ID, "decision_id", j.DecisionID, "attempt", p.attempts, "retry_in", wait.Round(time.Millisecond), "err", err)
}

// retire writes the job's final state, then removes it from pending/.
func (o *Outbox) retire(j Job, state string) error {
	raw, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(o.path(state, j.ID), raw); err != nil {
		return err
	}
	return os.Remove(o.path("pending", j.ID))
}
