// Package protection answers a GitHub App's deployment_protection_rule
// webhooks inside the daemon: it checks the delivery's signature, refuses
// replays, learns what GitHub's API says of the sender (facts.go), decides
// through the daemon and queues the review for the run's callback URL. It
// is a webhook.Endpoint (plugins/webhook); the github adapter translates the
// payload and renders the review.
package protection

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/github/callback"
	"github.com/gatelog/gatelog/plugins/webhook"
	"github.com/gatelog/gatelog/record/decision"
)

// Config is a GitHub App whose deployment protection rule webhooks the
// daemon answers.
type Config struct {
	// Adapter is the adapter endpoint that translates deliveries and
	// renders reviews (default "github").
	Adapter string
	// Secret is the App's webhook secret (X-Hub-Signature-256).
	Secret []byte
	// AppID and PrivateKey (PEM) authenticate the review callbacks.
	AppID      int64
	PrivateKey []byte
	// APIURL is the GitHub API (default https://api.github.com; GitHub
	// Enterprise Server: https://HOST/api/v3).
	APIURL string
	// Transport carries the callbacks (default http.DefaultTransport).
	Transport http.RoundTripper
	// DeliveryRetention is how long delivery IDs are remembered to refuse
	// replays (default 7 days; GitHub redelivers for 3 days). Deliveries
	// whose deployment is older are refused as well.
	DeliveryRetention time.Duration
	// CallbackMinBackoff and CallbackMaxBackoff bound the retries of a
	// callback (defaults 1s, 5m).
	CallbackMinBackoff, CallbackMaxBackoff time.Duration
	// Teams are the organization team slugs whose members are given the
	// slug as a group (subject.groups), as GitHub's API tells the App
	// (facts.go). Name the teams your policy data's group_roles name, e.g.
	// release-managers.
	Teams []string
	// TwoFactorOrgs are organizations the operator states require 2FA,
	// used only when GitHub's answer to the App leaves
	// two_factor_requirement_enabled out (facts.go).
	TwoFactorOrgs []string
	// SenderCacheTTL is how long GitHub's answers about a sender are kept
	// (default 1m).
	SenderCacheTTL time.Duration
}

// Files in the daemon's data directory.
const (
	// DeliveriesFile remembers GitHub webhook deliveries (hashed).
	DeliveriesFile = "github-deliveries"
	// CallbacksDir is the durable outbox of deployment reviews.
	CallbacksDir = "github-callbacks"
)

// Hook answers a GitHub App's deployment_protection_rule webhooks.
//
// Trust: the X-Hub-Signature-256 HMAC proves GitHub sent the delivery with
// the App's secret, so the App is the caller (webhook:github-app:<id>) and,
// like an API key with the vouch permission, it vouches for the user GitHub
// names as the sender: the record keeps that user as the subject, asserted
// by the App. Nothing else in the payload is identity.
//
// The check happens here, in the daemon's process, and not in the adapter:
// it is the caller's authentication; a bad signature must be refused before
// any parser (the adapter included) reads the payload; the secret stays in
// one process instead of crossing to the adapter's; and the replay memory
// is state, while adapters keep none.
type Hook struct {
	d          webhook.Daemon
	name       string
	secret     []byte
	caller     string
	retention  time.Duration
	deliveries webhook.ReplayMemory
	callbacks  *callback.Outbox
	facts      *githubFacts
	stop       context.CancelFunc
	done       chan struct{}
}

// deliveryIDRE bounds what a delivery ID may look like (GitHub sends a GUID).
var deliveryIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Opener opens the hook of cfg in a daemon: its replay memory and review
// outbox in the data directory, the outbox's delivery loop, and its metrics.
func Opener(cfg Config) webhook.Opener {
	return func(ctx context.Context, d webhook.Daemon) (webhook.Hook, error) { return open(ctx, d, cfg) }
}

func open(ctx context.Context, d webhook.Daemon, cfg Config) (*Hook, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhooks: github: the App's webhook secret is required")
	}
	if cfg.DeliveryRetention <= 0 {
		cfg.DeliveryRetention = 7 * 24 * time.Hour
	}
	cb, err := callback.Open(d.Path(CallbacksDir), callback.Options{
		AppID: cfg.AppID, PrivateKey: cfg.PrivateKey, APIURL: cfg.APIURL, Transport: cfg.Transport,
		MinBackoff: cfg.CallbackMinBackoff, MaxBackoff: cfg.CallbackMaxBackoff, Logger: d.Logger(), Now: d.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: github: %w", err)
	}
	api := strings.TrimRight(cmp.Or(cfg.APIURL, callback.DefaultAPIURL), "/")
	facts, err := newGitHubFacts(cfg, api, d.Now)
	if err != nil {
		return nil, fmt.Errorf("webhooks: github: %w", err)
	}
	if err := d.Register(&reviewCollector{outbox: cb}); err != nil {
		return nil, fmt.Errorf("webhooks: github: %w", err)
	}
	// Opened last: nothing after it can fail and leave it open.
	rc, err := d.ReplayMemory(DeliveriesFile)
	if err != nil {
		return nil, fmt.Errorf("webhooks: github: %w", err)
	}
	h := &Hook{
		d: d, name: cmp.Or(strings.TrimSpace(cfg.Adapter), github.Name), secret: cfg.Secret, retention: cfg.DeliveryRetention,
		deliveries: rc, callbacks: cb, facts: facts,
		caller: "webhook:github-app:" + strconv.FormatInt(cfg.AppID, 10),
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.stop, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		cb.Run(rctx)
	}()
	return h, nil
}

