package tekton

import (
	"strings"

	"github.com/gatelog/gatelog/record/decision"
)

// webhookEvent is what the adapter reads from the webhook an EventListener
// forwards: who caused it and which code it is about.
type webhookEvent struct {
	// provider is "github" or "gitlab" (from the event header), "" for
	// other sources.
	provider  string
	eventType string // X-GitHub-Event or X-Gitlab-Event
	delivery  string // X-GitHub-Delivery or X-Gitlab-Event-UUID
	kind      string // GitLab's object_kind
	actor     string
	// repository is owner/name (GitHub) or the project's full path (GitLab).
	repository string
	// ref is the ref the event is about, in full (refs/heads/…,
	// refs/tags/…): the pushed ref, a merge or pull request's source
	// branch, a pipeline's or job's ref.
	ref string
	// targetRef is a merge or pull request's target branch.
	targetRef string
	author    string
}

// Event headers, as net/http canonicalises them (Triggers forwards the
// webhook's http.Header; lookups are case-insensitive anyway).
const (
	headerGitHubEvent    = "X-Github-Event"
	headerGitHubDelivery = "X-Github-Delivery"
	headerGitLabEvent    = "X-Gitlab-Event"
	headerGitLabUUID     = "X-Gitlab-Event-Uuid"
)

// readEvent reads a webhook event by the system its event header names.
// The daemon verifies the webhook by the same header (X-GitHub-Event:
// X-Hub-Signature-256; X-Gitlab-Event: X-Gitlab-Token), so the actor comes
// from the system whose secret was checked.
func readEvent(header map[string][]string, body any) webhookEvent {
	gh, gl := headerValue(header, headerGitHubEvent), headerValue(header, headerGitLabEvent)
	switch {
	case gh != "" && gl == "":
		return readGitHub(gh, headerValue(header, headerGitHubDelivery), body)
	case gl != "" && gh == "":
		return readGitLab(gl, headerValue(header, headerGitLabUUID), body)
	}
	// Another source (or a caller with a gatelog credential that sent no
	// event header): the fields both systems use.
	return webhookEvent{
		actor:      firstNonEmpty(lookup(body, "sender.login"), lookup(body, "user_username"), lookup(body, "user.username")),
		repository: firstNonEmpty(lookup(body, "repository.full_name"), lookup(body, "project.path_with_namespace")),
		ref:        decision.NormalizeRef(lookup(body, "ref")),
	}
}

// readGitHub reads a GitHub webhook: every event names its sender, the
// user whose action caused it
// (https://docs.github.com/en/webhooks/webhook-events-and-payloads).
func readGitHub(eventType, delivery string, body any) webhookEvent {
	ev := webhookEvent{
		provider: "github", eventType: eventType, delivery: delivery,
		actor:      lookup(body, "sender.login"),
		repository: lookup(body, "repository.full_name"),
		author: firstNonEmpty(lookup(body, "head_commit.author.username"), lookup(body, "head_commit.author.name"),
			lookup(body, "pull_request.user.login")),
	}
	switch eventType {
	case "push":
		ev.ref = decision.NormalizeRef(lookup(body, "ref"))
	case "pull_request", "pull_request_review", "pull_request_review_comment", "pull_request_target":
		ev.ref = branchRef(lookup(body, "pull_request.head.ref"))
		ev.targetRef = branchRef(lookup(body, "pull_request.base.ref"))
	case "create", "delete":
		// ref is a bare name; ref_type says whether it is a tag.
		ev.ref = typedRef(lookup(body, "ref"), lookup(body, "ref_type") == "tag")
	case "release":
		ev.ref = typedRef(lookup(body, "release.tag_name"), true)
	case "workflow_run":
		ev.ref = branchRef(lookup(body, "workflow_run.head_branch"))
	case "deployment", "deployment_status":
		ev.ref = decision.NormalizeRef(lookup(body, "deployment.ref"))
	default:
		ev.ref = decision.NormalizeRef(lookup(body, "ref"))
	}
	return ev
}

// readGitLab reads a GitLab webhook. Push and tag push hooks name the
// pusher in user_username; merge request, comment, pipeline, job,
// deployment, issue, wiki page and most other hooks in user.username
// (doc/user/project/integrations/webhook_events.md). Release hooks name no
// user and are refused.
func readGitLab(eventType, delivery string, body any) webhookEvent {
	ev := webhookEvent{
		provider: "gitlab", eventType: eventType, delivery: delivery,
		kind:       lookup(body, "object_kind"),
		actor:      firstNonEmpty(lookup(body, "user_username"), lookup(body, "user.username")),
		repository: lookup(body, "project.path_with_namespace"),
	}
	switch ev.kind {
	case "push", "tag_push":
		ev.ref = decision.NormalizeRef(lookup(body, "ref"))
		ev.author = pushAuthor(body)
	case "merge_request":
		ev.ref = branchRef(lookup(body, "object_attributes.source_branch"))
		ev.targetRef = branchRef(lookup(body, "object_attributes.target_branch"))
		ev.author = lookup(body, "object_attributes.last_commit.author.name")
	case "note":
		// A comment on a merge request carries the merge request.
		ev.ref = branchRef(lookup(body, "merge_request.source_branch"))
		ev.targetRef = branchRef(lookup(body, "merge_request.target_branch"))
	case "pipeline":
		ev.ref = typedRef(lookup(body, "object_attributes.ref"), lookupBool(body, "object_attributes.tag"))
		ev.author = lookup(body, "commit.author.name")
	case "build":
		ev.ref = typedRef(lookup(body, "ref"), lookupBool(body, "tag"))
		ev.repository = firstNonEmpty(ev.repository, lookup(body, "project_name"))
	case "deployment":
		ev.ref = decision.NormalizeRef(lookup(body, "ref"))
	}
	return ev
}

// pushAuthor is the author of the pushed head commit (a push hook lists
// the commits, without a head_commit).
func pushAuthor(body any) string {
	head := firstNonEmpty(lookup(body, "checkout_sha"), lookup(body, "after"))
	m, _ := body.(map[string]any)
	commits, _ := m["commits"].([]any)
	for _, c := range commits {
		if lookup(c, "id") == head {
			return lookup(c, "author.name")
		}
	}
	return ""
}

// branchRef is refs/heads/NAME for a bare branch name.
func branchRef(name string) string { return typedRef(name, false) }

// typedRef is the full ref of a bare branch or tag name; a name already
// full (refs/…) is kept, e.g. GitLab's refs/merge-requests/N/head.
func typedRef(name string, tag bool) string {
	name = strings.TrimSpace(name)
	switch {
	case name == "" || strings.HasPrefix(name, "refs/"):
		return name
	case tag:
		return "refs/tags/" + name
	default:
		return "refs/heads/" + name
	}
}

func lookupBool(v any, path string) bool {
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		v = m[part]
	}
	b, _ := v.(bool)
	return b
}

// describe names the event for error messages.
func (ev webhookEvent) describe() string {
	switch ev.provider {
	case "github":
		return "GitHub " + ev.eventType
	case "gitlab":
		return "GitLab " + ev.eventType
	}
	return "webhook"
}

// expected names the fields the actor is read from.
func (ev webhookEvent) expected() string {
	switch ev.provider {
	case "github":
		return "expected sender.login"
	case "gitlab":
		return "expected user_username (push and tag push hooks) or user.username (other hooks; release hooks name no user)"
	}
	return "expected sender.login (GitHub), user_username or user.username (GitLab)"
}
