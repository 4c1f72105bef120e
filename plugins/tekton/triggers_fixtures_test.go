package tekton

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	gogithub "github.com/google/go-github/v88/github"
	gogitlab "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github"
)

// The interceptor fixtures are real webhooks (testdata/webhooks: octokit's
// payload examples for GitHub, the GitLab Go client's webhook test data for
// GitLab; see testdata/README.md) forwarded the way an EventListener does
// (tektoncd/triggers pkg/sink/sink.go, ExecuteInterceptors): the webhook
// arrives as an HTTP request; its body becomes the InterceptorRequest's
// body, its header (as net/http parsed it) the header, the trigger's
// interceptor params the interceptor_params, and the context carries the
// request URL, the event ID and "namespaces/NS/triggers/NAME".
// TestInterceptorFixturesAreForwardedWebhooks rebuilds each one that way;
// GATELOG_UPDATE_GOLDEN=1 rewrites them.

// testWebhookSecret and testGitLabToken sign the fixtures' webhooks. The
// first is the secret of GitHub's own signature example
// (docs.github.com, "Validating webhook deliveries").
const (
	testWebhookSecret = "It's a Secret to Everybody"
	testGitLabToken   = "glwht-tekton-triggers-example-token"
)

type forwardedWebhook struct {
	fixture   string // NAME of testdata/NAME.payload.json
	provider  string // "github" or "gitlab"
	webhook   string // file under testdata/webhooks/<provider>/
	event     string // X-GitHub-Event or X-Gitlab-Event
	triggerID string
	params    map[string]any
	eventID   string
}

var stagingTrigger = map[string]any{ParamEnvironment: "staging", ParamAction: ActionPipelineTrigger}

var forwardedWebhooks = []forwardedWebhook{
	{"interceptor-github-push", "github", "push.with-new-branch.json", "push", "namespaces/ci/triggers/release", stagingTrigger, "0c7b5e0e-6f1c-4a5e-9f57-1f0e3c2d4b61"},
	{"interceptor-github-pull-request", "github", "pull_request.opened.json", "pull_request", "namespaces/ci/triggers/pr-check", nil, "3f0a9d2e-0b4c-4f7e-8a51-6c2d9e8f7a10"},
	{"interceptor-github-create-tag", "github", "create.json", "create", "namespaces/ci/triggers/tag", nil, "5b6c7d8e-9f00-4a1b-8c2d-3e4f5a6b7c8d"},
	{"interceptor-github-release", "github", "release.published.json", "release", "namespaces/ci/triggers/release-published", nil, "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d"},
	{"interceptor-github-subject-path", "github", "push.with-new-branch.json", "push", "namespaces/ci/triggers/release",
		map[string]any{ParamSubjectPath: "head_commit.author.email"}, "7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"},
	{"interceptor-subject-path", "other", "bitbucket-cloud-curl.json", "repo:push", "namespaces/ci/triggers/bitbucket",
		map[string]any{ParamSubjectPath: "actor.display_name"}, "8c9d0e1f-2a3b-4c4d-9e5f-6a7b8c9d0e1f"},
	{"interceptor-gitlab-push", "gitlab", "push.json", "Push Hook", "namespaces/ci/triggers/gitlab-push", stagingTrigger, "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"},
	{"interceptor-gitlab-tag-push", "gitlab", "tag_push.json", "Tag Push Hook", "namespaces/ci/triggers/gitlab-tag", nil, "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"},
	{"interceptor-gitlab-merge-request", "gitlab", "merge_request.json", "Merge Request Hook", "namespaces/ci/triggers/merge-request", stagingTrigger, "3c4d5e6f-7a8b-4c9d-8e1f-2a3b4c5d6e7f"},
	{"interceptor-gitlab-note", "gitlab", "note_merge_request.json", "Note Hook", "namespaces/ci/triggers/gitlab-comment", nil, "4d5e6f7a-8b9c-4d0e-9f2a-3b4c5d6e7f8a"},
	{"interceptor-gitlab-pipeline", "gitlab", "pipeline.json", "Pipeline Hook", "namespaces/ci/triggers/gitlab-pipeline", nil, "5e6f7a8b-9c0d-4e1f-8a3b-4c5d6e7f8a9b"},
	{"interceptor-gitlab-job", "gitlab", "job.json", "Job Hook", "namespaces/ci/triggers/gitlab-job", nil, "6f7a8b9c-0d1e-4f2a-9b4c-5d6e7f8a9b0c"},
	{"interceptor-gitlab-deployment", "gitlab", "deployment.json", "Deployment Hook", "namespaces/ci/triggers/gitlab-deployment", nil, "7a8b9c0d-1e2f-4a3b-8c5d-6e7f8a9b0c1d"},
	{"interceptor-gitlab-issue", "gitlab", "issue.json", "Issue Hook", "namespaces/ci/triggers/gitlab-issue", nil, "9c0d1e2f-3a4b-4c5d-8e7f-8a9b0c1d2e3f"},
	{"interceptor-gitlab-wiki-page", "gitlab", "wiki_page.json", "Wiki Page Hook", "namespaces/ci/triggers/gitlab-wiki", nil, "0d1e2f3a-4b5c-4d6e-9f8a-9b0c1d2e3f4a"},
	{"interceptor-gitlab-release", "gitlab", "release.json", "Release Hook", "namespaces/ci/triggers/gitlab-release", nil, "8b9c0d1e-2f3a-4b4c-9d6e-7f8a9b0c1d2e"},
}