// Adapter is the adapter endpoint whose route the hook answers.
func (h *Hook) Adapter() string { return h.name }

// Close stops delivering reviews (those queued stay in the outbox for the
// next start) and closes the replay memory.
func (h *Hook) Close() error {
	h.stop()
	<-h.done
	return h.deliveries.Close()
}

// Pending is the number of deployment reviews not yet delivered to GitHub.
func (h *Hook) Pending() int { return h.callbacks.Depth() }

var (
	descReviewsPending = prometheus.NewDesc("gatelog_github_reviews_pending", "GitHub deployment reviews queued and not yet taken by GitHub.", nil, nil)
	descReviews        = prometheus.NewDesc("gatelog_github_reviews_total", "GitHub deployment review attempts since start, by outcome (delivered, retried, failed: refused for good).", []string{"outcome"}, nil)
)

// reviewCollector exports the callback outbox: a queue that keeps growing
// means GitHub does not take the reviews (App permissions, key, outage).
type reviewCollector struct{ outbox *callback.Outbox }

func (c *reviewCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReviewsPending
	ch <- descReviews
}

func (c *reviewCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descReviewsPending, prometheus.GaugeValue, float64(c.outbox.Depth()))
	st := c.outbox.Stats()
	for outcome, n := range map[string]uint64{"delivered": st.Delivered, "retried": st.Retried, "failed": st.Failed} {
		ch <- prometheus.MustNewConstMetric(descReviews, prometheus.CounterValue, float64(n), outcome)
	}
}

// deliveryAnswer is what the daemon answers a delivery with, for GitHub's
// delivery log; the review itself goes to the callback URL.
type deliveryAnswer struct {
	Message    string         `json:"message"`
	DecisionID string         `json:"decision_id,omitempty"`
	LogIndex   *int64         `json:"log_index,omitempty"`
	Review     *github.Review `json:"review,omitempty"`
}

