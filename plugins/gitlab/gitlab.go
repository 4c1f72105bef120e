// Package gitlab is gatelog's adapter for GitLab's external pipeline
// validation: before GitLab creates a pipeline it POSTs the project, the
// user, the pipeline (sha, ref, source) and the configuration's jobs (name,
// stage, image, services, tag_list, script) to a validation service, and
// creates the pipeline only if the answer is 200; 406 rejects it.
//
// GitLab accepts the pipeline on every other status, on errors and on
// timeouts, so every outcome that is not an allow renders as 406. GitLab
// reads only the status: the user sees "External validation failed"
// whatever the body says, so the reasons go in the body, the decision
// record and the daemon's log. The daemon checks the X-Gitlab-Token header
// (VerifyToken) before the adapter sees the payload.
package gitlab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/record/decision"
)

// Name and Version identify the adapter in Request.Source.
const (
	Name    = "gitlab"
	Version = "1.0.0"
)

// KindPipelineValidation is the payload kind the adapter accepts.
const KindPipelineValidation = "GitLab external pipeline validation request"

// The statuses GitLab reads: 200 creates the pipeline, 406 rejects it.
const (
	StatusAccepted = http.StatusOK
	StatusRejected = http.StatusNotAcceptable
)

// Settings keys accepted by Configure.
const (
	// SettingDefaultAction is the action for a pipeline that does not
	// deploy, or whose ref is not protected; default "pipeline.trigger".
	SettingDefaultAction = "default_action"
	// SettingDeployAction is the action for a pipeline on a protected ref
	// that deploys, or whose intent is unknown; default "deploy".
	SettingDeployAction = "deploy_action"
	// SettingJobEnvironments maps job name prefixes to environments,
	// "prefix=env,prefix2=env2" (longest prefix wins), and
	// SettingStageEnvironments maps stage names to environments,
	// "stage=env,...". They win over the naming conventions (classify.go):
	// use them for jobs whose names say nothing ("ship-it=production").
	// When a pipeline's jobs reach several environments the request names
	// the one listed first (job environments before stage environments,
	// then the fallback, production, staging, development, review).
	SettingJobEnvironments   = "job_environments"
	SettingStageEnvironments = "stage_environments"
	// SettingProtectedRefs lists the refs (globs over full refs, "*" also
	// matches "/") on which a pipeline is gated as a deploy when one of its
	// jobs deploys or its intent is unknown; default
	// "refs/heads/main,refs/heads/master,refs/tags/*". On other refs it is
	// asked as the default action with its deploy jobs recorded: GitLab
	// lists every job of the configuration, before `rules` decide which run
	// on this ref, so deploy jobs kept to the default branch appear in
	// every branch's payload. "*" gates every ref.
	SettingProtectedRefs = "protected_refs"
	// SettingFallbackEnvironment is the environment of a deploy job whose
	// name and stage name none, and of a pipeline on a protected ref with
	// jobs of unknown intent; default "production", the most protected.
	SettingFallbackEnvironment = "fallback_environment"
	// SettingTagNames lists globs over pipeline.ref: a ref that matches is a
	// tag (refs/tags/NAME), any other bare name a branch. GitLab's payload
	// does not say which it is; default none, so a tag pipeline is asked
	// as refs/heads/NAME and a deploy from it is refused by protected_refs
	// until its tags are named here.
	SettingTagNames = "tag_names"
	// SettingInstanceRequires2FA is "true" when the GitLab instance enforces
	// two-factor authentication for every account (Admin > Settings >
	// General > Sign-in restrictions, no grace period left). The adapter
	// then sets subject.mfa and records the fact's source in
	// subject.claims.mfa_source; the payload itself never says.
	SettingInstanceRequires2FA = "instance_requires_2fa"
)

// MFASourceInstanceSetting is subject.claims.mfa_source when subject.mfa
// comes from SettingInstanceRequires2FA.
const MFASourceInstanceSetting = "setting:gitlab.instance_requires_2fa"

// MaxPayloadBytes bounds an accepted payload (every job's script is in it).
const MaxPayloadBytes = 3 << 20

// TokenHeader is the header GitLab sends the validation service token in.
const TokenHeader = "X-Gitlab-Token"

