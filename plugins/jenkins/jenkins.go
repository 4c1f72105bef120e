// Package jenkins is gatelog's adapter for Jenkins: it turns a build's
// description (its environment variables such as JOB_NAME and BUILD_URL, its
// causes, parameters and node, or the build's REST API JSON alone) into a
// Request, and the decision into a JSON answer whose HTTP status fails the
// build's HTTP call on anything but an allow. Refs are given in full
// (GIT_BRANCH "origin/main" is "refs/heads/main"), so policies compare one
// spelling whatever kind of job reported it.
//
// Jenkins has no admission point a pipeline author cannot bypass, so the
// adapter only describes a build. Who asks is never taken from the payload:
// the daemon replaces the subject with the identity in the build's verified
// OIDC token, and build causes and CHANGE_AUTHOR are recorded as unverified
// context.
package jenkins

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
	Name    = "jenkins"
	Version = "1.0.0"
)

// KindBuild is the payload kind the adapter accepts.
const KindBuild = "jenkins build JSON (environment variables, causes, parameters, node; or the build REST API object)"

// Settings keys accepted by Configure.
const (
	// SettingDefaultAction is the action when the payload names none;
	// default "pipeline.trigger".
	SettingDefaultAction = "default_action"
	// SettingJobEnvironments maps job name prefixes to environments,
	// "prefix=env,prefix2=env2" (longest prefix wins). It wins over the
	// payload's environment: job names are set by Jenkins administrators.
	SettingJobEnvironments = "job_environments"
)

// MaxPayloadBytes bounds an accepted payload.
const MaxPayloadBytes = 1 << 20

type settings struct {
	defaultAction string
	jobEnv        map[string]string
}

// Adapter is the Jenkins adapter. The zero value is not usable; call New.
type Adapter struct {
	mu  sync.RWMutex
	cfg settings
}

// New returns a Jenkins adapter with default settings.
func New() *Adapter { return &Adapter{cfg: settings{defaultAction: "pipeline.trigger"}} }

var _ adapter.Adapter = (*Adapter)(nil)

// Info implements adapter.Adapter.
func (a *Adapter) Info(context.Context) (adapter.Info, error) {
	body, _ := json.Marshal(answer{Allow: false, Error: adapter.Unavailable.String(), Reasons: []string{"gatelog jenkins adapter is unavailable"}})
	return adapter.Info{
		Name:    Name,
		Version: Version,
		Kinds:   []string{KindBuild},
		Unavailable: &adapter.Response{
			Status:  http.StatusServiceUnavailable,
			Headers: http.Header{"Content-Type": {"application/json"}, "Retry-After": {"5"}},
			Body:    append(body, '\n'),
		},
	}, nil
}

// Configure implements adapter.Adapter; see the Setting constants.
func (a *Adapter) Configure(_ context.Context, in map[string]string) error {
	cfg := settings{defaultAction: "pipeline.trigger"}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := strings.TrimSpace(in[k])
		switch k {
		case SettingDefaultAction:
			if v == "" || len(v) > 128 {
				return fmt.Errorf("%w: %s: want an action of 1 to 128 characters", adapter.ErrBadSettings, k)
			}
			cfg.defaultAction = v
		case SettingJobEnvironments:
			cfg.jobEnv = map[string]string{}
			for pair := range strings.SplitSeq(v, ",") {
				if pair = strings.TrimSpace(pair); pair == "" {
					continue
				}
				prefix, env, ok := strings.Cut(pair, "=")
				if !ok || strings.TrimSpace(prefix) == "" || strings.TrimSpace(env) == "" {
					return fmt.Errorf("%w: %s: %q is not job-prefix=environment", adapter.ErrBadSettings, k, pair)
				}
				cfg.jobEnv[strings.TrimSpace(prefix)] = strings.TrimSpace(env)
			}
		default:
			return fmt.Errorf("%w: unknown setting %q (known: %s, %s)", adapter.ErrBadSettings, k, SettingDefaultAction, SettingJobEnvironments)
		}
	}
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	return nil
}

func (a *Adapter) settings() settings {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cfg
}

