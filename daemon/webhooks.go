package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatelog/gatelog/engine/identity"
	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github/callback"
	"github.com/gatelog/gatelog/plugins/host"
	"github.com/gatelog/gatelog/record/decision"
)

// Webhooks configures the CI systems that call the daemon with a shared
// secret instead of a gatelog credential (github.go, gitlab.go). Each one
// takes over POST /v1/adapters/{Adapter} for its adapter endpoint, which
// must be configured in Config.Adapters.
type Webhooks struct {
	GitHub *GitHubWebhook
	GitLab *GitLabWebhook
	// TektonTriggers does not take over its endpoint: it adds a way to
	// authenticate calls of the tekton adapter (tekton_triggers.go).
	TektonTriggers *TektonTriggersWebhook
}

// GitHubWebhook is a GitHub App whose deployment protection rule webhooks
// the daemon answers (github.go).
type GitHubWebhook struct {
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
	// (githubfacts.go). Name the teams your policy data's group_roles
	// name, e.g. release-managers.
	Teams []string
	// TwoFactorOrgs are organizations the operator states require 2FA,
	// used only when GitHub's answer to the App leaves
	// two_factor_requirement_enabled out (githubfacts.go).
	TwoFactorOrgs []string
	// SenderCacheTTL is how long GitHub's answers about a sender are kept
	// (default 1m).
	SenderCacheTTL time.Duration
}

// GitLabWebhook is a GitLab instance whose external pipeline validation
// requests the daemon answers (gitlab.go).
type GitLabWebhook struct {
	// Adapter is the adapter endpoint (default "gitlab").
	Adapter string
	// Token is the instance's external_pipeline_validation_service_token.
	Token []byte
	// AnswerWithin bounds the answer (default 4s): GitLab waits 5 s by
	// default and then creates the pipeline.
	AnswerWithin time.Duration
}

// webhooksFile is the JSON form of Webhooks (serve --webhooks-config).
type webhooksFile struct {
	GitHub *struct {
		Adapter           string   `json:"adapter"`
		WebhookSecretFile string   `json:"webhook_secret_file"`
		AppID             int64    `json:"app_id"`
		PrivateKeyFile    string   `json:"private_key_file"`
		APIURL            string   `json:"api_url"`
		DeliveryRetention string   `json:"delivery_retention"`
		Teams             []string `json:"teams"`
		OrgTwoFactor      []string `json:"org_2fa_required"`
		SenderCacheTTL    string   `json:"sender_cache_ttl"`
	} `json:"github"`
	GitLab *struct {
		Adapter      string `json:"adapter"`
		TokenFile    string `json:"token_file"`
		AnswerWithin string `json:"answer_within"`
	} `json:"gitlab"`
	TektonTriggers *struct {
		Adapter      string `json:"adapter"`
		ReplayWindow string `json:"replay_window"`
		Sources      []struct {
			Name       string   `json:"name"`
			Provider   string   `json:"provider"`
			SecretFile string   `json:"secret_file"`
			Namespaces []string `json:"namespaces"`
			MFASetting string   `json:"mfa_setting"`
		} `json:"sources"`
	} `json:"tekton_triggers"`
}