// ErrToken means the X-Gitlab-Token header is missing or wrong.
var ErrToken = errors.New("X-Gitlab-Token rejected")

// VerifyToken compares the X-Gitlab-Token value with the configured token in
// constant time (over SHA-256 digests, so the length leaks nothing either).
// An empty configured token verifies nothing.
func VerifyToken(want []byte, got string) error {
	switch {
	case len(want) == 0:
		return fmt.Errorf("%w: no validation service token is configured", ErrToken)
	case got == "":
		return fmt.Errorf("%w: missing %s header (set the instance's external_pipeline_validation_service_token)", ErrToken, TokenHeader)
	}
	w, g := sha256.Sum256(want), sha256.Sum256([]byte(got))
	if subtle.ConstantTimeCompare(w[:], g[:]) != 1 {
		return fmt.Errorf("%w: %s does not match the configured token", ErrToken, TokenHeader)
	}
	return nil
}

type mapping struct{ key, env string }

type settings struct {
	defaultAction, deployAction string
	jobEnv, stageEnv            []mapping
	protectedRefs, tagNames     []string
	fallbackEnv                 string
	instance2FA                 bool
}

func defaultSettings() settings {
	return settings{
		defaultAction: "pipeline.trigger", deployAction: "deploy",
		protectedRefs: []string{"refs/heads/main", "refs/heads/master", "refs/tags/*"},
		fallbackEnv:   "production",
	}
}

// Adapter is the GitLab adapter. The zero value is not usable; call New.
type Adapter struct {
	mu  sync.RWMutex
	cfg settings
}

// New returns a GitLab adapter with default settings.
func New() *Adapter { return &Adapter{cfg: defaultSettings()} }

var _ adapter.Adapter = (*Adapter)(nil)

// Info implements adapter.Adapter. While the adapter is down the daemon
// answers 406: GitLab would create the pipeline on a 503.
func (a *Adapter) Info(context.Context) (adapter.Info, error) {
	body, _ := json.Marshal(answer{Allow: false, Message: "gatelog gitlab adapter is unavailable; pipeline rejected", Reasons: []string{"gatelog gitlab adapter is unavailable"}})
	return adapter.Info{
		Name:    Name,
		Version: Version,
		Kinds:   []string{KindPipelineValidation},
		Unavailable: &adapter.Response{
			Status:  StatusRejected,
			Headers: http.Header{"Content-Type": {"application/json"}},
			Body:    append(body, '\n'),
		},
	}, nil
}

// Configure implements adapter.Adapter; see the Setting constants.
func (a *Adapter) Configure(_ context.Context, in map[string]string) error {
	cfg := defaultSettings()
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := strings.TrimSpace(in[k])
		switch k {
		case SettingDefaultAction, SettingDeployAction:
			if v == "" || len(v) > 128 {
				return fmt.Errorf("%w: %s: want an action of 1 to 128 characters", adapter.ErrBadSettings, k)
			}
			if k == SettingDefaultAction {
				cfg.defaultAction = v
			} else {
				cfg.deployAction = v
			}
		case SettingJobEnvironments, SettingStageEnvironments:
			m, err := parseMappings(k, v)
			if err != nil {
				return err
			}
			if k == SettingJobEnvironments {
				cfg.jobEnv = m
			} else {
				cfg.stageEnv = m
			}
		case SettingProtectedRefs, SettingTagNames:
			globs := splitList(v)
			if k == SettingProtectedRefs {
				if len(globs) == 0 {
					return fmt.Errorf("%w: %s: want at least one ref glob (\"*\" gates every ref)", adapter.ErrBadSettings, k)
				}
				cfg.protectedRefs = globs
			} else {
				cfg.tagNames = globs
			}
		case SettingFallbackEnvironment:
			if v == "" || len(v) > 255 {
				return fmt.Errorf("%w: %s: want an environment name of 1 to 255 characters", adapter.ErrBadSettings, k)
			}
			cfg.fallbackEnv = v
		case SettingInstanceRequires2FA:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%w: %s: want true or false, not %q", adapter.ErrBadSettings, k, v)
			}
			cfg.instance2FA = b
		default:
			return fmt.Errorf("%w: unknown setting %q (known: %s)", adapter.ErrBadSettings, k, strings.Join(knownSettings, ", "))
		}
	}
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	return nil
}