// ServeHTTP is POST /v1/adapters/{github adapter}: verify the signature, refuse
// replays, decide, queue the review for the run's callback URL (durably)
// and answer the delivery 200 — within milliseconds, long before GitHub's
// 10 s webhook timeout, and without waiting for GitHub's API.
func (h *Hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := h.d
	// The HMAC covers the body, so the body must be read to check it; a
	// delivery without a well-formed signature is refused before that, and
	// the body is read within the daemon's in-flight budget.
	if err := github.CheckSignatureHeader(r.Header.Get(github.SignatureHeader)); err != nil {
		d.Authenticated(webhook.ReasonBadSignature)
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	body, release, err := d.ReadBody(w, r, github.MaxPayloadBytes)
	defer release()
	switch {
	case errors.Is(err, webhook.ErrBodyTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "delivery is larger than %d bytes", github.MaxPayloadBytes)
		return
	case err != nil:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	if err := github.VerifySignature(h.secret, body, r.Header.Get(github.SignatureHeader)); err != nil {
		d.Authenticated(webhook.ReasonBadSignature)
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	switch ev := r.Header.Get("X-GitHub-Event"); ev {
	case "ping":
		d.Authenticated("ok")
		writeJSON(w, http.StatusOK, deliveryAnswer{Message: "pong: gatelog answers deployment_protection_rule deliveries here"})
		return
	case github.EventName:
	default:
		writeError(w, http.StatusBadRequest, "X-GitHub-Event %q is not gated here: subscribe the App to deployment_protection_rule only", ev)
		return
	}
	ev, err := github.ParseEvent(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if ev.Installation == nil || ev.Installation.ID <= 0 {
		writeError(w, http.StatusBadRequest, `field "installation.id" is required: the review is sent as the App's installation`)
		return
	}
	callbackURL, err := h.callbacks.CheckURL(ev.DeploymentCallbackURL, ev.Repository.FullName)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	delivery := r.Header.Get("X-GitHub-Delivery")
	if !deliveryIDRE.MatchString(delivery) {
		writeError(w, http.StatusBadRequest, "X-GitHub-Delivery %q: want the delivery's GUID", delivery)
		return
	}
	now := d.Now()
	if ev.Deployment != nil && ev.Deployment.CreatedAt != "" {
		created, err := time.Parse(time.RFC3339, ev.Deployment.CreatedAt)
		if err != nil || now.Sub(created) > h.retention {
			// Older than the replay memory: it could be a replay nobody
			// remembers any more.
			writeError(w, http.StatusConflict, "deployment created at %q is older than %s: refused as a possible replay", ev.Deployment.CreatedAt, h.retention)
			return
		}
	}
	// Over the rate limit, the delivery is not remembered: GitHub's
	// "Redeliver" can bring it back.
	if err := d.Admit(h.caller); err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "%v", err)
		return
	}
	if !h.useDelivery(w, delivery, body, now) {
		return
	}
	d.Authenticated("ok")

	headers := r.Header.Clone()
	var rc *decision.Receipt
	req, err := d.Translate(r.Context(), h.name, body, headers)
	if err == nil {
		// Groups and MFA of the sender, and whether a bare ref is a tag,
		// as GitHub's API tells the App; a failure rejects the deployment
		// with the reason.
		err = h.facts.apply(r.Context(), &req, ev)
	}
	if err == nil {
		err = h.facts.resolveRef(r.Context(), &req, ev)
	}
	if err == nil {
		rc, err = d.Decide(r.Context(), req, h.caller)
	}
	review, resp, ok := h.render(r, body, headers, ev, rc, err)
	job := callback.Job{ID: delivery, URL: callbackURL, InstallationID: ev.Installation.ID, Review: review}
	ans := deliveryAnswer{Message: "review queued for the run's deployment_callback_url", Review: &review}
	if rc != nil {
		job.DecisionID = rc.DecisionID
		ans.DecisionID, ans.LogIndex = rc.DecisionID, &rc.LogIndex
	}
	if _, qerr := h.callbacks.Enqueue(job); qerr != nil {
		// The decision (if any) is logged, but GitHub will not hear of it:
		// the deployment keeps waiting, which blocks it.
		d.Logger().Error("GitHub deployment review could not be queued; the deployment keeps waiting", "delivery", delivery, "decision_id", job.DecisionID, "err", qerr)
		writeError(w, http.StatusServiceUnavailable, "the review could not be queued: %v", qerr)
		return
	}
	if !ok {
		writeJSON(w, resp.Status, ans)
		return
	}
	for k, vs := range resp.Headers {
		w.Header()[k] = vs
	}
	writeJSON(w, http.StatusOK, ans)
}

// useDelivery remembers the delivery ID and the digest of the signed body
// (the ID header is not covered by the signature, so a replay could carry
// a new one). A second use is refused with 409; a replay memory that cannot
// be written refuses with 503.
func (h *Hook) useDelivery(w http.ResponseWriter, delivery string, body []byte, now time.Time) bool {
	sum := sha256.Sum256(body)
	forget := now.Add(h.retention)
	for _, use := range [][2]string{{"github-delivery", delivery}, {"github-body", hex.EncodeToString(sum[:])}} {
		err := h.deliveries.Use(use[0], use[1], forget, now)
		switch {
		case errors.Is(err, webhook.ErrReplayed):
			h.d.Authenticated(webhook.ReasonReplayed)
			writeError(w, http.StatusConflict, "delivery %s was already answered (%s seen before): replays are refused", delivery, use[0])
			return false
		case err != nil:
			h.d.Logger().Warn("GitHub delivery could not be remembered; refusing", "delivery", delivery, "err", err)
			writeError(w, http.StatusServiceUnavailable, "the delivery could not be recorded: %v", err)
			return false
		}
	}
	return true
}

// render asks the adapter for the review. When it cannot answer, or
// answers something the daemon cannot send (an approval without an allow,
// another environment), the review is a rejection with the reason: fail
// closed, and the developer still hears why.
func (h *Hook) render(r *http.Request, body []byte, headers http.Header, ev github.Event, rc *decision.Receipt, decideErr error) (github.Review, adapter.Response, bool) {
	resp, err := h.d.Render(r.Context(), h.name, body, headers, rc, decideErr)
	var review github.Review
	if err == nil {
		err = json.Unmarshal(resp.Body, &review)
	}
	switch {
	case err != nil:
		h.d.Logger().Warn("github adapter could not render a review; rejecting", "adapter", h.name, "err", err)
		return github.Rejection(ev.Environment, "the gatelog github adapter is unavailable"), adapter.Response{Status: http.StatusOK}, false
	case review.State == github.StateApproved && (rc == nil || !rc.Allow || decideErr != nil),
		review.State != github.StateApproved && review.State != github.StateRejected,
		review.EnvironmentName != ev.Environment:
		h.d.Logger().Error("github adapter rendered a review the daemon refuses to send; rejecting", "adapter", h.name, "state", review.State, "environment", review.EnvironmentName)
		return github.Rejection(ev.Environment, "the gatelog github adapter rendered an invalid review"), adapter.Response{Status: http.StatusOK}, false
	}
	return review, resp, true
}

// writeError answers with the daemon's JSON error body.
func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
