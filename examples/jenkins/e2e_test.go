// End to end, as a Jenkins user runs it: the shared library's script
// (resources/gatelog/decide.sh, run as is with sh and curl) sends what
// vars/gatelogGate.groovy builds from a build's variables, with a token
// minted claim for claim as the oidc-provider plugin mints it, to the built
// gatelog binary started with this directory's identity.json, adapters.json
// and policy-data.yaml and the bundled policies; the answer is read as the
// step reads it, and every decision is found in the log and verified
// offline with the daemon's public keys.
package jenkins_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatelog/gatelog/engine/identity/identitytest"
	"github.com/gatelog/gatelog/internal/e2e"
)

// shippedIssuer is the issuer in identity.json: a Jenkins at
// https://jenkins.example.com/ with the credential at the root.
const shippedIssuer = "https://jenkins.example.com/oidc"

// jenkins is a running daemon and the Jenkins whose tokens it trusts.
type jenkins struct {
	d    *e2e.Daemon
	ctrl *identitytest.Jenkins
}

// start runs `gatelog serve` as the README says, with one documented
// override: identity.json is copied with its issuer replaced by the test
// Jenkins' loopback URL (tokens must come from an issuer the test controls).
// edit, if given, changes the issuer's settings further.
func start(t *testing.T, edit func(issuer map[string]any)) *jenkins {
	t.Helper()
	ctrl, err := identitytest.NewJenkins("gatelog-oidc-token")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctrl.Close)
	// The build claim templates the README tells administrators to set:
	// the plugin's defaults plus job_name.
	ctrl.BuildClaimTemplates = append(slices.Clone(identitytest.DefaultBuildClaimTemplates),
		identitytest.ClaimTemplate{Name: "job_name", Format: "${JOB_NAME}", Type: "string"})

	raw, err := os.ReadFile("identity.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		OIDC []map[string]any `json:"oidc"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil || len(cfg.OIDC) != 1 || cfg.OIDC[0]["issuer"] != shippedIssuer {
		t.Fatalf("identity.json: want one issuer %s: %v %v", shippedIssuer, err, cfg)
	}
	cfg.OIDC[0]["issuer"] = ctrl.Issuer
	if edit != nil {
		edit(cfg.OIDC[0])
	}
	idFile := filepath.Join(t.TempDir(), "identity.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(idFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d := e2e.Start(t, e2e.Build(t), nil,
		"--identity-config", idFile,
		"--adapters-config", e2e.Path(t, "examples/jenkins/adapters.json"),
		"--policy-data", e2e.Path(t, "examples/jenkins/policy-data.yaml"))
	return &jenkins{d: d, ctrl: ctrl}
}