// webhookHeader is the header of the HTTP request GitHub or GitLab sends for a webhook
// body, with the delivery headers each documents
// (docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers;
// GitLab doc/user/project/integrations/webhooks.md, "Delivery headers"),
// signed with testWebhookSecret or carrying testGitLabToken.
func webhookHeader(t testing.TB, provider, event string, body []byte) http.Header {
	t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	switch provider {
	case "github":
		h.Set("User-Agent", "GitHub-Hookshot/4a6e2b1")
		h.Set("X-GitHub-Event", event)
		h.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		h.Set("X-GitHub-Hook-ID", "292430182")
		h.Set("X-GitHub-Hook-Installation-Target-ID", "79929171")
		h.Set("X-GitHub-Hook-Installation-Target-Type", "repository")
		h.Set("X-Hub-Signature-256", github.Sign([]byte(testWebhookSecret), body))
	case "gitlab":
		h.Set("User-Agent", "GitLab/17.11.0")
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Instance", "https://gitlab.example.com")
		h.Set("X-Gitlab-Webhook-UUID", "a4a2f4b0-7b3c-4f57-9a2e-0c9d6f5b8e21")
		h.Set("X-Gitlab-Event-UUID", "b5c3e5d1-8c4d-4a68-8b3f-1d0e7a6c9f32")
		h.Set("X-Gitlab-Token", testGitLabToken)
	case "other":
		// tektoncd/triggers examples/v1beta1/bitbucket-cloud/curl.sh:
		// curl -H 'X-Event-Key: repo:push' -d '<body>' (curl's -d sends
		// a form content type).
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		h.Set("User-Agent", "curl/8.5.0")
		h.Set("Accept", "*/*")
		h.Set("X-Event-Key", event)
	default:
		t.Fatalf("provider %q", provider)
	}
	return h
}

