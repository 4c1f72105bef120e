package gitlab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gatelog/gatelog/plugins/adapter"
)

// Job names and stages as GitLab's documentation and templates write them.
func TestClassifyByConvention(t *testing.T) {
	cfg := defaultSettings()
	for _, tc := range []struct {
		name, stage, intent, env string
	}{
		// doc/ci/environments/deployments.md, _index.md
		{"deploy_prod", "deploy", IntentDeploy, "production"},
		{"deploy_staging", "deploy", IntentDeploy, "staging"},
		{"deploy_review_app", "deploy", IntentDeploy, "review"},
		{"deploy-to-cloud-a", "test", IntentDeploy, "production"}, // no stage: GitLab puts it in test
		// doc/ci/quick_start/_index.md
		{"deploy-prod", "deploy", IntentDeploy, "production"},
		{"build-job", "build", IntentBuildTest, ""},
		{"test-job1", "test", IntentBuildTest, ""},
		// release_cicd_examples.md: a release job, stage release
		{"release_job", "release", IntentDeploy, "production"},
		// Auto DevOps job and stage names
		{"production", "production", IntentDeploy, "production"},
		{"production_manual", "production", IntentDeploy, "production"},
		{"canary", "canary", IntentDeploy, "production"},
		{"rollout 100%", "production", IntentDeploy, "production"},
		{"incremental rollout 10%", "incremental rollout 10%", IntentDeploy, "production"},
		{"staging", "staging", IntentDeploy, "staging"},
		{"review", "review", IntentDeploy, "review"},
		{"code_quality", "test", IntentBuildTest, ""},
		{"secret_detection", "test", IntentBuildTest, ""},
		{"build:production", "build", IntentBuildTest, ""}, // builds for production, deploys nothing
		// a job in GitLab's default deploy stage whose name says nothing
		{"pages", "deploy", IntentDeploy, "production"},
		// external_spec.rb: stages nothing explains
		{"first_stage_job_name", "first_stage", IntentUnknown, ""},
		{"second_stage_job_name", "second_stage", IntentUnknown, ""},
		{"rspec 1/2", "verify", IntentBuildTest, ""},
	} {
		got := cfg.classify(Build{Name: tc.name, Stage: tc.stage})
		if got.intent != tc.intent || got.env != tc.env {
			t.Errorf("%q in stage %q: %+v, want %s %q", tc.name, tc.stage, got, tc.intent, tc.env)
		}
	}
}