// payload is what the adapter reads. The upper-case fields are Jenkins'
// own environment variable names, so a pipeline step can send them as they
// are; build is the build's REST API object (/job/NAME/NUMBER/api/json),
// which alone is a whole payload.
type payload struct {
	Action      string `json:"action"`
	Environment string `json:"environment"`

	JobName           string `json:"JOB_NAME"`
	JobURL            string `json:"JOB_URL"`
	BuildNumber       string `json:"BUILD_NUMBER"`
	BuildURL          string `json:"BUILD_URL"`
	BuildTag          string `json:"BUILD_TAG"`
	NodeName          string `json:"NODE_NAME"`
	JenkinsURL        string `json:"JENKINS_URL"`
	BranchName        string `json:"BRANCH_NAME"`
	GitURL            string `json:"GIT_URL"`
	GitBranch         string `json:"GIT_BRANCH"`
	GitCommit         string `json:"GIT_COMMIT"`
	ChangeID          string `json:"CHANGE_ID"`
	ChangeURL         string `json:"CHANGE_URL"`
	ChangeTarget      string `json:"CHANGE_TARGET"`
	ChangeAuthor      string `json:"CHANGE_AUTHOR"`
	ChangeAuthorEmail string `json:"CHANGE_AUTHOR_EMAIL"`

	Parameters json.RawMessage `json:"parameters"`
	Causes     []cause         `json:"causes"`
	Build      *build          `json:"build"`
	// Attributes are further resource attributes the pipeline adds (a
	// service name, say); they never replace what the adapter sets.
	Attributes map[string]any `json:"attributes"`
}

// cause is a Jenkins build cause, e.g. hudson.model.Cause$UserIdCause.
type cause struct {
	Class            string `json:"_class"`
	ShortDescription string `json:"shortDescription"`
	UserID           string `json:"userId"`
	UserName         string `json:"userName"`
	UpstreamProject  string `json:"upstreamProject"`
	UpstreamBuild    *int64 `json:"upstreamBuild"`
}

// build is the part of Jenkins' build REST API object the adapter reads
// (/job/NAME/NUMBER/api/json). Older Jenkins versions omit _class, so
// actions are recognised by their fields: causes (CauseAction),
// parameters (ParametersAction), lastBuiltRevision and remoteUrls (the Git
// plugin's BuildData, one per repository the build checked out).
type build struct {
	FullDisplayName string `json:"fullDisplayName"`
	Number          int64  `json:"number"`
	URL             string `json:"url"`
	BuiltOn         string `json:"builtOn"`
	Actions         []struct {
		Class             string       `json:"_class"`
		Causes            []cause      `json:"causes"`
		Parameters        []namedValue `json:"parameters"`
		LastBuiltRevision *revision    `json:"lastBuiltRevision"`
		RemoteURLs        []string     `json:"remoteUrls"`
	} `json:"actions"`
}

// revision is the Git plugin's hudson.plugins.git.Revision.
type revision struct {
	SHA1   string `json:"SHA1"`
	Branch []struct {
		SHA1 string `json:"SHA1"`
		Name string `json:"name"`
	} `json:"branch"`
}

// gitCheckout is one BuildData action: what a build checked out.
type gitCheckout struct {
	remote, branch, commit string
}

type namedValue struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// parameters accepts {"NAME": value} or [{"name": ..., "value": ...}].
func parameters(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '{' {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		return m, nil
	}
	var list []namedValue
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	m := make(map[string]any, len(list))
	for _, p := range list {
		m[p.Name] = p.Value
	}
	return m, nil
}