var knownSettings = []string{SettingDefaultAction, SettingDeployAction, SettingJobEnvironments, SettingStageEnvironments,
	SettingProtectedRefs, SettingFallbackEnvironment, SettingTagNames, SettingInstanceRequires2FA}

// splitList splits a comma-separated setting, dropping empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func parseMappings(setting, v string) ([]mapping, error) {
	var out []mapping
	for pair := range strings.SplitSeq(v, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		key, env, ok := strings.Cut(pair, "=")
		if key, env = strings.TrimSpace(key), strings.TrimSpace(env); !ok || key == "" || env == "" {
			return nil, fmt.Errorf("%w: %s: %q is not name=environment", adapter.ErrBadSettings, setting, pair)
		}
		out = append(out, mapping{key, env})
	}
	return out, nil
}

// Payload is the external pipeline validation request, as GitLab builds it
// (Validate::External#validation_service_payload, and its EE module for
// namespace and provisioning_group) and its documentation's payload schema
// lists it.
type Payload struct {
	Project *struct {
		ID                   int64   `json:"id"`
		Path                 string  `json:"path"`
		CreatedAt            *string `json:"created_at"`
		SharedRunnersEnabled bool    `json:"shared_runners_enabled"`
		GroupRunnersEnabled  bool    `json:"group_runners_enabled"`
	} `json:"project"`
	User *struct {
		ID              int64   `json:"id"`
		Username        string  `json:"username"`
		Email           string  `json:"email"`
		CreatedAt       *string `json:"created_at"`
		CurrentSignInIP *string `json:"current_sign_in_ip"`
		LastSignInIP    *string `json:"last_sign_in_ip"`
		SignInCount     int64   `json:"sign_in_count"`
	} `json:"user"`
	CreditCard *struct {
		SimilarCardsCount       int64 `json:"similar_cards_count"`
		SimilarHolderNamesCount int64 `json:"similar_holder_names_count"`
	} `json:"credit_card"`
	Pipeline *struct {
		SHA  string `json:"sha"`
		Ref  string `json:"ref"`
		Type string `json:"type"`
	} `json:"pipeline"`
	Builds           []Build `json:"builds"`
	TotalBuildsCount *int64  `json:"total_builds_count"`
	Namespace        *Plan   `json:"namespace"`
	ProvisioningGrp  *Plan   `json:"provisioning_group"`
}

// Build is one job of the pipeline's configuration: every job, whether or
// not its rules let it run on this ref, and without its environment,
// which GitLab does not send.
type Build struct {
	Name     string   `json:"name"`
	Stage    string   `json:"stage"`
	Image    *string  `json:"image"`
	TagList  []string `json:"tag_list"`
	Services []string `json:"services"`
	Script   []string `json:"script"`
}

// Plan is a namespace's subscription (GitLab Premium and Ultimate only).
type Plan struct {
	Plan  string `json:"plan"`
	Trial bool   `json:"trial"`
}

