package daemon

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/plugins/github/callback"
	"github.com/gatelog/gatelog/record/decision"
)

// githubHook answers a GitHub App's deployment_protection_rule webhooks.
//
// Trust: the X-Hub-Signature-256 HMAC proves GitHub sent the delivery with
// the App's secret, so the App is the caller (webhook:github-app:<id>) and,
// like an API key with the vouch permission, it vouches for the user GitHub
// names as the sender: the record keeps that user as the subject, asserted
// by the App. Nothing else in the payload is identity.
//
// The check happens here, in the daemon, and not in the adapter: it is the
// caller's authentication, which is the daemon's job; a bad signature must
// be refused before any parser (the adapter included) reads the payload;
// the secret stays in one process instead of crossing to the adapter's; and
// the replay memory is daemon state, while adapters keep none.
type githubHook struct {
	s          *Server
	name       string
	secret     []byte
	caller     identity.Caller
	retention  time.Duration
	deliveries *identity.ReplayCache
	callbacks  *callback.Outbox
	facts      *githubFacts
}

// deliveryIDRE bounds what a delivery ID may look like (GitHub sends a GUID).
var deliveryIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func newGitHubHook(s *Server, cfg GitHubWebhook) (*githubHook, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhooks: github: the App's webhook secret is required")
	}
	if cfg.DeliveryRetention <= 0 {
		cfg.DeliveryRetention = 7 * 24 * time.Hour
	}
	cb, err := callback.Open(filepath.Join(s.cfg.DataDir, GitHubCallbacksDir), callback.Options{
		AppID: cfg.AppID, PrivateKey: cfg.PrivateKey, APIURL: cfg.APIURL, Transport: cfg.Transport,
		MinBackoff: cfg.CallbackMinBackoff, MaxBackoff: cfg.CallbackMaxBackoff, Logger: s.logger, Now: s.cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: github: %w", err)
	}
	api := strings.TrimRight(cmp.Or(cfg.APIURL, callback.DefaultAPIURL), "/")
	facts, err := newGitHubFacts(cfg, api, s.cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("webhooks: github: %w", err)
	}
	rc, err := identity.OpenReplayCache(filepath.Join(s.cfg.DataDir, GitHubDeliveriesFile), 0, s.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("webhooks: github: %w", err)
	}
	id := "webhook:github-app:" + strconv.FormatInt(cfg.AppID, 10)
	return &githubHook{
		s: s, name: defaultName(cfg.Adapter, github.Name), secret: cfg.Secret, retention: cfg.DeliveryRetention,
		deliveries: rc, callbacks: cb, facts: facts,
		caller: identity.Caller{
			Caller:      decision.Caller{ID: id, Kind: kindWebhook},
			Permissions: []string{identity.PermDecide, identity.PermVouch},
		},
	}, nil
}

func (h *githubHook) close() error { return h.deliveries.Close() }

// deliveryAnswer is what the daemon answers a delivery with, for GitHub's
// delivery log; the review itself goes to the callback URL.
type deliveryAnswer struct {
	Message    string         `json:"message"`
	DecisionID string         `json:"decision_id,omitempty"`
	LogIndex   *int64         `json:"log_index,omitempty"`
	Review     *github.Review `json:"review,omitempty"`
}

// handle is POST /v1/adapters/{github adapter}: verify the signature, refuse
// replays, decide, queue the review for the run's callback URL (durably)
// and answer the delivery 200 — within milliseconds, long before GitHub's
// 10 s webhook timeout, and without waiting for GitHub's API.
func (h *githubHook) handle(w http.ResponseWriter, r *http.Request) {
	s := h.s
	// The HMAC covers the body, so the body must be read to check it; a
	// delivery without a well-formed signature is refused before that, and
	// the body is read within the daemon's in-flight budget.
	if err := github.CheckSignatureHeader(r.Header.Get(github.SignatureHeader)); err != nil {
		s.door.counters.ObserveAuth(kindWebhook, identity.ReasonBadSignature)
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	body, release, err := s.bodies.read(w, r, github.MaxPayloadBytes)
	defer release()
	switch {
	case errors.Is(err, errBodyTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "delivery is larger than %d bytes", github.MaxPayloadBytes)
		return
	case err != nil:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	if err := github.VerifySignature(h.secret, body, r.Header.Get(github.SignatureHeader)); err != nil {
		s.door.counters.ObserveAuth(kindWebhook, identity.ReasonBadSignature)
		writeError(w, http.StatusUnauthorized, "%v", err)
		return
	}
	switch ev := r.Header.Get("X-GitHub-Event"); ev {
	case "ping":
		s.door.counters.ObserveAuth(kindWebhook, "ok")
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
	now := s.cfg.Now()
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
	if err := s.door.admit(h.caller.ID, kindWebhook, now); err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "%v", err)
		return
	}
	if !h.useDelivery(w, delivery, body, now) {
		return
	}
	s.door.counters.ObserveAuth(kindWebhook, "ok")

	headers := r.Header.Clone()
	var rc *decision.Receipt
	req, err := s.adapters.Translate(r.Context(), h.name, body, headers)
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
		rc, err = s.webhookDecide(r.Context(), req, h.caller)
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
		s.logger.Error("GitHub deployment review could not be queued; the deployment keeps waiting", "delivery", delivery, "decision_id", job.DecisionID, "err", qerr)
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
func (h *githubHook) useDelivery(w http.ResponseWriter, delivery string, body []byte, now time.Time) bool {
	sum := sha256.Sum256(body)
	forget := now.Add(h.retention)
	for _, use := range [][2]string{{"github-delivery", delivery}, {"github-body", hex.EncodeToString(sum[:])}} {
		err := h.deliveries.Use(use[0], use[1], forget, now)
		switch {
		case errors.Is(err, identity.ErrReplayed):
			h.s.door.counters.ObserveAuth(kindWebhook, identity.ReasonReplayed)
			writeError(w, http.StatusConflict, "delivery %s was already answered (%s seen before): replays are refused", delivery, use[0])
			return false
		case err != nil:
			h.s.logger.Warn("GitHub delivery could not be remembered; refusing", "delivery", delivery, "err", err)
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
func (h *githubHook) render(r *http.Request, body []byte, headers http.Header, ev github.Event, rc *decision.Receipt, decideErr error) (github.Review, adapter.Response, bool) {
	resp, err := h.s.adapters.Render(r.Context(), h.name, body, headers, rc, decideErr)
	var review github.Review
	if err == nil {
		err = json.Unmarshal(resp.Body, &review)
	}
	switch {
	case err != nil:
		h.s.logger.Warn("github adapter could not render a review; rejecting", "adapter", h.name, "err", err)
		return github.Rejection(ev.Environment, "the gatelog github adapter is unavailable"), adapter.Response{Status: http.StatusOK}, false
	case review.State == github.StateApproved && (rc == nil || !rc.Allow || decideErr != nil),
		review.State != github.StateApproved && review.State != github.StateRejected,
		review.EnvironmentName != ev.Environment:
		h.s.logger.Error("github adapter rendered a review the daemon refuses to send; rejecting", "adapter", h.name, "state", review.State, "environment", review.EnvironmentName)
		return github.Rejection(ev.Environment, "the gatelog github adapter rendered an invalid review"), adapter.Response{Status: http.StatusOK}, false
	}
	return review, resp, true
}