// Translate implements adapter.Adapter.
func (a *Adapter) Translate(_ context.Context, in adapter.Native) (decision.Request, error) {
	p, err := decode(in.Body)
	if err != nil {
		return decision.Request{}, err
	}
	params, err := parameters(p.Parameters)
	if err != nil {
		return decision.Request{}, adapter.BadPayload(`field "parameters": want an object or a list of {name, value}: %v`, err)
	}
	causes := p.Causes
	node := p.NodeName
	buildURL := p.BuildURL
	buildNumber := p.BuildNumber
	jobName, jobURL := p.JobName, p.JobURL
	var checkouts []gitCheckout
	if b := p.Build; b != nil {
		for _, act := range b.Actions {
			causes = append(causes, act.Causes...)
			for _, nv := range act.Parameters {
				if params == nil {
					params = map[string]any{}
				}
				if _, set := params[nv.Name]; !set {
					params[nv.Name] = nv.Value
				}
			}
			if r := act.LastBuiltRevision; r != nil {
				co := gitCheckout{commit: r.SHA1}
				if len(r.Branch) > 0 {
					co.branch = r.Branch[0].Name
				}
				// An unexpanded "$GIT_BASE" is no repository.
				if len(act.RemoteURLs) > 0 && !strings.Contains(act.RemoteURLs[0], "$") {
					co.remote = act.RemoteURLs[0]
				}
				checkouts = append(checkouts, co)
			}
		}
		node = firstNonEmpty(node, b.BuiltOn)
		buildURL = firstNonEmpty(buildURL, b.URL)
		if buildNumber == "" && b.Number > 0 {
			buildNumber = strconv.FormatInt(b.Number, 10)
		}
		if jobName == "" || jobURL == "" {
			name, u := jobOfBuildURL(b.URL)
			if name == "" {
				name = jobOfDisplayName(b.FullDisplayName)
			}
			jobName, jobURL = firstNonEmpty(jobName, name), firstNonEmpty(jobURL, u)
		}
	}
	if jobName == "" {
		return decision.Request{}, adapter.BadPayload(`field "JOB_NAME" is required (the full job name, e.g. "payments/deploy"), or "build.url" of the build REST API object`)
	}
	// A build that checked out exactly one repository names its ref;
	// with several (a shared library and the project, say) the adapter
	// cannot tell which one is deployed, so it names none and a deploy to
	// a protected environment is refused for want of a protected ref.
	repository, ref, commit := p.GitURL, firstNonEmpty(p.BranchName, p.GitBranch), p.GitCommit
	if len(checkouts) == 1 {
		repository = firstNonEmpty(repository, checkouts[0].remote)
		ref = firstNonEmpty(ref, checkouts[0].branch)
		commit = firstNonEmpty(commit, checkouts[0].commit)
	}
	cfg := a.settings()

	action := strings.TrimSpace(p.Action)
	if action == "" {
		action = cfg.defaultAction
	}
	env := jobEnvironment(cfg.jobEnv, jobName)
	if env == "" {
		env = strings.TrimSpace(p.Environment)
	}

	attrs := map[string]any{}
	set := func(k, v string) {
		if v != "" {
			attrs[k] = v
		}
	}
	set("build_number", buildNumber)
	set("build_url", buildURL)
	set("build_tag", p.BuildTag)
	set("job_url", jobURL)
	set("node", node)
	set("jenkins_url", p.JenkinsURL)
	set("commit", commit)
	set("change_id", p.ChangeID)
	set("change_url", p.ChangeURL)
	set("change_target", p.ChangeTarget)
	if len(params) > 0 {
		attrs["parameters"] = params
	}
	for k, v := range p.Attributes {
		if _, taken := attrs[k]; !taken && k != "" && v != nil {
			attrs[k] = v
		}
	}
	if len(checkouts) > 1 {
		list := make([]any, 0, len(checkouts))
		for _, co := range checkouts {
			m := map[string]any{}
			set := func(k, v string) {
				if v != "" {
					m[k] = v
				}
			}
			set("repository", co.remote)
			set("ref", gitRef(co.branch))
			set("commit", co.commit)
			list = append(list, m)
		}
		attrs["git_checkouts"] = list
	}

	// Causes and the change author come from the build, which anyone who
	// can edit the Jenkinsfile or trigger the job can shape: policies may
	// read them but must not take them as identity.
	unverified := map[string]any{}
	if len(causes) > 0 {
		list := make([]any, 0, len(causes))
		var users []string
		for _, c := range causes {
			m := map[string]any{}
			for k, v := range map[string]string{"class": c.Class, "description": c.ShortDescription, "user_id": c.UserID, "user_name": c.UserName, "upstream_project": c.UpstreamProject} {
				if v != "" {
					m[k] = v
				}
			}
			if c.UpstreamBuild != nil {
				m["upstream_build"] = *c.UpstreamBuild
			}
			list = append(list, m)
			if c.UserID != "" && !slices.Contains(users, c.UserID) {
				users = append(users, c.UserID)
			}
		}
		unverified["causes"] = list
		if len(users) > 0 {
			unverified["triggered_by"] = users[0]
		}
	}
	if p.ChangeAuthor != "" {
		unverified["change_author"] = p.ChangeAuthor
	}
	if p.ChangeAuthorEmail != "" {
		unverified["change_author_email"] = p.ChangeAuthorEmail
	}
	if len(unverified) == 0 {
		unverified = nil
	}
	if len(attrs) == 0 {
		attrs = nil
	}

	// The subject is the job, as the build's OIDC token (Jenkins
	// oidc-provider plugin) names it: its URL, or its name without one. It
	// is only a claim here; the daemon overrides it with the subject of the
	// verified token that came with the request.
	return decision.Request{
		Subject: decision.Subject{ID: firstNonEmpty(jobURL, jobName), Kind: "service"},
		Action:  action,
		Resource: decision.Resource{
			System:      Name,
			Kind:        "job",
			Name:        jobName,
			Environment: env,
			Repository:  repository,
			Ref:         gitRef(ref),
			Attributes:  attrs,
		},
		Context: decision.Context{Unverified: unverified},
		Source:  decision.Source{Adapter: Name, AdapterVersion: Version, RequestID: firstNonEmpty(p.BuildTag, buildURL)},
	}, nil
}