// LoadWebhooks reads a webhooks config file. Secrets are read from the
// files it names (relative to the config file), which must be readable by
// their owner only; they never appear in the config itself.
func LoadWebhooks(path string) (Webhooks, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Webhooks{}, fmt.Errorf("webhooks config: %w", err)
	}
	var f webhooksFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Webhooks{}, fmt.Errorf("webhooks config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	secret := func(field, name string) ([]byte, error) {
		if name == "" {
			return nil, fmt.Errorf("webhooks config %s: %s is required", path, field)
		}
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		if err := checkOwnerOnly(name); err != nil {
			return nil, fmt.Errorf("webhooks config %s: %s: %w", path, field, err)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("webhooks config %s: %s: %w", path, field, err)
		}
		if b = bytes.TrimSpace(b); len(b) == 0 {
			return nil, fmt.Errorf("webhooks config %s: %s %s is empty", path, field, name)
		}
		return b, nil
	}
	duration := func(field, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("webhooks config %s: %s %q: want a positive duration such as 4s", path, field, v)
		}
		return d, nil
	}
	var w Webhooks
	if g := f.GitHub; g != nil {
		gh := &GitHubWebhook{Adapter: g.Adapter, AppID: g.AppID, APIURL: g.APIURL, Teams: g.Teams, TwoFactorOrgs: g.OrgTwoFactor}
		if gh.Secret, err = secret("github.webhook_secret_file", g.WebhookSecretFile); err != nil {
			return Webhooks{}, err
		}
		if gh.PrivateKey, err = secret("github.private_key_file", g.PrivateKeyFile); err != nil {
			return Webhooks{}, err
		}
		if gh.DeliveryRetention, err = duration("github.delivery_retention", g.DeliveryRetention); err != nil {
			return Webhooks{}, err
		}
		if gh.SenderCacheTTL, err = duration("github.sender_cache_ttl", g.SenderCacheTTL); err != nil {
			return Webhooks{}, err
		}
		w.GitHub = gh
	}
	if g := f.GitLab; g != nil {
		gl := &GitLabWebhook{Adapter: g.Adapter}
		if gl.Token, err = secret("gitlab.token_file", g.TokenFile); err != nil {
			return Webhooks{}, err
		}
		if gl.AnswerWithin, err = duration("gitlab.answer_within", g.AnswerWithin); err != nil {
			return Webhooks{}, err
		}
		w.GitLab = gl
	}
	if t := f.TektonTriggers; t != nil {
		tt := &TektonTriggersWebhook{Adapter: t.Adapter}
		if tt.ReplayWindow, err = duration("tekton_triggers.replay_window", t.ReplayWindow); err != nil {
			return Webhooks{}, err
		}
		for i, src := range t.Sources {
			b, err := secret(fmt.Sprintf("tekton_triggers.sources[%d].secret_file", i), src.SecretFile)
			if err != nil {
				return Webhooks{}, err
			}
			tt.Sources = append(tt.Sources, TriggersSource{Name: src.Name, Provider: src.Provider, Secret: b, Namespaces: src.Namespaces, MFASetting: src.MFASetting})
		}
		if _, err := newTriggersHook(*tt); err != nil {
			return Webhooks{}, fmt.Errorf("webhooks config %s: %w", path, err)
		}
		w.TektonTriggers = tt
	}
	return w, nil
}

// Files in the data directory.
const (
	// GitHubDeliveriesFile remembers GitHub webhook deliveries (hashed).
	GitHubDeliveriesFile = "github-deliveries"
	// GitHubCallbacksDir is the durable outbox of deployment reviews.
	GitHubCallbacksDir = "github-callbacks"
)

// webhookState is the daemon's side of the webhook endpoints.
type webhookState struct {
	github   *githubHook
	gitlab   *gitlabHook
	triggers *triggersHook
	stop     context.CancelFunc
	done     chan struct{}
}

// caller kind of a CI system authenticated by its webhook secret.
const kindWebhook = "webhook"

