package policy_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gatelog/gatelog/record/decision"
)

// The replay corpus: requests drawn from every dimension the bundled
// policies look at, so that each deny reason, alert, break-glass path,
// freeze window, separation-of-duties rule, MFA age, credential rule, role
// binding (groups, subjects, owner_kinds), environment and working-hours
// edge is reached under the configurations of configs_test.go.
// TestCorpusCoversEveryRule checks that it does.
//
// The corpus is generated from a fixed seed rather than committed: it is
// the same on every run, and a new dimension is one line here.

// corpusSize is how many generated requests each configuration sees.
const corpusSize = 1200

var (
	subjectIDs = []string{"alice", "bob", "carol", "mallory", "svc:renovate",
		"system:serviceaccount:tekton-pipelines:tekton-pipelines-controller", ""}
	groupChoices = []string{"release-managers", "developers", "acme/developers", "acme/release-managers",
		"acme/sre", "acme/security", "ops", "platform"}
	actions = []string{"pipeline.trigger", "step.run", "deploy", "deploy", "config.update", "secret.read",
		"role.grant", "policy.update", "key.rotate", "role.revoke", "secret.write", "release.publish"}
	systems      = []string{"tekton", "github", "gitlab", "jenkins", "gatelog", ""}
	kinds        = []string{"PipelineRun", "TaskRun", "workflow_run", "pipeline", "role", ""}
	namespaces   = []string{"ci", "prod-payments", "prod-eu", "dev", ""}
	environments = []string{"production", "production", "production-eu", "staging", "dev-1", "qa", "prod", ""}
	repositories = []string{"acme/shop", "acme/infra", "other/tool", ""}
	refs         = []string{"refs/heads/main", "refs/heads/main", "refs/heads/feature/cart", "refs/tags/v1.2.3",
		"refs/tags/release-1", "refs/heads/release-2026", "refs/heads/main/../x", "9f2c3b7e1d0a4c5b6e7f8091a2b3c4d5e6f70819", ""}
	ownerKinds = []string{"PipelineRun", "Pipeline", "TaskRun", ""}
	// Times around the working hours of both configurations (UTC 07-19 and
	// Europe/Berlin 08-19), weekends, the Acme freeze window edges, other
	// offsets, fractional seconds, a leap-year day and malformed times.
	times = []string{
		"2026-03-04T10:00:00Z", "2026-03-04T06:59:59Z", "2026-03-04T07:00:00Z", "2026-03-04T18:59:59Z",
		"2026-03-04T19:00:00Z", "2026-03-04T23:30:00Z", "2026-03-07T11:00:00Z", "2026-03-08T02:00:00Z",
		"2026-03-30T00:00:00+02:00", "2026-03-29T23:59:59+02:00", "2026-03-31T10:00:00+02:00",
		"2026-04-01T00:00:00+02:00", "2026-03-31T22:00:00Z", "2026-07-15T06:30:00Z", "2026-07-15T17:30:00-04:00",
		"2026-12-24T12:00:00.123456789Z", "2028-02-29T09:00:00+01:00", "2026-10-25T01:30:00Z",
		"2026-03-04 10:00:00", "2026-03-04T10:00Z", "yesterday", "", // the last four are rare
	}
	authTimes     = []string{"recent", "recent", "old", "very-old", "2026-03-04T09:50:00Z", "not a time", ""}
	tokenAges     = []int64{0, 600, 86400, 40 * 86400, 100 * 86400, 2592001, 7776001}
	expiries      = []string{"", "", "", "", "", "", "future", "future", "future", "past", "same", "tomorrow", "2026-13-01T00:00:00Z"}
	breakReasons  = []string{"", "", "incident INC-42: checkout down", "   ", "\tfix\n"}
	changeAuthors = []string{"alice", "bob", "carol", "dave"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// offsetTime returns t moved by d seconds, in t's own offset; a fixed
// time when t is not RFC 3339 (the request's time is then invalid anyway).
func offsetTime(t string, d int64) string {
	parsed, err := time.Parse(time.RFC3339, t)
	if err != nil {
		return "2026-03-04T09:50:00Z"
	}
	return parsed.Add(time.Duration(d) * time.Second).Format(time.RFC3339)
}

// corpus returns the generated requests, each a JSON object as the daemon
// would hand it to OPA, followed by some whose fields are missing or of
// another type (as a hand-written `opa eval` input might be).
func corpus() []map[string]any {
	r := rand.New(rand.NewPCG(24, 2026))
	out := make([]map[string]any, 0, corpusSize)
	for i := range corpusSize {
		out = append(out, generate(r, i))
	}
	return out
}

// scenario is a coherent request of one kind of caller; generate starts
// from one and replaces each field with a random value now and then, so the
// corpus holds both plausible requests (allowed ones, the roles of every
// configuration) and the odd combinations that reach the deny rules.
type scenario struct {
	id, action, system, kind, namespace, environment, repository, ref, owner string
	groups                                                                   []string
}

var scenarios = []scenario{
	{id: "alice", groups: []string{"release-managers", "acme/release-managers"}, action: "deploy", system: "github",
		kind: "workflow_run", environment: "production", repository: "acme/shop", ref: "refs/heads/main"},
	{id: "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller", action: "step.run", system: "tekton",
		kind: "TaskRun", namespace: "ci", owner: "PipelineRun"},
	{id: "svc:renovate", action: "pipeline.trigger", system: "gitlab", kind: "pipeline", repository: "acme/infra",
		ref: "refs/heads/renovate/x"},
	{id: "bob", groups: []string{"developers", "acme/developers"}, action: "pipeline.trigger", system: "tekton",
		kind: "PipelineRun", namespace: "ci", repository: "acme/shop", ref: "refs/heads/feature/cart"},
	{id: "bob", groups: []string{"acme/developers"}, action: "deploy", system: "jenkins", kind: "pipeline",
		environment: "staging", repository: "acme/shop", ref: "refs/heads/feature/cart"},
	{id: "carol", groups: []string{"acme/sre", "ops"}, action: "config.update", system: "tekton", kind: "ConfigMap",
		namespace: "prod-payments"},
	{id: "mallory", groups: []string{"acme/security"}, action: "role.grant", system: "gatelog", kind: "role",
		repository: "", ref: ""},
}

// orRandom keeps typical three times in four, else picks from xs.
func orRandom[T any](r *rand.Rand, typical T, xs []T) T {
	if r.IntN(4) != 0 {
		return typical
	}
	return pick(r, xs)
}

func generate(r *rand.Rand, i int) map[string]any {
	sc := pick(r, scenarios)
	id := orRandom(r, sc.id, subjectIDs)
	now := times[r.IntN(len(times)-4)]
	if r.IntN(20) == 0 {
		now = pick(r, times)
	}
	req := decision.Request{
		Subject: decision.Subject{
			ID:       id,
			Kind:     pick(r, []string{"user", "service", "api_key"}),
			Issuer:   "https://idp.example.com",
			Groups:   orRandom(r, sc.groups, [][]string{nil, {pick(r, groupChoices)}, {pick(r, groupChoices), pick(r, groupChoices)}}),
			MFA:      r.IntN(4) != 0,
			Verified: r.IntN(12) != 0,
		},
		Action: orRandom(r, sc.action, actions),
		Resource: decision.Resource{
			System:      orRandom(r, sc.system, systems),
			Kind:        orRandom(r, sc.kind, kinds),
			Name:        pick(r, []string{"deploy.yml", "build", "release-manager", id}),
			Namespace:   orRandom(r, sc.namespace, namespaces),
			Environment: orRandom(r, sc.environment, environments),
			Repository:  orRandom(r, sc.repository, repositories),
			Ref:         orRandom(r, sc.ref, refs),
		},
		Context: decision.Context{Time: now, SourceIP: "192.0.2.10"},
		Source:  decision.Source{Adapter: "corpus", RequestID: fmt.Sprintf("corpus-%d", i)},
	}
	switch pick(r, authTimes) {
	case "recent":
		req.Subject.AuthTime = offsetTime(now, -300)
	case "old":
		req.Subject.AuthTime = offsetTime(now, -1200)
	case "very-old":
		req.Subject.AuthTime = offsetTime(now, -86400)
	case "":
	default:
		req.Subject.AuthTime = pick(r, authTimes[4:6])
	}
	req.Subject.TokenAgeS = pick(r, tokenAges)
	switch pick(r, expiries) {
	case "future":
		req.Subject.CredentialExpiresAt = offsetTime(now, 3600)
	case "past":
		req.Subject.CredentialExpiresAt = offsetTime(now, -1)
	case "same":
		req.Subject.CredentialExpiresAt = offsetTime(now, 0)
	case "":
	default:
		// A month 13 passes the policies' pattern and makes OPA's time
		// parser raise an error, which the engine reports as a deny.
		req.Subject.CredentialExpiresAt = orRandom(r, "tomorrow", expiries[12:])
	}
	if r.IntN(5) == 0 {
		req.Subject.Claims = map[string]any{"break_glass": r.IntN(4) != 0}
		req.Context.BreakGlassReason = pick(r, breakReasons)
	}
	attrs := map[string]any{}
	if k := orRandom(r, sc.owner, ownerKinds); k != "" {
		attrs["owner"] = map[string]any{"kind": k, "name": "release-1"}
	}
	if r.IntN(5) == 0 {
		attrs["grantee"] = pick(r, []string{id, "bob", "someone-else"})
	}
	if len(attrs) > 0 {
		req.Resource.Attributes = attrs
	}
	if r.IntN(3) == 0 {
		c := &decision.Change{ID: fmt.Sprintf("PR-%d", r.IntN(500)), Author: orRandom(r, id, changeAuthors)}
		for range r.IntN(3) {
			c.Approvers = append(c.Approvers, pick(r, append(changeAuthors, id, id)))
		}
		req.Context.Change = c
	}
	if r.IntN(3) == 0 {
		h := &decision.History{}
		for range r.IntN(3) {
			h.PrivilegedActionsUsed = append(h.PrivilegedActionsUsed, orRandom(r, req.Action, actions))
		}
		req.Context.History = h
	}
	m := toMap(req)
	if r.IntN(10) == 0 {
		perturb(r, m)
	}
	return m
}

// perturb removes or retypes one field the daemon always sends, as a
// hand-written input might.
func perturb(r *rand.Rand, m map[string]any) {
	sub := m["subject"].(map[string]any)
	ctx := m["context"].(map[string]any)
	switch r.IntN(13) {
	case 0:
		delete(sub, "id")
	case 1:
		sub["id"] = 42
	case 2:
		delete(sub, "verified")
	case 3:
		sub["verified"] = "true"
	case 4:
		delete(sub, "mfa")
	case 5:
		sub["token_age_s"] = "600"
	case 6:
		delete(m, "resource")
	case 7:
		m["resource"] = "production"
	case 8:
		ctx["time"] = 1772618400
	case 9:
		ctx["change"] = "PR-1"
		ctx["history"] = map[string]any{"privileged_actions_used": "deploy"}
	case 12:
		m["action"] = 5
	case 11:
		if res, ok := m["resource"].(map[string]any); ok {
			res["ref"] = 7
			res["attributes"] = map[string]any{"owner": map[string]any{"kind": 1}}
		}
	case 10:
		ctx["break_glass_reason"] = 7
		sub["claims"] = map[string]any{"break_glass": true}
	}
}

func toMap(req decision.Request) map[string]any {
	b, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

// TestCorpusSize keeps the corpus at the size the issue asks for.
func TestCorpusSize(t *testing.T) {
	if n := len(corpus()); n < 1000 {
		t.Fatalf("corpus has %d requests, want at least 1000", n)
	}
}
