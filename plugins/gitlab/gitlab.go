// Package gitlab is gatelog's adapter for GitLab's external pipeline
// validation: before GitLab creates a pipeline it POSTs the project, the
// user, the pipeline (sha, ref, source) and its jobs (name, stage, image,
// services, tags, script) to a validation service, and creates the pipeline
// only if the answer is 200; 406 rejects it.
//
// GitLab accepts the pipeline on every other status, on errors and on
// timeouts, so every outcome that is not an allow renders as 406. The daemon
// checks the X-Gitlab-Token header (VerifyToken) before the adapter sees
// the payload.
package gitlab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/gatelog/gatelog/engine/decision"
	"github.com/gatelog/gatelog/plugins/adapter"
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
	// SettingDefaultAction is the action for a pipeline none of whose jobs
	// deploys to a known environment; default "pipeline.trigger".
	SettingDefaultAction = "default_action"
	// SettingDeployAction is the action for a pipeline with a job that
	// deploys to an environment; default "deploy".
	SettingDeployAction = "deploy_action"
	// SettingJobEnvironments maps job name prefixes to environments,
	// "prefix=env,prefix2=env2" (longest prefix wins), and
	// SettingStageEnvironments maps stage names to environments,
	// "stage=env,...". A job's prefix wins over its stage. GitLab's payload
	// does not say which environment a job deploys to, so these are how the
	// adapter knows. When a pipeline's jobs reach several environments the
	// request names the one listed first (job environments before stage
	// environments): list the most protected first.
	SettingJobEnvironments   = "job_environments"
	SettingStageEnvironments = "stage_environments"
)

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
}

func defaultSettings() settings {
	return settings{defaultAction: "pipeline.trigger", deployAction: "deploy"}
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
		default:
			return fmt.Errorf("%w: unknown setting %q (known: %s, %s, %s, %s)", adapter.ErrBadSettings, k,
				SettingDefaultAction, SettingDeployAction, SettingJobEnvironments, SettingStageEnvironments)
		}
	}
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	return nil
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

// Payload is the external pipeline validation request, as GitLab's
// documentation ("External pipeline validation", payload schema) lists it.
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

// Build is one job of the pipeline.
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

// environment is the environment a job deploys to under cfg, and the rank
// of its mapping (lower is listed first).
func (cfg settings) environment(b Build) (string, int) {
	best, env, rank := -1, "", -1
	for i, m := range cfg.jobEnv {
		if strings.HasPrefix(b.Name, m.key) && len(m.key) > best {
			best, env, rank = len(m.key), m.env, i
		}
	}
	if env != "" {
		return env, rank
	}
	for i, m := range cfg.stageEnv {
		if b.Stage == m.key {
			return m.env, len(cfg.jobEnv) + i
		}
	}
	return "", -1
}

// firstRank is the rank of env's first mapping.
func (cfg settings) firstRank(env string) int {
	for i, m := range append(slices.Clone(cfg.jobEnv), cfg.stageEnv...) {
		if m.env == env {
			return i
		}
	}
	return -1
}

// Translate implements adapter.Adapter.
func (a *Adapter) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	p, err := ParsePayload(in.Body)
	if err != nil {
		return decision.Request{}, err
	}
	a.mu.RLock()
	cfg := a.cfg
	a.mu.RUnlock()

	var stages, images, envs []string
	addUnique := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	jobs := make([]any, 0, len(p.Builds))
	for _, b := range p.Builds {
		addUnique(&stages, b.Stage)
		job := map[string]any{"name": b.Name, "stage": b.Stage}
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
		if env, _ := cfg.environment(b); env != "" {
			job["environment"] = env
			addUnique(&envs, env)
		}
		jobs = append(jobs, job)
	}
	// With several environments, the one whose mapping is listed first.
	slices.SortStableFunc(envs, func(x, y string) int { return cfg.firstRank(x) - cfg.firstRank(y) })
	action, env := cfg.defaultAction, ""
	if len(envs) > 0 {
		action, env = cfg.deployAction, envs[0]
	}
	attrs := map[string]any{
		"project_id":      p.Project.ID,
		"sha":             p.Pipeline.SHA,
		"pipeline_source": p.Pipeline.Type,
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
	if p.TotalBuildsCount != nil {
		attrs["user_active_builds"] = *p.TotalBuildsCount
	}
	if p.Namespace != nil && p.Namespace.Plan != "" {
		attrs["namespace_plan"] = p.Namespace.Plan
	}
	var claims map[string]any
	if p.User.ID != 0 {
		claims = map[string]any{"gitlab_user_id": p.User.ID}
	}
	// The user is who GitLab says creates the pipeline; a claim until the
	// daemon has checked X-Gitlab-Token and bound the GitLab instance as a
	// caller allowed to vouch. Email and sign-in addresses stay out of the
	// log. GitLab sends the ref without saying whether it is a branch or a
	// tag, so it is kept exactly as sent.
	return decision.Request{
		Subject: decision.Subject{ID: p.User.Username, Kind: "user", Claims: claims},
		Action:  action,
		Resource: decision.Resource{
			System:      Name,
			Kind:        "pipeline",
			Name:        p.Project.Path,
			Environment: env,
			Repository:  p.Project.Path,
			Ref:         p.Pipeline.Ref,
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
