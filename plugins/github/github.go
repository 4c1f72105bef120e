// Package github is gatelog's adapter for GitHub Actions custom deployment
// protection rules. GitHub sends a deployment_protection_rule webhook when a
// job waits for an environment protected by a GitHub App; the adapter turns
// it into a Request and the decision into the deployment review the App
// POSTs back to the run's deployment_callback_url:
// {"environment_name", "state": "approved"|"rejected", "comment"}.
//
// Like every adapter it never makes network calls and never decides. The
// daemon checks the webhook's X-Hub-Signature-256 (VerifySignature) before
// the adapter sees a byte, and delivers the rendered review itself.
package github

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// Name and Version identify the adapter in Request.Source.
const (
	Name    = "github"
	Version = "1.0.0"
)

// KindDeploymentProtectionRule is the payload kind the adapter accepts.
const KindDeploymentProtectionRule = "GitHub deployment_protection_rule webhook (action requested)"

// EventName is the X-GitHub-Event header of the webhook the adapter accepts.
const EventName = "deployment_protection_rule"

// SettingAction is the Configure key naming the action asked about;
// default "deploy".
const SettingAction = "action"

// MaxPayloadBytes bounds an accepted payload (GitHub caps webhook payloads
// at 25 MB; a deployment_protection_rule event is a few kilobytes).
const MaxPayloadBytes = 1 << 20

// MaxCommentBytes bounds the review comment, so that GitHub shows it whole.
const MaxCommentBytes = 1024

// Adapter is the GitHub adapter. The zero value is not usable; call New.
type Adapter struct {
	mu     sync.RWMutex
	action string
}

// New returns a GitHub adapter with default settings.
func New() *Adapter { return &Adapter{action: "deploy"} }

var _ adapter.Adapter = (*Adapter)(nil)

// Info implements adapter.Adapter. While the adapter is down the daemon
// answers the delivery 503 and posts no review: the deployment keeps
// waiting, which blocks it.
func (a *Adapter) Info(context.Context) (adapter.Info, error) {
	body, _ := json.Marshal(Review{State: StateRejected, Comment: "gatelog github adapter is unavailable"})
	return adapter.Info{
		Name:    Name,
		Version: Version,
		Kinds:   []string{KindDeploymentProtectionRule},
		Unavailable: &adapter.Response{
			Status:  http.StatusServiceUnavailable,
			Headers: http.Header{"Content-Type": {"application/json"}, "Retry-After": {"5"}},
			Body:    append(body, '\n'),
		},
	}, nil
}

// Configure implements adapter.Adapter; see SettingAction.
func (a *Adapter) Configure(_ context.Context, in map[string]string) error {
	action := "deploy"
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := strings.TrimSpace(in[k])
		switch k {
		case SettingAction:
			if v == "" || len(v) > 128 {
				return fmt.Errorf("%w: %s: want an action of 1 to 128 characters", adapter.ErrBadSettings, k)
			}
			action = v
		default:
			return fmt.Errorf("%w: unknown setting %q (known: %s)", adapter.ErrBadSettings, k, SettingAction)
		}
	}
	a.mu.Lock()
	a.action = action
	a.mu.Unlock()
	return nil
}

// User is a GitHub account as webhooks describe it.
type User struct {
	Login string `json:"login"`
	ID    int64  `json:"id"`
	Type  string `json:"type"` // User, Bot, Organization
}

// Event is the part of a deployment_protection_rule webhook payload gatelog
// reads (GitHub's webhook documentation, "deployment_protection_rule").
type Event struct {
	Action                string `json:"action"`
	Environment           string `json:"environment"`
	Event                 string `json:"event"`
	Ref                   string `json:"ref"`
	SHA                   string `json:"sha"`
	DeploymentCallbackURL string `json:"deployment_callback_url"`
	Deployment            *struct {
		ID          int64   `json:"id"`
		URL         string  `json:"url"`
		Task        string  `json:"task"`
		Environment string  `json:"environment"`
		Ref         string  `json:"ref"`
		SHA         string  `json:"sha"`
		Description *string `json:"description"`
		CreatedAt   string  `json:"created_at"`
		Creator     *User   `json:"creator"`
	} `json:"deployment"`
	PullRequests []struct {
		Number  int64  `json:"number"`
		HTMLURL string `json:"html_url"`
		User    *User  `json:"user"`
	} `json:"pull_requests"`
	Repository struct {
		ID         int64  `json:"id"`
		FullName   string `json:"full_name"`
		HTMLURL    string `json:"html_url"`
		Visibility string `json:"visibility"`
	} `json:"repository"`
	Organization *struct {
		Login string `json:"login"`
	} `json:"organization"`
	Installation *struct {
		ID int64 `json:"id"`
	} `json:"installation"`
	Sender *User `json:"sender"`
}