func openWebhooks(ctx context.Context, s *Server) (*webhookState, error) {
	cfg := s.cfg.Webhooks
	if cfg.GitHub == nil && cfg.GitLab == nil && cfg.TektonTriggers == nil {
		return nil, nil
	}
	enabled := func(what, name string) error {
		if !slices.ContainsFunc(s.cfg.Adapters, func(c host.Config) bool { return c.Name == name }) {
			return fmt.Errorf("webhooks: %s needs the adapter endpoint %q (serve --adapter %s)", what, name, name)
		}
		return nil
	}
	st := &webhookState{}
	if t := cfg.TektonTriggers; t != nil {
		h, err := newTriggersHook(*t)
		if err != nil {
			return nil, err
		}
		if err := enabled("tekton_triggers", h.name); err != nil {
			return nil, err
		}
		st.triggers = h
	}
	if g := cfg.GitLab; g != nil {
		h, err := newGitLabHook(s, *g)
		if err != nil {
			return nil, err
		}
		if err := enabled("gitlab", h.name); err != nil {
			return nil, err
		}
		st.gitlab = h
	}
	if g := cfg.GitHub; g != nil {
		h, err := newGitHubHook(s, *g)
		if err != nil {
			return nil, err
		}
		if err := enabled("github", h.name); err != nil {
			h.close()
			return nil, err
		}
		st.github = h
		if s.metrics != nil {
			s.metrics.MustRegister(&reviewCollector{outbox: h.callbacks})
		}
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		st.stop, st.done = cancel, make(chan struct{})
		go func() {
			defer close(st.done)
			h.callbacks.Run(rctx)
		}()
	}
	if st.triggers != nil {
		// Opened last: nothing after it can fail and leave it open.
		seen, err := identity.OpenReplayCache(filepath.Join(s.cfg.DataDir, TektonTriggersSeenFile), 0, s.cfg.Now())
		if err != nil {
			st.triggers = nil
			_ = st.close()
			return nil, fmt.Errorf("webhooks: tekton_triggers: %w", err)
		}
		st.triggers.seen = seen
	}
	return st, nil
}

// mountWebhooks routes POST /v1/adapters/{name} of the webhook adapters to
// their handlers; the literal paths win over the generic adapter route.
func (s *Server) mountWebhooks(mux *http.ServeMux) {
	if s.webhooks == nil {
		return
	}
	if h := s.webhooks.github; h != nil {
		mux.HandleFunc("POST /v1/adapters/"+h.name, h.handle)
	}
	if h := s.webhooks.gitlab; h != nil {
		mux.HandleFunc("POST /v1/adapters/"+h.name, h.handle)
	}
}

func (s *Server) closeWebhooks() error {
	if s.webhooks == nil {
		return nil
	}
	return s.webhooks.close()
}

func (st *webhookState) close() error {
	if st.stop != nil {
		st.stop()
		<-st.done
		st.stop = nil
	}
	var errs []error
	if st.triggers != nil && st.triggers.seen != nil {
		errs = append(errs, st.triggers.seen.Close())
	}
	if st.github != nil {
		errs = append(errs, st.github.close())
	}
	return errors.Join(errs...)
}

// GitHubCallbacksPending is the number of deployment reviews not yet
// delivered to GitHub (0 without a GitHub App).
func (s *Server) GitHubCallbacksPending() int {
	if s.webhooks == nil || s.webhooks.github == nil {
		return 0
	}
	return s.webhooks.github.callbacks.Depth()
}

// GitHubCallbackStats reports the deliveries of deployment reviews.
func (s *Server) GitHubCallbackStats() callback.Stats {
	if s.webhooks == nil || s.webhooks.github == nil {
		return callback.Stats{}
	}
	return s.webhooks.github.callbacks.Stats()
}

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

// webhookDecide runs a translated request through the decide path for a
// CI system that authenticated with its webhook secret: the system is the
// caller and vouches for the user its payload names.
func (s *Server) webhookDecide(ctx context.Context, req decision.Request, caller identity.Caller) (*decision.Receipt, error) {
	if err := s.bindSubject(&req, caller); err != nil {
		return nil, &adapter.Failure{Kind: adapter.BadRequest, Message: err.Error()}
	}
	rc, err := s.Decide(ctx, req, caller.Caller, false)
	if err != nil {
		return nil, &adapter.Failure{Kind: adapter.Unavailable, Message: "the decision could not be logged, so it is denied"}
	}
	return &rc, nil
}

// withoutHeaders is a copy of h without the named headers (secrets that
// must not reach an adapter).
func withoutHeaders(h http.Header, names ...string) http.Header {
	out := h.Clone()
	for _, n := range names {
		out.Del(n)
	}
	return out
}

// writeNative writes an adapter's native answer.
func writeNative(w http.ResponseWriter, resp adapter.Response) {
	for k, vs := range resp.Headers {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if resp.Status == 0 {
		resp.Status = http.StatusServiceUnavailable
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

func defaultName(name, def string) string {
	if strings.TrimSpace(name) == "" {
		return def
	}
	return name
}