// token is what withCredentials binds for the build with variables env.
func (j *jenkins) token(t *testing.T, env map[string]string) string {
	t.Helper()
	tok, err := j.ctrl.BuildToken(time.Now(), "gatelog", env)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Builds, by their variables as Jenkins sets them (see the fixtures'
// README in plugins/jenkins/testdata for the names).
//
// Each case is another build: tokens of one build minted in the same second
// are the same token (the plugin's claims do not change and RS256 is
// deterministic), which is accepted once.
func paymentsDeploy(build, branch string) map[string]string {
	return map[string]string{
		"JOB_NAME": "payments/deploy", "JOB_URL": "https://jenkins.example.com/job/payments/job/deploy/",
		"BUILD_NUMBER": build, "BUILD_URL": "https://jenkins.example.com/job/payments/job/deploy/" + build + "/",
		"BUILD_TAG": "jenkins-payments-deploy-" + build, "NODE_NAME": "linux-agent-3", "JENKINS_URL": "https://jenkins.example.com/",
		"GIT_URL": "https://git.example.com/payments/api.git", "GIT_BRANCH": branch,
		"GIT_COMMIT": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d",
	}
}

func storefrontDeploy(build string) map[string]string {
	return map[string]string{
		"JOB_NAME": "storefront/deploy", "JOB_URL": "https://jenkins.example.com/job/storefront/job/deploy/",
		"BUILD_NUMBER": build, "BUILD_URL": "https://jenkins.example.com/job/storefront/job/deploy/" + build + "/",
		"BUILD_TAG": "jenkins-storefront-deploy-" + build, "NODE_NAME": "linux-agent-1", "JENKINS_URL": "https://jenkins.example.com/",
		"GIT_URL": "https://git.example.com/storefront/web.git", "GIT_BRANCH": "origin/main",
		"GIT_COMMIT": "9fceb02d0ae598e95dc970b74767f19372d61af8",
	}
}

// stepVariables are the variables vars/gatelogGate.groovy copies into its
// payload, in its order.
var stepVariables = []string{"JOB_NAME", "JOB_URL", "BUILD_NUMBER", "BUILD_URL", "BUILD_TAG", "NODE_NAME", "JENKINS_URL",
	"GIT_URL", "GIT_BRANCH", "GIT_COMMIT", "BRANCH_NAME", "CHANGE_ID", "CHANGE_URL", "CHANGE_TARGET", "CHANGE_AUTHOR", "CHANGE_AUTHOR_EMAIL"}

// stepPayload is the JSON gatelogGate(action:, environment:, attributes:)
// writes for a build with variables env started by user alice: the same
// map, with empty values dropped as its findAll does.
func stepPayload(env map[string]string, action, environment string, attributes map[string]any) map[string]any {
	p := map[string]any{
		"action": action,
		"causes": []any{map[string]any{"_class": "hudson.model.Cause$UserIdCause", "shortDescription": "Started by user Alice Example", "userId": "alice", "userName": "Alice Example"}},
	}
	if environment != "" {
		p["environment"] = environment
	}
	if len(attributes) > 0 {
		p["attributes"] = attributes
	}
	for _, k := range stepVariables {
		if v := env[k]; v != "" {
			p[k] = v
		}
	}
	return p
}

// TestStepMirrorsTheGroovy: the payload above is the one the Groovy step
// builds (no Jenkins runs in the tests, so its source is checked instead),
// and the step runs the tested script and reads its exit codes.
func TestStepMirrorsTheGroovy(t *testing.T) {
	groovy, err := os.ReadFile("vars/gatelogGate.groovy")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"action             : config.action",
		"environment        : config.environment",
		"causes             : causes",
		"attributes         : config.attributes",
		"[_class: c._class, shortDescription: c.shortDescription, userId: c.userId, userName: c.userName,",
		"libraryResource('gatelog/decide.sh')",
		"sh .gatelog/decide.sh .gatelog/request.json .gatelog/answer.json",
		"variable: 'GATELOG_TOKEN'",
		"GATELOG_URL=",
		"status == 3",
		"status == 2",
		"status != 0",
	}
	for _, v := range stepVariables {
		want = append(want, v+strings.Repeat(" ", 19-len(v))+": env."+v+",")
	}
	for _, w := range want {
		if !strings.Contains(string(groovy), w) {
			t.Errorf("vars/gatelogGate.groovy no longer contains %q", w)
		}
	}
	jf, err := os.ReadFile("Jenkinsfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(jf), "gatelogGate(action: 'deploy', environment: 'production'") {
		t.Error("Jenkinsfile does not call gatelogGate(action: 'deploy', environment: 'production')")
	}
}

// answer is the Jenkins adapter's reply, as decide.sh and the step read it.
type answer struct {
	Allow        bool     `json:"allow"`
	Reasons      []string `json:"reasons"`
	Error        string   `json:"error"`
	DecisionID   string   `json:"decision_id"`
	LogIndex     *int64   `json:"log_index"`
	LogEntryUUID string   `json:"log_entry_uuid"`
}

// decide runs resources/gatelog/decide.sh as the step does and returns its
// exit code, what it printed to the build log and the answer file.
func decide(t *testing.T, url, token string, payload map[string]any, env ...string) (int, string, answer) {
	t.Helper()
	dir := t.TempDir()
	reqFile, ansFile := filepath.Join(dir, "request.json"), filepath.Join(dir, "answer.json")
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(reqFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "resources/gatelog/decide.sh", reqFile, ansFile)
	cmd.Env = append(append(os.Environ(), "GATELOG_URL="+url, "GATELOG_TOKEN="+token, "GATELOG_TIMEOUT=30"), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var ans answer
	if raw, err := os.ReadFile(ansFile); err == nil {
		if err := json.Unmarshal(raw, &ans); err != nil {
			t.Fatalf("answer is not the adapter's JSON: %v\n%s", err, raw)
		}
	}
	return code, string(out), ans
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestJenkinsEndToEnd(t *testing.T) {
	for _, tool := range []string{"sh", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: the shared library step runs it on the Jenkins agent", tool)
		}
	}
	j := start(t, nil)
	d := j.d

	t.Run("release manager job deploys main to production", func(t *testing.T) {
		env := paymentsDeploy("142", "origin/main")
		tok := j.token(t, env)
		code, out, ans := decide(t, d.URL, tok, stepPayload(env, "deploy", "production", map[string]any{"service": "payments-api"}))
		if code != 0 || !ans.Allow || ans.DecisionID == "" || ans.LogIndex == nil || len(ans.LogEntryUUID) != 80 {
			t.Fatalf("exit %d, answer %+v\n%s\n%s", code, ans, out, d.Log())
		}
		if !strings.Contains(out, `allowed by role \"release-manager\" (subject \"https://jenkins.example.com/job/payments/job/deploy/\")`) {
			t.Errorf("the build log does not show why:\n%s", out)
		}
		v := d.Verify(t, ans.DecisionID)
		req, dec := v.Record.Request, v.Record.Decision
		if !dec.Allow || v.Receipt.LogIndex != *ans.LogIndex || v.Receipt.UUID != ans.LogEntryUUID {
			t.Errorf("logged decision %+v, receipt %d %s", dec, v.Receipt.LogIndex, v.Receipt.UUID)
		}
		s := req.Subject
		if s.ID != "https://jenkins.example.com/job/payments/job/deploy/" || !s.Verified || s.Issuer != j.ctrl.Issuer || !s.MFA ||
			s.Claims["mfa_source"] != "setting:jenkins.security_realm_requires_2fa" || s.Claims["build_number"] != float64(142) || s.Claims["job_name"] != "payments/deploy" {
			t.Errorf("subject = %+v", s)
		}
		r := req.Resource
		if r.System != "jenkins" || r.Name != "payments/deploy" || r.Ref != "refs/heads/main" || r.Environment != "production" ||
			r.Repository != "https://git.example.com/payments/api.git" || r.Attributes["build_number"] != "142" || r.Attributes["service"] != "payments-api" {
			t.Errorf("resource = %+v", r)
		}
		if req.Context.Unverified["triggered_by"] != "alice" || req.Source.Adapter != "jenkins" {
			t.Errorf("context %+v source %+v", req.Context, req.Source)
		}
		// Secrets never enter the log: neither the token nor its signature.
		rec, _ := json.Marshal(v.Record)
		if sig := tok[strings.LastIndexByte(tok, '.')+1:]; strings.Contains(string(rec), sig) || strings.Contains(string(rec), tok) {
			t.Error("the token is in the signed record")
		}

		// The same token again, as a retried request would send it.
		code, out, _ = decide(t, d.URL, tok, stepPayload(env, "deploy", "production", nil))
		if code != 3 || !strings.Contains(out, "already used") {
			t.Errorf("replayed token: exit %d, want 3\n%s", code, out)
		}
	})

	t.Run("another job's production deploy is denied", func(t *testing.T) {
		env := storefrontDeploy("31")
		code, out, ans := decide(t, d.URL, j.token(t, env), stepPayload(env, "deploy", "production", nil))
		const reason = `no role of subject \"https://jenkins.example.com/job/storefront/job/deploy/\" permits action \"deploy\"`
		if code != 2 || ans.Allow || ans.DecisionID == "" || !strings.Contains(out, reason) {
			t.Fatalf("exit %d, answer %+v, want 2 and the reason in the log:\n%s", code, ans, out)
		}
		v := d.Verify(t, ans.DecisionID)
		if v.Record.Decision.Allow || !slices.ContainsFunc(v.Record.Decision.Reasons, func(r string) bool { return strings.Contains(r, strings.ReplaceAll(reason, `\"`, `"`)) }) {
			t.Errorf("logged decision %+v", v.Record.Decision)
		}
		if r := v.Record.Request.Resource; r.Name != "storefront/deploy" || r.Ref != "refs/heads/main" {
			t.Errorf("resource = %+v", r)
		}
	})

	t.Run("release manager job from another branch is denied", func(t *testing.T) {
		env := paymentsDeploy("143", "origin/hotfix-42")
		code, out, ans := decide(t, d.URL, j.token(t, env), stepPayload(env, "deploy", "production", nil))
		if code != 2 || !strings.Contains(out, `not from ref \"refs/heads/hotfix-42\"`) {
			t.Fatalf("exit %d, answer %+v\n%s", code, ans, out)
		}
		if v := d.Verify(t, ans.DecisionID); v.Record.Decision.Allow || v.Record.Request.Resource.Ref != "refs/heads/hotfix-42" {
			t.Errorf("logged %+v", v.Record)
		}
	})

	t.Run("a payload naming another job than the token is refused", func(t *testing.T) {
		tok := j.token(t, storefrontDeploy("32"))
		code, out, ans := decide(t, d.URL, tok, stepPayload(paymentsDeploy("142", "origin/main"), "deploy", "production", nil))
		if code != 1 || ans.Allow || ans.DecisionID != "" || !strings.Contains(out, `field \"resource.name\" is \"payments/deploy\" but the caller's verified token says \"storefront/deploy\"`) {
			t.Fatalf("exit %d, answer %+v\n%s", code, ans, out)
		}
	})

	t.Run("no daemon listening blocks the build", func(t *testing.T) {
		env := storefrontDeploy("33")
		code, out, ans := decide(t, "http://"+closedAddr(t), j.token(t, env), stepPayload(env, "deploy", "staging", nil), "GATELOG_RETRIES=0")
		if code != 1 || ans.Allow || !strings.Contains(out, "no answer") {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
	})

	t.Run("the build REST API object alone triggers a pipeline", func(t *testing.T) {
		// Build #107 of a freestyle job, as build.opnfv.org's api/json
		// returned it (plugins/jenkins/testdata/README.md).
		body, err := os.ReadFile(e2e.Path(t, "plugins/jenkins/testdata/rest-api-freestyle-upstream.payload.json"))
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{
			"JOB_NAME": "apex-deploy-virtual-os-onos-nofeature-ha-master", "BUILD_NUMBER": "107",
			"JOB_URL": "https://build.opnfv.org/ci/job/apex-deploy-virtual-os-onos-nofeature-ha-master/",
		}
		status, hdr, raw := d.Post(t, "/v1/adapters/jenkins", body, http.Header{"Authorization": {"Bearer " + j.token(t, env)}})
		var ans answer
		if err := json.Unmarshal(raw, &ans); err != nil || status != http.StatusOK || !ans.Allow || hdr.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s: %s", status, hdr.Get("Content-Type"), raw)
		}
		v := d.Verify(t, ans.DecisionID)
		req := v.Record.Request
		if req.Action != "pipeline.trigger" || req.Subject.ID != env["JOB_URL"] || !req.Subject.Verified ||
			req.Resource.Name != env["JOB_NAME"] || req.Resource.Ref != "refs/heads/master" || req.Resource.Attributes["build_number"] != "107" {
			t.Errorf("logged request %+v", req)
		}
		if !v.Record.Decision.Allow || !slices.Contains(v.Record.Decision.Reasons, `allowed by role "pipeline-runner" (any authenticated subject)`) {
			t.Errorf("logged decision %+v", v.Record.Decision)
		}
	})
}

// Without the operator's MFA statement a job's token carries no second
// factor, and the bundled policy denies the release manager job's
// production deploy with its MFA reason.
func TestWithoutMFASettingProductionIsDenied(t *testing.T) {
	j := start(t, func(issuer map[string]any) { delete(issuer, "mfa_setting") })
	env := paymentsDeploy("142", "origin/main")
	code, out, ans := decide(t, j.d.URL, j.token(t, env), stepPayload(env, "deploy", "production", nil))
	const reason = `privileged action \"deploy\" on system \"jenkins\"`
	if code != 2 || !strings.Contains(out, reason) || !strings.Contains(out, "requires multi-factor authentication") {
		t.Fatalf("exit %d, answer %+v\n%s", code, ans, out)
	}
	v := j.d.Verify(t, ans.DecisionID)
	if s := v.Record.Request.Subject; s.MFA || s.Claims["mfa_source"] != nil || v.Record.Decision.Allow {
		t.Errorf("logged subject %+v, decision %+v", s, v.Record.Decision)
	}
}
