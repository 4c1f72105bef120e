package tekton

// End to end, as a Tekton Triggers user runs it: real GitHub and GitLab
// webhooks (testdata/webhooks) are forwarded as an EventListener forwards
// them, with the interceptor params of the triggers in the shipped
// examples/tekton/event-listener.yaml, to the built gatelog daemon serving
// the tekton adapter with the shipped examples/tekton/webhooks.json and the
// bundled policy. The call carries no credential, as Triggers' interceptor
// client sends none. The answer is decoded with Triggers' own
// InterceptorResponse type, and every decision is found in the log and
// verified offline with the public keys only.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"

	"github.com/gatelog/gatelog/internal/e2e"
	"github.com/gatelog/gatelog/plugins/github"
)

// listenerTrigger is a trigger of the shipped EventListeners, with the
// params of its gatelog interceptor as Triggers passes them
// (interceptors.GetInterceptorParams: name → value).
type listenerTrigger struct {
	id     string // namespaces/NS/triggers/NAME
	params map[string]any
}

// shippedTriggers reads examples/tekton/event-listener.yaml.
func shippedTriggers(t *testing.T) map[string]listenerTrigger {
	t.Helper()
	f, err := os.Open(e2e.Path(t, "examples/tekton/event-listener.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type param struct {
		Name  string `yaml:"name"`
		Value any    `yaml:"value"`
	}
	out := map[string]listenerTrigger{}
	dec := yaml.NewDecoder(f)
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
			Spec struct {
				Triggers []struct {
					Name         string `yaml:"name"`
					Interceptors []struct {
						Ref    struct{ Name, Kind string } `yaml:"ref"`
						Params []param                     `yaml:"params"`
					} `yaml:"interceptors"`
				} `yaml:"triggers"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc.Kind != "EventListener" {
			continue
		}
		for _, tr := range doc.Spec.Triggers {
			for _, ic := range tr.Interceptors {
				if ic.Ref.Name != "gatelog" {
					continue
				}
				params := map[string]any{}
				for _, p := range ic.Params {
					params[p.Name] = p.Value
				}
				out[doc.Metadata.Name+"/"+tr.Name] = listenerTrigger{
					id:     "namespaces/" + doc.Metadata.Namespace + "/triggers/" + tr.Name,
					params: params,
				}
			}
		}
	}
	return out
}

// startShippedDaemon runs `gatelog serve --adapters-config adapters.json
// --webhooks-config webhooks.json --policy-data policy-data.yaml` with the
// shipped files of examples/tekton, the
// two secret files webhooks.json names beside it (0600, as the daemon
// demands).
func startShippedDaemon(t *testing.T) *e2e.Daemon {
	t.Helper()
	dir := t.TempDir()
	cfg, err := os.ReadFile(e2e.Path(t, "examples/tekton/webhooks.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"webhooks.json":         string(cfg),
		"github-webhook-secret": testWebhookSecret + "\n",
		"gitlab-webhook-secret": testGitLabToken + "\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e2e.Start(t, e2e.Build(t), nil, "--adapters-config", e2e.Path(t, "examples/tekton/adapters.json"), "--webhooks-config", filepath.Join(dir, "webhooks.json"),
		"--policy-data", e2e.Path(t, "examples/tekton/policy-data.yaml"))
}

// callInterceptor posts an InterceptorRequest as Triggers' interceptor
// client does (no credential) and decodes the answer strictly with
// Triggers' InterceptorResponse.
func callInterceptor(t *testing.T, d *e2e.Daemon, ir []byte) InterceptorResponse {
	t.Helper()
	code, hdr, raw := d.Post(t, "/v1/adapters/tekton", ir, http.Header{"Content-Type": {"application/json"}})
	if code != http.StatusOK {
		// Triggers reads an interceptor's body only on a 200.
		t.Fatalf("status %d (%s): %s", code, hdr.Get("Content-Type"), raw)
	}
	var resp InterceptorResponse
	if err := strictDecode(raw, &resp); err != nil {
		t.Fatalf("answer is no InterceptorResponse: %v\n%s", err, raw)
	}
	return resp
}

func webhookBody(t *testing.T, provider, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhooks", provider, file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type gatelogExtension struct {
	DecisionID   string   `json:"decision_id"`
	Allow        bool     `json:"allow"`
	Reasons      []string `json:"reasons"`
	LogIndex     int64    `json:"log_index"`
	LogEntryUUID string   `json:"log_entry_uuid"`
}

// extension reads extensions.gatelog the way the shipped binding does
// ($(extensions.gatelog.decision_id)).
func extension(t *testing.T, resp InterceptorResponse) gatelogExtension {
	t.Helper()
	raw, err := json.Marshal(resp.Extensions["gatelog"])
	if err != nil {
		t.Fatal(err)
	}
	var ext gatelogExtension
	if err := json.Unmarshal(raw, &ext); err != nil || ext.DecisionID == "" {
		t.Fatalf("extensions.gatelog = %s: %v", raw, err)
	}
	return ext
}

func TestTriggersEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gatelog binary")
	}
	triggers := shippedTriggers(t)
	release, deploy, mr := triggers["github-listener/release"], triggers["github-listener/deploy-production"], triggers["gitlab-listener/merge-request"]
	glDeploy := triggers["gitlab-listener/deploy-production"]
	if release.id == "" || deploy.id == "" || mr.id == "" || glDeploy.id == "" {
		t.Fatalf("event-listener.yaml: triggers with the gatelog interceptor: %v", triggers)
	}
	d := startShippedDaemon(t)

	push := webhookBody(t, "github", "push.with-new-branch.json")
	pushHeader := webhookHeader(t, "github", "push", push)
	mrBody := webhookBody(t, "gitlab", "merge_request.json")
	mrHeader := webhookHeader(t, "gitlab", "Merge Request Hook", mrBody)

	// Happy path, GitHub: Codertocat's push, signed with the webhook
	// secret, may trigger the staging release (any authenticated subject
	// may trigger pipelines).
	resp := callInterceptor(t, d, forwardWebhook(t, pushHeader, push, release.id, "e1000000-0000-4000-8000-000000000001", release.params))
	if !resp.Continue || resp.Status.Code != codes.OK || resp.Status.Message != "" {
		t.Fatalf("GitHub push to the release trigger: %+v", resp)
	}
	ext := extension(t, resp)
	releaseExt := ext
	v := d.Verify(t, ext.DecisionID)
	req := v.Record.Request
	if !ext.Allow || ext.LogIndex != v.Receipt.LogIndex || ext.LogEntryUUID != v.Receipt.UUID ||
		!v.Record.Decision.Allow || req.Subject.ID != "Codertocat" || !req.Subject.Verified ||
		req.Subject.AssertedBy != "webhook:tekton-triggers:github" || v.Record.Caller.ID != "webhook:tekton-triggers:github" ||
		req.Action != ActionPipelineTrigger || req.Resource.Environment != "staging" || req.Resource.Ref != "refs/heads/master" ||
		req.Resource.Repository != "Codertocat/Hello-World" || req.Resource.Namespace != "ci" || req.Resource.Name != "release" {
		t.Errorf("GitHub push: extension %+v, record %+v", ext, v.Record)
	}
	firstIndex := v.Receipt.LogIndex

	// Refused: no valid webhook and no credential. Each answer is a
	// continue: false with UNAUTHENTICATED and the reason, and nothing is
	// logged (the next decision takes the next log index).
	wrongSecret := pushHeader.Clone()
	wrongSecret.Set("X-Hub-Signature-256", github.Sign([]byte("not the secret"), push))
	unsigned := pushHeader.Clone()
	unsigned.Del("X-Hub-Signature-256")
	tampered := bytes.ReplaceAll(push, []byte(`"login": "Codertocat"`), []byte(`"login": "release-manager"`))
	wrongToken := mrHeader.Clone()
	wrongToken.Set("X-Gitlab-Token", "guessed")
	noEvent := pushHeader.Clone()
	noEvent.Del("X-GitHub-Event")
	for _, tc := range []struct {
		name   string
		ir     []byte
		reason string
	}{
		{"signed with another secret", forwardWebhook(t, wrongSecret, push, release.id, "e1000000-0000-4000-8000-000000000002", release.params), "X-Hub-Signature-256 does not match"},
		{"unsigned", forwardWebhook(t, unsigned, push, release.id, "e1000000-0000-4000-8000-000000000003", release.params), "missing X-Hub-Signature-256"},
		{"body changed after signing", forwardWebhook(t, pushHeader, tampered, release.id, "e1000000-0000-4000-8000-000000000004", release.params), "X-Hub-Signature-256 does not match"},
		{"wrong GitLab token", forwardWebhook(t, wrongToken, mrBody, mr.id, "e1000000-0000-4000-8000-000000000005", mr.params), "X-Gitlab-Token does not match"},
		{"no event header", forwardWebhook(t, noEvent, push, release.id, "e1000000-0000-4000-8000-000000000006", release.params), "neither X-GitHub-Event nor X-Gitlab-Event"},
		{"the same webhook forwarded again", forwardWebhook(t, pushHeader, push, release.id, "e1000000-0000-4000-8000-00000000000b", release.params), "already forwarded for this trigger"},
		{"trigger in a namespace no source serves", forwardWebhook(t, pushHeader, push, "namespaces/payments/triggers/release", "e1000000-0000-4000-8000-000000000007", release.params), `namespace "payments"`},
	} {
		if !bytes.Contains(tc.ir, []byte(`"trigger_id"`)) {
			t.Fatalf("%s: %s", tc.name, tc.ir)
		}
		resp := callInterceptor(t, d, tc.ir)
		if resp.Continue || resp.Status.Code != codes.Unauthenticated || !strings.Contains(resp.Status.Message, tc.reason) || resp.Extensions != nil {
			t.Errorf("%s: %+v, want continue false, UNAUTHENTICATED, %q", tc.name, resp, tc.reason)
		}
	}

	// Happy path, GitLab: a merge request hook with the secret token; the
	// actor is user.username.
	resp = callInterceptor(t, d, forwardWebhook(t, mrHeader, mrBody, mr.id, "e1000000-0000-4000-8000-000000000008", mr.params))
	if !resp.Continue || resp.Status.Code != codes.OK {
		t.Fatalf("GitLab merge request: %+v", resp)
	}
	ext = extension(t, resp)
	v = d.Verify(t, ext.DecisionID)
	req = v.Record.Request
	if v.Receipt.LogIndex != firstIndex+1 {
		t.Errorf("log index %d after the refused calls, want %d: a refused call was logged", v.Receipt.LogIndex, firstIndex+1)
	}
	if !v.Record.Decision.Allow || req.Subject.ID != "user1" || !req.Subject.Verified || req.Subject.AssertedBy != "webhook:tekton-triggers:gitlab" ||
		req.Resource.Ref != "refs/heads/ms-viewport" || req.Resource.Attributes["target_ref"] != "refs/heads/master" ||
		req.Resource.Repository != "gitlabhq/gitlab-test" || req.Resource.Attributes["event_type"] != "Merge Request Hook" {
		t.Errorf("GitLab merge request: record %+v", v.Record)
	}
	if rec, _ := json.Marshal(v.Record); bytes.Contains(rec, []byte(testGitLabToken)) {
		t.Errorf("the GitLab secret token is in the signed record: %s", rec)
	}

	// Production, allowed: the same authentic push reaches the production
	// deploy trigger. Codertocat is a release manager (policy-data.yaml),
	// master is a protected ref there, and the GitHub source's mfa_setting
	// (webhooks.json) stands for the sender's second factor.
	resp = callInterceptor(t, d, forwardWebhook(t, pushHeader, push, deploy.id, "e1000000-0000-4000-8000-000000000009", deploy.params))
	if !resp.Continue || resp.Status.Code != codes.OK {
		t.Fatalf("production deploy by Codertocat: %+v", resp)
	}
	ext = extension(t, resp)
	productionExt := ext
	v = d.Verify(t, ext.DecisionID)
	req = v.Record.Request
	if !v.Record.Decision.Allow || req.Action != "deploy" || req.Resource.Environment != "production" ||
		req.Subject.ID != "Codertocat" || !req.Subject.MFA || req.Subject.Claims["mfa_source"] != "setting:github.org_2fa_required:Codertocat" ||
		len(v.Record.Decision.Reasons) != 1 || v.Record.Decision.Reasons[0] != `allowed by role "release-manager" (subject "Codertocat")` {
		t.Errorf("production deploy by Codertocat: record %+v", v.Record)
	}

	// Deny path: jsmith's authentic GitLab push reaches the GitLab
	// production deploy trigger. jsmith is no release manager, and the
	// GitLab source has no mfa_setting, so the EventListener is told not to
	// continue, with the reasons, and the denial is logged.
	glPush := webhookBody(t, "gitlab", "push.json")
	resp = callInterceptor(t, d, forwardWebhook(t, webhookHeader(t, "gitlab", "Push Hook", glPush), glPush, glDeploy.id, "e1000000-0000-4000-8000-00000000000c", glDeploy.params))
	ext = extension(t, resp)
	if resp.Continue || resp.Status.Code != codes.PermissionDenied || ext.Allow {
		t.Fatalf("production deploy by jsmith: %+v", resp)
	}
	v = d.Verify(t, ext.DecisionID)
	req = v.Record.Request
	if v.Record.Decision.Allow || req.Action != "deploy" || req.Resource.Environment != "production" || req.Subject.ID != "jsmith" ||
		!req.Subject.Verified || req.Subject.MFA || req.Subject.AssertedBy != "webhook:tekton-triggers:gitlab" || req.Resource.Ref != "refs/heads/master" {
		t.Errorf("production deploy by jsmith: record %+v", v.Record)
	}
	for _, reason := range []string{
		`no role of subject "jsmith" permits action "deploy"`,
		"requires multi-factor authentication",
		"gatelog.dev/decision: " + ext.DecisionID,
	} {
		if !strings.Contains(resp.Status.Message, reason) {
			t.Errorf("status.message %q does not say %q", resp.Status.Message, reason)
		}
	}
	for _, reason := range v.Record.Decision.Reasons {
		if !strings.Contains(resp.Status.Message, reason) {
			t.Errorf("status.message %q does not carry the logged reason %q", resp.Status.Message, reason)
		}
	}

	// A caller with a gatelog credential is authenticated as before: the
	// bootstrap key (which may vouch) gets a decision without a webhook
	// signature.
	code, _, raw := d.Post(t, "/v1/adapters/tekton", forwardWebhook(t, unsigned, push, release.id, "e1000000-0000-4000-8000-00000000000a", release.params),
		http.Header{"Authorization": {"Bearer " + d.APIKey}})
	var withKey InterceptorResponse
	if err := strictDecode(raw, &withKey); err != nil || code != http.StatusOK || !withKey.Continue {
		t.Errorf("with a gatelog credential: %d %s", code, raw)
	}

	// Both gates installed: the runs the EventListener then creates pass the
	// admission webhook as its service account. The staging run is allowed
	// (policy-data.yaml gives that service account deploys to staging in
	// namespace ci) and its admission record carries the interceptor's
	// decision id from the run's annotation; the production run is refused
	// there: a service account has no second factor, whatever the
	// interceptor decided for the sender.
	apiServer := newAPIServerKey(t, d)
	staging := triggeredRun(t, "github-listener", "release", "e1000000-0000-4000-8000-000000000001", push,
		map[string]any{"gatelog": map[string]any{"decision_id": releaseExt.DecisionID}})
	adm := admitRun(t, d, apiServer, "5d2c1b0a-0000-4000-8000-000000000001", staging)
	if !adm.Allowed {
		t.Fatalf("staging run created by the EventListener: %+v", adm.Result)
	}
	// The answer's warning names the admission decision:
	// "gatelog.dev/decision: <id> log-index <n>".
	if len(adm.Warnings) != 1 || len(strings.Fields(adm.Warnings[0])) < 2 {
		t.Fatalf("admission warnings %q", adm.Warnings)
	}
	v = d.Verify(t, strings.Fields(adm.Warnings[0])[1])
	req = v.Record.Request
	if req.Subject.ID != listenerServiceAccount.Username || req.Action != "deploy" || req.Resource.Environment != "staging" ||
		!strings.Contains(fmt.Sprint(req.Context.Unverified["annotations"]), releaseExt.DecisionID) {
		t.Errorf("staging run admission record: %+v", v.Record)
	}
	production := triggeredRun(t, "github-listener", "deploy-production", "e1000000-0000-4000-8000-000000000009", push,
		map[string]any{"gatelog": map[string]any{"decision_id": productionExt.DecisionID}})
	adm = admitRun(t, d, apiServer, "5d2c1b0a-0000-4000-8000-000000000002", production)
	if adm.Allowed || adm.Result == nil || !strings.Contains(adm.Result.Message, "requires multi-factor authentication") {
		t.Errorf("production run created by the EventListener: allowed %v, %+v", adm.Allowed, adm.Result)
	}
}