// ParseEvent decodes and checks a deployment_protection_rule payload: the
// action is "requested", it names an environment and a repository, and its
// deployment_callback_url is a workflow run's deployment_protection_rule
// URL in that repository. Errors wrap adapter.ErrBadPayload and name the
// field.
func ParseEvent(body []byte) (Event, error) {
	var ev Event
	if len(body) > MaxPayloadBytes {
		return ev, adapter.BadPayload("payload of %d bytes exceeds %d", len(body), MaxPayloadBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return ev, adapter.BadPayload("empty payload: expected a deployment_protection_rule webhook")
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return Event{}, adapter.BadPayload("payload is not a deployment_protection_rule webhook: %v", err)
	}
	switch {
	case ev.Action != "requested":
		return Event{}, adapter.BadPayload(`field "action" is %q: only "requested" deployment_protection_rule events are gated`, ev.Action)
	case strings.TrimSpace(ev.Environment) == "":
		return Event{}, adapter.BadPayload(`field "environment" is required (the environment the deployment waits for)`)
	case strings.TrimSpace(ev.Repository.FullName) == "":
		return Event{}, adapter.BadPayload(`field "repository.full_name" is required`)
	}
	if _, err := ev.RunID(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// RunID is the workflow run ID in the deployment_callback_url, which must
// be ".../repos/{repository.full_name}/actions/runs/{run id}/deployment_protection_rule".
// Which host it may point at is the daemon's to check (CallbackTarget in
// package callback), since only the daemon knows the GitHub API it trusts.
func (ev Event) RunID() (int64, error) {
	u, err := url.Parse(ev.DeploymentCallbackURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return 0, adapter.BadPayload(`field "deployment_callback_url" %q is not an absolute URL`, ev.DeploymentCallbackURL)
	}
	head, ok := strings.CutSuffix(u.EscapedPath(), "/deployment_protection_rule")
	var runID int64
	if ok {
		i := strings.LastIndex(head, "/actions/runs/")
		if i >= 0 {
			runID, err = strconv.ParseInt(head[i+len("/actions/runs/"):], 10, 64)
			if err != nil || runID <= 0 || !strings.HasSuffix(head[:i], "/repos/"+ev.Repository.FullName) {
				runID = 0
			}
		}
	}
	if runID == 0 {
		return 0, adapter.BadPayload(`field "deployment_callback_url" %q is not /repos/%s/actions/runs/{run id}/deployment_protection_rule`, ev.DeploymentCallbackURL, ev.Repository.FullName)
	}
	return runID, nil
}

// Translate implements adapter.Adapter.
func (a *Adapter) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	ev, err := ParseEvent(in.Body)
	if err != nil {
		return decision.Request{}, err
	}
	if ev.Sender == nil || strings.TrimSpace(ev.Sender.Login) == "" {
		return decision.Request{}, adapter.BadPayload(`field "sender.login" is required (who triggered the deployment)`)
	}
	runID, _ := ev.RunID()
	a.mu.RLock()
	action := a.action
	a.mu.RUnlock()

	attrs := map[string]any{"workflow_run_id": runID}
	set := func(k, v string) {
		if v != "" {
			attrs[k] = v
		}
	}
	set("sha", ev.SHA)
	set("event", ev.Event)
	set("repository_visibility", ev.Repository.Visibility)
	if ev.Repository.ID != 0 {
		attrs["repository_id"] = ev.Repository.ID
	}
	if ev.Installation != nil && ev.Installation.ID != 0 {
		attrs["installation_id"] = ev.Installation.ID
	}
	if ev.Organization != nil {
		set("organization", ev.Organization.Login)
	}
	name := strconv.FormatInt(runID, 10)
	kind := "workflow_run"
	unverified := map[string]any{}
	if d := ev.Deployment; d != nil {
		if d.ID != 0 {
			attrs["deployment_id"] = d.ID
			name, kind = strconv.FormatInt(d.ID, 10), "deployment"
		}
		set("deployment_task", d.Task)
		if ev.SHA == "" {
			set("sha", d.SHA)
		}
		if d.Creator != nil {
			set("deployment_creator", d.Creator.Login)
		}
		// The description is whatever the workflow author wrote.
		if d.Description != nil && *d.Description != "" {
			unverified["deployment_description"] = *d.Description
		}
	}
	var change *decision.Change
	if len(ev.PullRequests) > 0 {
		prs := make([]any, 0, len(ev.PullRequests))
		for _, pr := range ev.PullRequests {
			prs = append(prs, pr.Number)
		}
		attrs["pull_requests"] = prs
		// GitHub says who opened the pull request; with one pull request
		// that is the change being shipped, for separation of duties.
		if pr := ev.PullRequests[0]; len(ev.PullRequests) == 1 && pr.User != nil && pr.User.Login != "" {
			change = &decision.Change{ID: "#" + strconv.FormatInt(pr.Number, 10), Author: pr.User.Login}
		}
	}
	// GitHub names the deployment's ref as the workflow's GITHUB_REF_NAME:
	// a bare branch name ("main"). Policies compare full refs, so it is
	// normalised ("refs/heads/main"); the spelling GitHub sent is kept
	// beside it. The payload does not say whether a bare name is a tag
	// (the event is "push" for both): it is read as a branch here, and the
	// daemon, which may ask GitHub's API, makes it refs/tags/NAME when the
	// repository has that tag at the deployment's commit.
	ref := ev.Ref
	if ref == "" && ev.Deployment != nil {
		ref = ev.Deployment.Ref
	}
	if full := decision.NormalizeRef(ref); full != ref {
		attrs["ref_name"] = ref
		ref = full
	}
	if len(unverified) == 0 {
		unverified = nil
	}
	kindOfSender := "user"
	if ev.Sender.Type == "Bot" {
		kindOfSender = "service"
	}
	var claims map[string]any
	if ev.Sender.ID != 0 {
		claims = map[string]any{"github_user_id": ev.Sender.ID}
	}
	// The sender is who GitHub says triggered the run. It is a claim until
	// the daemon has checked the webhook signature and bound the GitHub App
	// as a caller allowed to vouch for it.
	return decision.Request{
		Subject: decision.Subject{ID: ev.Sender.Login, Kind: kindOfSender, Claims: claims},
		Action:  action,
		Resource: decision.Resource{
			System:      Name,
			Kind:        kind,
			Name:        name,
			Environment: ev.Environment,
			Repository:  ev.Repository.FullName,
			Ref:         ref,
			Attributes:  attrs,
		},
		Context: decision.Context{Change: change, Unverified: unverified},
		Source:  decision.Source{Adapter: Name, AdapterVersion: Version, RequestID: in.Headers.Get("X-GitHub-Delivery")},
	}, nil
}

// Review states.
const (
	StateApproved = "approved"
	StateRejected = "rejected"
)

// Review is the body of POST {deployment_callback_url} ("Review custom
// deployment protection rules for a workflow run" in GitHub's REST API).
type Review struct {
	EnvironmentName string `json:"environment_name"`
	State           string `json:"state"`
	Comment         string `json:"comment"`
}

// Render implements adapter.Adapter: the answer's body is the review for
// the run's deployment_callback_url, approved only for an allow. Its status
// is what the daemon answers the webhook delivery with: 200 once there is a
// review to send, 400 for a payload that names no environment or callback
// (there is nothing to review; the deployment keeps waiting).
func (a *Adapter) Render(_ context.Context, in adapter.Native, out adapter.Outcome) (adapter.Response, error) {
	if err := out.Validate(); err != nil {
		return adapter.Response{}, err
	}
	status := http.StatusOK
	ev, err := ParseEvent(in.Body)
	if err != nil {
		status = http.StatusBadRequest
		if out.Failure == nil {
			out = adapter.Outcome{Failure: adapter.FailureOf(err)}
		}
	}
	r := Review{EnvironmentName: ev.Environment, State: StateRejected, Comment: Comment(out)}
	if out.Allowed() && status == http.StatusOK {
		r.State = StateApproved
	}
	body, err := json.Marshal(r)
	if err != nil {
		return adapter.Response{}, fmt.Errorf("encode review: %w", err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if out.Receipt != nil {
		h.Set("X-Gatelog-Decision-Id", out.Receipt.DecisionID)
	}
	return adapter.Response{Status: status, Headers: h, Body: append(body, '\n')}, nil
}

// Rejection is the review the daemon sends when no adapter could render
// one (the adapter is down): rejected, with the reason.
func Rejection(environment, reason string) Review {
	return Review{EnvironmentName: environment, State: StateRejected, Comment: truncate("gatelog: DENIED: " + reason)}
}

// Comment is the review comment for an outcome: the verdict, where the
// record is (decision id, log index, entry UUID) and the reasons, cut to
// MaxCommentBytes with the record's location kept.
func Comment(out adapter.Outcome) string {
	verdict := "DENIED"
	if out.Allowed() {
		verdict = "ALLOWED"
	}
	head := "gatelog: " + verdict
	if rc := out.Receipt; rc != nil {
		head += fmt.Sprintf(" (decision %s, log index %d", rc.DecisionID, rc.LogIndex)
		if rc.UUID != "" {
			head += ", entry " + rc.UUID
		}
		head += ")"
	}
	reasons := out.Reasons()
	if len(reasons) == 0 {
		return truncate(head)
	}
	return truncate(head + ": " + strings.Join(reasons, "; "))
}

func truncate(s string) string {
	if len(s) <= MaxCommentBytes {
		return s
	}
	cut := MaxCommentBytes - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