// forwardWebhook sends the webhook to a local HTTP server and builds the
// InterceptorRequest from what it received, as the EventListener's sink
// does, then encodes it as Triggers' interceptor client does
// (pkg/interceptors/interceptors.go, Execute: json.Marshal).
func forwardWebhook(t testing.TB, header http.Header, body []byte, triggerID, eventID string, params map[string]any) []byte {
	t.Helper()
	var ir InterceptorRequest
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, in *http.Request) {
		event, err := io.ReadAll(in.Body)
		if err != nil {
			t.Error(err)
		}
		ir = InterceptorRequest{
			Body:              string(event),
			Header:            in.Header.Clone(),
			Extensions:        map[string]any{},
			InterceptorParams: params,
			Context:           &TriggerContext{EventURL: in.URL.String(), EventID: eventID, TriggerID: triggerID},
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer sink.Close()
	req, err := http.NewRequest(http.MethodPost, sink.URL+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	resp, err := sink.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	out, err := json.MarshalIndent(ir, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func forward(t *testing.T, fw forwardedWebhook) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "webhooks", fw.provider, fw.webhook))
	if err != nil {
		t.Fatal(err)
	}
	return forwardWebhook(t, webhookHeader(t, fw.provider, fw.event, body), body, fw.triggerID, fw.eventID, fw.params)
}

func TestInterceptorFixturesAreForwardedWebhooks(t *testing.T) {
	for _, fw := range forwardedWebhooks {
		want := forward(t, fw)
		path := filepath.Join("testdata", fw.fixture+".payload.json")
		if os.Getenv("GATELOG_UPDATE_GOLDEN") != "" {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not the webhook %s/%s forwarded by an EventListener; regenerate with GATELOG_UPDATE_GOLDEN=1", path, fw.provider, fw.webhook)
		}
	}
}

// The actor the adapter takes is the one GitHub's and GitLab's own Go types
// name: go-github's Sender for every GitHub event; for GitLab, the client's
// UserUsername (push, tag push) or User.Username (other hooks).
func TestInterceptorActorMatchesUpstreamTypes(t *testing.T) {
	for _, fw := range forwardedWebhooks {
		if fw.params[ParamSubjectPath] != nil || fw.provider == "other" {
			continue
		}
		body, err := os.ReadFile(filepath.Join("testdata", "webhooks", fw.provider, fw.webhook))
		if err != nil {
			t.Fatal(err)
		}
		var want string
		switch fw.provider {
		case "github":
			ev, err := gogithub.ParseWebHook(fw.event, body)
			if err != nil {
				t.Fatalf("%s: %v", fw.webhook, err)
			}
			s, ok := ev.(interface{ GetSender() *gogithub.User })
			if !ok {
				t.Fatalf("%s: %T has no sender", fw.webhook, ev)
			}
			want = s.GetSender().GetLogin()
		case "gitlab":
			ev, err := gogitlab.ParseWebhook(gogitlab.EventType(fw.event), body)
			if err != nil {
				t.Fatalf("%s: %v", fw.webhook, err)
			}
			want = gitlabUser(t, ev)
		}
		payload, err := os.ReadFile(filepath.Join("testdata", fw.fixture+".payload.json"))
		if err != nil {
			t.Fatal(err)
		}
		req, err := New().Translate(t.Context(), adapter.Native{Body: payload})
		switch {
		case want == "" && err == nil:
			t.Errorf("%s: the hook names no user, but the adapter took %q", fw.fixture, req.Subject.ID)
		case want != "" && (err != nil || req.Subject.ID != want):
			t.Errorf("%s: subject %q, %v; the upstream type names %q", fw.fixture, req.Subject.ID, err, want)
		}
	}
}

func gitlabUser(t *testing.T, ev any) string {
	t.Helper()
	switch e := ev.(type) {
	case *gogitlab.PushEvent:
		return e.UserUsername
	case *gogitlab.TagEvent:
		return e.UserUsername
	case *gogitlab.MergeEvent:
		return e.User.Username
	case *gogitlab.MergeCommentEvent:
		return e.User.Username
	case *gogitlab.PipelineEvent:
		return e.User.Username
	case *gogitlab.JobEvent:
		return e.User.Username
	case *gogitlab.DeploymentEvent:
		return e.User.Username
	case *gogitlab.IssueEvent:
		return e.User.Username
	case *gogitlab.WikiPageEvent:
		return e.User.Username
	case *gogitlab.ReleaseEvent:
		return ""
	}
	t.Fatalf("GitLab event %T is not in the table", ev)
	return ""
}