func decode(body []byte) (payload, error) {
	var p payload
	if len(body) > MaxPayloadBytes {
		return p, adapter.BadPayload("payload of %d bytes exceeds %d", len(body), MaxPayloadBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, adapter.BadPayload("empty payload: expected a JSON object with JOB_NAME or build")
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return p, adapter.BadPayload("payload is not a Jenkins build JSON object: %v", err)
	}
	return p, nil
}

// gitRef is a branch as Jenkins reports it, in full: GIT_BRANCH of a
// non-multibranch job ("origin/main"), BRANCH_NAME of a multibranch one
// ("main"), or a Git plugin BuildData branch ("refs/remotes/origin/main",
// "master"), all become "refs/heads/<branch>".
func gitRef(name string) string {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(name), "refs/remotes/"); ok {
		name = "remotes/" + rest
	}
	return decision.NormalizeRef(name)
}

// jobOfBuildURL reads the job's full name and URL from a build's URL
// ("https://jenkins.example.com/job/payments/job/deploy/142/" is build 142
// of "payments/deploy"): the build number is the last path segment and
// the trailing "job/<name>" pairs before it name the job and its folders.
// Names are decoded once, as Jenkins encodes each for the URL.
func jobOfBuildURL(raw string) (name, jobURL string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", ""
	}
	segs := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
	if len(segs) < 3 {
		return "", ""
	}
	if _, err := strconv.ParseUint(segs[len(segs)-1], 10, 63); err != nil {
		return "", ""
	}
	segs = segs[:len(segs)-1]
	var names []string
	i := len(segs) - 2
	for ; i >= 0 && segs[i] == "job"; i -= 2 {
		n, err := url.PathUnescape(segs[i+1])
		if err != nil || n == "" {
			return "", ""
		}
		names = append([]string{n}, names...)
	}
	if len(names) == 0 {
		return "", ""
	}
	u.RawPath, u.Path = "", ""
	u.RawQuery, u.Fragment = "", ""
	return strings.Join(names, "/"), strings.TrimSuffix(u.String(), "/") + "/" + strings.Join(segs, "/") + "/"
}

// jobOfDisplayName reads a job's name from a build's fullDisplayName
// ("payments » deploy #142"). Display names equal names unless someone
// renamed a folder's or job's display name; the name from build.url is
// preferred, and the daemon refuses a name the caller's token contradicts.
func jobOfDisplayName(full string) string {
	i := strings.LastIndex(full, " #")
	if i <= 0 {
		return ""
	}
	parts := strings.Split(full[:i], " » ")
	for _, p := range parts {
		if strings.TrimSpace(p) == "" {
			return ""
		}
	}
	return strings.Join(parts, "/")
}

func jobEnvironment(m map[string]string, job string) string {
	best, env := -1, ""
	for prefix, e := range m {
		if strings.HasPrefix(job, prefix) && len(prefix) > best {
			best, env = len(prefix), e
		}
	}
	return env
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// answer is the JSON the adapter renders; the shared-library step and
// anything else calling the endpoint read allow and fail on the HTTP status.
type answer struct {
	Allow        bool     `json:"allow"`
	Reasons      []string `json:"reasons"`
	Error        string   `json:"error,omitempty"`
	DecisionID   string   `json:"decision_id,omitempty"`
	LogIndex     *int64   `json:"log_index,omitempty"`
	LogEntryUUID string   `json:"log_entry_uuid,omitempty"`
}

// Render implements adapter.Adapter: 200 for an allow, 403 for a deny, and
// the failure's status otherwise, so `curl --fail` fails the build on
// anything but an allow.
func (a *Adapter) Render(_ context.Context, _ adapter.Native, out adapter.Outcome) (adapter.Response, error) {
	if err := out.Validate(); err != nil {
		return adapter.Response{}, err
	}
	ans := answer{Allow: out.Allowed(), Reasons: out.Reasons()}
	if ans.Reasons == nil {
		ans.Reasons = []string{}
	}
	status := http.StatusOK
	switch {
	case out.Failure != nil:
		ans.Error = out.Failure.Kind.String()
		status = out.Failure.Kind.HTTPStatus()
	default:
		rc := out.Receipt
		ans.DecisionID, ans.LogEntryUUID = rc.DecisionID, rc.UUID
		ans.LogIndex = &rc.LogIndex
		if !rc.Allow {
			status = http.StatusForbidden
		}
	}
	body, err := json.Marshal(ans)
	if err != nil {
		return adapter.Response{}, fmt.Errorf("encode answer: %w", err)
	}
	return adapter.Response{
		Status:  status,
		Headers: http.Header{"Content-Type": {"application/json"}},
		Body:    append(body, '\n'),
	}, nil
}