// ParsePayload decodes a validation request and checks the fields the
// adapter needs: project.path, user.username, pipeline.sha and ref, and
// named jobs. Errors wrap adapter.ErrBadPayload and name the field.
func ParsePayload(body []byte) (Payload, error) {
	var p Payload
	if len(body) > MaxPayloadBytes {
		return p, adapter.BadPayload("payload of %d bytes exceeds %d", len(body), MaxPayloadBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, adapter.BadPayload("empty payload: expected a GitLab external pipeline validation request")
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Payload{}, adapter.BadPayload("payload is not a GitLab pipeline validation request: %v", err)
	}
	switch {
	case p.Project == nil || strings.TrimSpace(p.Project.Path) == "":
		return Payload{}, adapter.BadPayload(`field "project.path" is required`)
	case p.User == nil || strings.TrimSpace(p.User.Username) == "":
		return Payload{}, adapter.BadPayload(`field "user.username" is required (who creates the pipeline)`)
	case p.Pipeline == nil || p.Pipeline.SHA == "" || p.Pipeline.Ref == "":
		return Payload{}, adapter.BadPayload(`fields "pipeline.sha" and "pipeline.ref" are required`)
	}
	for i, b := range p.Builds {
		if strings.TrimSpace(b.Name) == "" {
			return Payload{}, adapter.BadPayload(`field "builds[%d].name" is required`, i)
		}
	}
	return p, nil
}

// ref is the full ref of pipeline.ref. GitLab sends a branch or tag by its
// bare name (a merge request pipeline's ref is already a full
// refs/merge-requests/… ref) and refuses to create a pipeline for a name
// that is both ("Ref is ambiguous", Validate::Repository), but the payload
// does not say which one it is: names matching tag_names are tags, any
// other a branch.
func (cfg settings) ref(sent string) string {
	sent = strings.TrimSpace(sent)
	if !strings.HasPrefix(sent, "refs/") && globAny(cfg.tagNames, sent) {
		return "refs/tags/" + sent
	}
	return decision.NormalizeRef(sent)
}

// Translate implements adapter.Adapter.
//
// The action: on a protected ref, a pipeline with a job that deploys, or
// with a job whose intent is unknown, is a deploy (deploy_action) to the
// most protected environment among its jobs' (unknown jobs count as the
// fallback environment, production by default); a pipeline of build and
// test jobs only is a trigger (default_action). On any other ref the
// pipeline is a trigger with its deploy jobs recorded (see
// SettingProtectedRefs for why).
func (a *Adapter) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	p, err := ParsePayload(in.Body)
	if err != nil {
		return decision.Request{}, err
	}
	a.mu.RLock()
	cfg := a.cfg
	a.mu.RUnlock()

	ref := cfg.ref(p.Pipeline.Ref)
	protected := globAny(cfg.protectedRefs, ref)
	var stages, images, envs, deployJobs, unknownJobs []string
	addUnique := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	jobs := make([]any, 0, len(p.Builds))
	for _, b := range p.Builds {
		addUnique(&stages, b.Stage)
		c := cfg.classify(b)
		job := map[string]any{"name": b.Name, "stage": b.Stage, "intent": c.intent}
		if b.Image != nil && *b.Image != "" {
			job["image"] = *b.Image
			addUnique(&images, *b.Image)
		}
		if len(b.Services) > 0 {
			job["services"] = stringsAsAny(b.Services)
			for _, s := range b.Services {
				addUnique(&images, s)
			}
		}
		if len(b.TagList) > 0 {
			job["tags"] = stringsAsAny(b.TagList)
		}
		// The script is recorded by digest: it can hold a literal secret,
		// and the log keeps what it is given for ever. An auditor matches
		// the digest against .gitlab-ci.yml at pipeline.sha.
		if len(b.Script) > 0 {
			sum := sha256.Sum256([]byte(strings.Join(b.Script, "\n")))
			job["script_sha256"] = hex.EncodeToString(sum[:])
			job["script_lines"] = len(b.Script)
		}
		switch c.intent {
		case IntentDeploy:
			job["environment"], job["environment_from"] = c.env, c.by
			addUnique(&envs, c.env)
			deployJobs = append(deployJobs, b.Name)
		case IntentUnknown:
			unknownJobs = append(unknownJobs, b.Name)
		}
		jobs = append(jobs, job)
	}
	intent := IntentBuildTest
	switch {
	case len(deployJobs) > 0:
		intent = IntentDeploy
	case len(unknownJobs) > 0:
		intent = IntentUnknown
	}
	if len(unknownJobs) > 0 {
		// A job nothing explains may deploy anywhere.
		addUnique(&envs, cfg.fallbackEnv)
	}
	slices.SortStableFunc(envs, func(x, y string) int { return cfg.envRank(x) - cfg.envRank(y) })

	action, env, gated := cfg.defaultAction, "", ""
	switch {
	case intent == IntentBuildTest:
		gated = "every job builds or tests"
	case !protected:
		gated = fmt.Sprintf("ref %s is not in the adapter's %s; its deploy jobs are recorded, not gated", ref, SettingProtectedRefs)
	case intent == IntentDeploy:
		action, env = cfg.deployAction, envs[0]
		gated = fmt.Sprintf("deploy jobs on a protected ref: %s", strings.Join(deployJobs, ", "))
	default:
		action, env = cfg.deployAction, envs[0]
		gated = fmt.Sprintf("jobs of unknown intent on a protected ref are asked as a deploy to %s: %s", cfg.fallbackEnv, strings.Join(unknownJobs, ", "))
	}
	attrs := map[string]any{
		"project_id":      p.Project.ID,
		"sha":             p.Pipeline.SHA,
		"pipeline_source": p.Pipeline.Type,
		"pipeline_ref":    p.Pipeline.Ref,
		"protected_ref":   protected,
		"intent":          intent,
		"gated_as":        gated,
		"jobs":            jobs,
	}
	if len(stages) > 0 {
		attrs["stages"] = stringsAsAny(stages)
	}
	if len(images) > 0 {
		attrs["images"] = stringsAsAny(images)
	}
	if len(envs) > 0 {
		attrs["environments"] = stringsAsAny(envs)
	}
	if len(deployJobs) > 0 {
		attrs["deploy_jobs"] = stringsAsAny(deployJobs)
	}
	if len(unknownJobs) > 0 {
		attrs["unknown_jobs"] = stringsAsAny(unknownJobs)
	}
	if p.TotalBuildsCount != nil {
		attrs["user_active_builds"] = *p.TotalBuildsCount
	}
	if p.Namespace != nil && p.Namespace.Plan != "" {
		attrs["namespace_plan"] = p.Namespace.Plan
	}
	subject := decision.Subject{ID: p.User.Username, Kind: "user", Claims: map[string]any{}}
	if p.User.ID != 0 {
		subject.Claims["gitlab_user_id"] = p.User.ID
	}
	if cfg.instance2FA {
		subject.MFA = true
		subject.Claims["mfa_source"] = MFASourceInstanceSetting
	}
	if len(subject.Claims) == 0 {
		subject.Claims = nil
	}
	// The user is who GitLab says creates the pipeline: the daemon binds it
	// once X-Gitlab-Token has shown the instance is the caller that may
	// vouch. Email and sign-in addresses stay out of the log.
	return decision.Request{
		Subject: subject,
		Action:  action,
		Resource: decision.Resource{
			System:      Name,
			Kind:        "pipeline",
			Name:        p.Project.Path,
			Environment: env,
			Repository:  p.Project.Path,
			Ref:         ref,
			Attributes:  attrs,
		},
		Source: decision.Source{Adapter: Name, AdapterVersion: Version, RequestID: in.Headers.Get("X-Gitlab-Correlation-Id")},
	}, nil
}

func stringsAsAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// answer is the body of every response. GitLab reads only the status;
// the body is for whoever looks at the call (and for curl in a test).
type answer struct {
	Allow      bool     `json:"allow"`
	Message    string   `json:"message"`
	Reasons    []string `json:"reasons"`
	Error      string   `json:"error,omitempty"`
	DecisionID string   `json:"decision_id,omitempty"`
	LogIndex   *int64   `json:"log_index,omitempty"`
}

// Render implements adapter.Adapter: 200 for an allow, 406 for everything
// else (a deny or any failure), since GitLab creates the pipeline on any
// other status.
func (a *Adapter) Render(_ context.Context, _ adapter.Native, out adapter.Outcome) (adapter.Response, error) {
	if err := out.Validate(); err != nil {
		return adapter.Response{}, err
	}
	ans := answer{Allow: out.Allowed(), Reasons: out.Reasons()}
	if ans.Reasons == nil {
		ans.Reasons = []string{}
	}
	verdict := "rejected"
	if ans.Allow {
		verdict = "accepted"
	}
	ans.Message = "gatelog: pipeline " + verdict
	if out.Failure != nil {
		ans.Error = out.Failure.Kind.String()
	} else {
		rc := out.Receipt
		ans.DecisionID, ans.LogIndex = rc.DecisionID, &rc.LogIndex
		ans.Message += fmt.Sprintf(" (decision %s, log index %d)", rc.DecisionID, rc.LogIndex)
	}
	if len(ans.Reasons) > 0 {
		ans.Message += ": " + strings.Join(ans.Reasons, "; ")
	}
	status := StatusRejected
	if ans.Allow {
		status = StatusAccepted
	}
	body, err := json.Marshal(ans)
	if err != nil {
		return adapter.Response{}, fmt.Errorf("encode answer: %w", err)
	}
	return adapter.Response{Status: status, Headers: http.Header{"Content-Type": {"application/json"}}, Body: append(body, '\n')}, nil
}