// The operator's settings win over the conventions.
func TestClassifyBySettings(t *testing.T) {
	a := configured(t, map[string]string{
		SettingJobEnvironments:     "ship-it=production, deploy_prod=preprod",
		SettingStageEnvironments:   "first_stage=qa",
		SettingFallbackEnvironment: "prod-eu",
	})
	for _, tc := range []struct {
		name, stage, env, by string
	}{
		{"ship-it", "test", "production", bySettingJob},
		{"deploy_prod", "deploy", "preprod", bySettingJob},
		{"first_stage_job_name", "first_stage", "qa", bySettingStage},
		{"deploy", "deploy", "prod-eu", byFallback},
	} {
		got := a.cfg.classify(Build{Name: tc.name, Stage: tc.stage})
		if got.intent != IntentDeploy || got.env != tc.env || got.by != tc.by {
			t.Errorf("%q in stage %q: %+v, want %q by %s", tc.name, tc.stage, got, tc.env, tc.by)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"refs/heads/main", "refs/heads/main", true},
		{"refs/heads/main", "refs/heads/main2", false},
		{"refs/tags/*", "refs/tags/v1.2.0", true},
		{"refs/tags/v*", "refs/tags/release-1", false},
		{"refs/heads/release/*", "refs/heads/release/2026/q4", true},
		{"*", "refs/merge-requests/12/head", true},
		{"v*.*", "v1.2", true},
		{"v*.*", "v12", false},
		{"*-rc", "v1-rc", true},
		{"a*b*a", "aba", true},
		{"a*b*a", "ab", false},
	} {
		if got := globMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

// What each fixture is asked as, with the shipped example's settings:
// the action, environment and ref the bundled policy decides on.
func TestFixturesAskedAs(t *testing.T) {
	a := configured(t, settingsForFixtures)
	for _, tc := range []struct {
		fixture, action, env, ref, intent string
	}{
		{"deploy-prod-main", "deploy", "production", "refs/heads/main", IntentDeploy},
		{"quickstart-tests", "pipeline.trigger", "", "refs/heads/main", IntentBuildTest},
		// the merge request's payload lists deploy_prod too: GitLab sends
		// every configured job, rules unevaluated; the ref is not protected
		{"merge-request-deploy-config", "pipeline.trigger", "", "refs/merge-requests/12/head", IntentDeploy},
		{"release-tag", "deploy", "production", "refs/tags/v1.2.0", IntentDeploy},
		// nothing says what these jobs do, on main: fail closed
		{"spec-unknown-stages", "deploy", "production", "refs/heads/main", IntentUnknown},
	} {
		req := translate(t, a, tc.fixture)
		if req.Action != tc.action || req.Resource.Environment != tc.env || req.Resource.Ref != tc.ref || req.Resource.Attributes["intent"] != tc.intent {
			t.Errorf("%s: %s %q %q %v, want %s %q %q %s", tc.fixture, req.Action, req.Resource.Environment, req.Resource.Ref,
				req.Resource.Attributes["intent"], tc.action, tc.env, tc.ref, tc.intent)
		}
	}
}

// Refs: bare names are branches unless tag_names says they are tags;
// merge request refs are kept.
func TestRef(t *testing.T) {
	for _, tc := range []struct {
		tags      string
		sent, ref string
	}{
		{"", "main", "refs/heads/main"},
		{"", "v1.2.0", "refs/heads/v1.2.0"}, // tags unknown: read as a branch, refused by protected_refs
		{"v*", "v1.2.0", "refs/tags/v1.2.0"},
		{"v*", "feature/v2", "refs/heads/feature/v2"},
		{"v*", "refs/merge-requests/12/head", "refs/merge-requests/12/head"},
		{"", " main ", "refs/heads/main"},
	} {
		a := configured(t, map[string]string{SettingTagNames: tc.tags})
		if got := a.cfg.ref(tc.sent); got != tc.ref {
			t.Errorf("tag_names %q: ref %q = %q, want %q", tc.tags, tc.sent, got, tc.ref)
		}
	}
}

// Unknown jobs on an unprotected ref are a trigger; protected_refs "*"
// gates every ref; a deploy to staging beside unknown jobs is asked as the
// fallback environment's.
func TestProtectedRefsAndFallback(t *testing.T) {
	body := func(ref string, builds ...Build) []byte {
		b, _ := json.Marshal(map[string]any{
			"project":  map[string]any{"id": 1, "path": "acme/shop"},
			"user":     map[string]any{"id": 2, "username": "dana"},
			"pipeline": map[string]any{"sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "ref": ref, "type": "push"},
			"builds":   builds,
		})
		return b
	}
	unknown := Build{Name: "first_stage_job_name", Stage: "first_stage"}
	staging := Build{Name: "deploy_staging", Stage: "deploy"}
	for _, tc := range []struct {
		settings map[string]string
		payload  []byte
		action   string
		env      string
	}{
		{nil, body("feature/x", unknown), "pipeline.trigger", ""},
		{nil, body("feature/x", staging), "pipeline.trigger", ""},
		{map[string]string{SettingProtectedRefs: "*"}, body("feature/x", staging), "deploy", "staging"},
		{nil, body("main", staging), "deploy", "staging"},
		{nil, body("main", staging, unknown), "deploy", "production"},
		{nil, body("master", unknown), "deploy", "production"},
		{nil, body("main"), "pipeline.trigger", ""},
		{map[string]string{SettingFallbackEnvironment: "prod-eu"}, body("main", unknown), "deploy", "prod-eu"},
	} {
		a := configured(t, tc.settings)
		req, err := a.Translate(t.Context(), adapter.Native{Body: tc.payload})
		if err != nil {
			t.Fatal(err)
		}
		if req.Action != tc.action || req.Resource.Environment != tc.env {
			t.Errorf("%v %s: %s %q, want %s %q", tc.settings, tc.payload, req.Action, req.Resource.Environment, tc.action, tc.env)
		}
	}
}

// Scripts reach the record as digests and line counts, never as text.
func TestScriptsAsDigests(t *testing.T) {
	req := translate(t, configured(t, settingsForFixtures), "deploy-prod-main")
	jobs := req.Resource.Attributes["jobs"].([]any)
	last := jobs[len(jobs)-1].(map[string]any)
	want := sha256.Sum256([]byte(`echo "Deploy to production server"`))
	if last["name"] != "deploy_prod" || last["script_sha256"] != hex.EncodeToString(want[:]) || last["script_lines"] != 1 {
		t.Errorf("deploy_prod job: %v", last)
	}
	// Lines are joined with "\n" before hashing, as GitLab joined
	// before_script, script and after_script into one list.
	two := sha256.Sum256([]byte("echo 'first hello'\necho 'second hello'"))
	spec := translate(t, New(), "spec-unknown-stages").Resource.Attributes["jobs"].([]any)[1].(map[string]any)
	if spec["script_sha256"] != hex.EncodeToString(two[:]) || spec["script_lines"] != 2 {
		t.Errorf("second_stage_job_name: %v", spec)
	}
	b, _ := json.Marshal(req)
	if bytes.Contains(b, []byte("Deploy to production server")) {
		t.Errorf("a script line is in the request:\n%s", b)
	}
}

// MFA only from the operator's setting, with its source; never from the
// payload, which has no such field.
func TestMFAFromInstanceSetting(t *testing.T) {
	with := translate(t, configured(t, map[string]string{SettingInstanceRequires2FA: "true"}), "deploy-prod-main")
	if !with.Subject.MFA || with.Subject.Claims["mfa_source"] != MFASourceInstanceSetting {
		t.Errorf("with the setting: %+v", with.Subject)
	}
	without := translate(t, New(), "deploy-prod-main")
	if without.Subject.MFA || without.Subject.Claims["mfa_source"] != nil {
		t.Errorf("without the setting: %+v", without.Subject)
	}
	if err := New().Configure(t.Context(), map[string]string{SettingInstanceRequires2FA: "yes please"}); err == nil {
		t.Error("a setting that is not a boolean was accepted")
	}
}

// Deploy jobs are listed for the policy whatever the ref.
func TestDeployJobsRecorded(t *testing.T) {
	req := translate(t, configured(t, settingsForFixtures), "merge-request-deploy-config")
	if got := req.Resource.Attributes["deploy_jobs"]; !slices.Equal(got.([]any), []any{"deploy_prod"}) {
		t.Errorf("deploy_jobs = %v", got)
	}
	if req.Resource.Attributes["protected_ref"] != false {
		t.Errorf("protected_ref = %v", req.Resource.Attributes["protected_ref"])
	}
}

// globMatch agrees with the regular expression its globs stand for; the
// refs it reads come from payloads.
func FuzzGlobMatch(f *testing.F) {
	f.Add("refs/tags/v*", "refs/tags/v1.2.0")
	f.Add("a*b*a", "ab")
	f.Add("*", "")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re, err := regexp.Compile(`^(?s:` + strings.Join(parts, ".*") + `)$`)
		if err != nil || !utf8.ValidString(pattern) || !utf8.ValidString(s) {
			return
		}
		if got, want := globMatch(pattern, s), re.MatchString(s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, want %v", pattern, s, got, want)
		}
	})
}
