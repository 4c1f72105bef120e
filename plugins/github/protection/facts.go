package protection

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gogithub "github.com/google/go-github/v88/github"

	"github.com/gatelog/gatelog/plugins/adapter"
	"github.com/gatelog/gatelog/plugins/github"
	"github.com/gatelog/gatelog/record/decision"
)

// githubFacts learns, through GitHub's REST API as the App's
// installation, what a signed deployment_protection_rule delivery does not
// say: which of the configured organization teams its sender is an active
// member of (subject.groups), whether the sender's organization requires
// two-factor authentication of its members (subject.mfa), and whether the
// bare ref name GitHub sent is a tag (resource.ref, resolveRef).
//
// Why the daemon asks and not the adapter: adapters make no network calls,
// and these facts are identity, which is the daemon's. Why the App: GitHub
// answers it with the organization permission "Members: read", the same
// installation that reviews the deployment, so no other credential exists.
//
// What it asserts, and where that is recorded (subject.claims):
//   - groups: the configured team slugs whose membership GitHub reports as
//     "active" (GET /orgs/{org}/teams/{slug}/memberships/{user}); a pending
//     invitation or a 404 is not membership. groups_source names the org.
//   - mfa: true only for an active member of an organization whose
//     two_factor_requirement_enabled is true (GET /orgs/{org}; GitHub then
//     requires 2FA of every member), mfa_source
//     "github-org-2fa-required:ORG". GitHub documents that field for
//     organization owners; when its answer to the App leaves it out, an
//     operator may state it per organization (Teams/TwoFactorOrgs in
//     Config), mfa_source "setting:github.org_2fa_required:ORG". An
//     explicit false from GitHub wins over the setting. Otherwise mfa is
//     false, and the bundled policy denies privileged deploys for it.
//
// Answers are cached for ttl (per installation, organization and user);
// failures are not cached. A failure fails the delivery closed: the review
// is a rejection that says what could not be read.
type githubFacts struct {
	api           string
	apps          *ghinstallation.AppsTransport
	teams         []string
	twoFactorOrgs map[string]bool
	ttl           time.Duration
	timeout       time.Duration
	now           func() time.Time

	mu      sync.Mutex
	clients map[int64]*gogithub.Client
	cache   map[string]cachedAnswer
}

type cachedAnswer struct {
	// found is false for GitHub's 404; state is the membership state, or
	// for an organization "true"/"false"/"" (two_factor_requirement_enabled
	// missing from the answer).
	found bool
	state string
	until time.Time
}

// Bounds of the sender lookups.
const (
	// defaultSenderCacheTTL keeps GitHub's answers briefly: a deploy
	// usually waits on several environments and jobs at once, while a team
	// removal takes effect within a minute.
	defaultSenderCacheTTL = time.Minute
	// senderLookupTimeout leaves the daemon time to decide and answer
	// within GitHub's 10 s webhook timeout.
	senderLookupTimeout = 5 * time.Second
	maxSenderCache      = 10000
)

// githubNameRE bounds organization logins, user logins and team slugs as
// GitHub spells them, so that nothing else reaches a request path.
var githubNameRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})$`)

func newGitHubFacts(cfg Config, apiURL string, now func() time.Time) (*githubFacts, error) {
	apps, err := ghinstallation.NewAppsTransport(transportOr(cfg.Transport), cfg.AppID, cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("GitHub App private key: %w", err)
	}
	apps.BaseURL = apiURL
	teams := make([]string, 0, len(cfg.Teams))
	for _, t := range cfg.Teams {
		t = strings.ToLower(strings.TrimSpace(t))
		if !githubNameRE.MatchString(t) {
			return nil, fmt.Errorf("team %q: want a team slug such as release-managers", t)
		}
		if !slices.Contains(teams, t) {
			teams = append(teams, t)
		}
	}
	orgs := map[string]bool{}
	for _, o := range cfg.TwoFactorOrgs {
		o = strings.TrimSpace(o)
		if !githubNameRE.MatchString(o) {
			return nil, fmt.Errorf("organization %q: want an organization login", o)
		}
		orgs[strings.ToLower(o)] = true
	}
	ttl := cfg.SenderCacheTTL
	if ttl <= 0 {
		ttl = defaultSenderCacheTTL
	}
	return &githubFacts{
		api: apiURL, apps: apps, teams: teams, twoFactorOrgs: orgs, ttl: ttl, timeout: senderLookupTimeout, now: now,
		clients: map[int64]*gogithub.Client{}, cache: map[string]cachedAnswer{},
	}, nil
}

func transportOr(t http.RoundTripper) http.RoundTripper {
	if t == nil {
		return http.DefaultTransport
	}
	return t
}

// apply sets req.Subject's groups, mfa and their sources from GitHub's
// API. The subject must be the delivery's sender: the daemon looks up the
// user GitHub signed for, whatever an adapter returned. Whatever groups or
// mfa the adapter set are replaced. Errors are adapter.Failures.
func (g *githubFacts) apply(ctx context.Context, req *decision.Request, ev github.Event) error {
	if ev.Sender == nil || req.Subject.ID != ev.Sender.Login {
		return &adapter.Failure{Kind: adapter.BadRequest, Message: fmt.Sprintf("the adapter's subject %q is not the delivery's sender", req.Subject.ID)}
	}
	claims := map[string]any{}
	for k, v := range req.Subject.Claims {
		claims[k] = v
	}
	for _, k := range []string{"mfa_source", "groups_source", "github_org", "github_org_member", "github_org_2fa_required"} {
		delete(claims, k)
	}
	req.Subject.Groups, req.Subject.MFA = nil, false
	defer func() {
		if len(claims) == 0 {
			claims = nil
		}
		req.Subject.Claims = claims
	}()
	if ev.Organization == nil || ev.Organization.Login == "" {
		// A repository owned by a user: no teams, no organization policy.
		return nil
	}
	org, login := ev.Organization.Login, ev.Sender.Login
	claims["github_org"] = org
	if ev.Sender.Type == "Bot" {
		// An App's bot account (github-actions[bot] for scheduled runs)
		// belongs to no team and has no second factor.
		claims["github_org_member"] = false
		return nil
	}
	if !githubNameRE.MatchString(org) || !githubNameRE.MatchString(login) {
		return &adapter.Failure{Kind: adapter.BadRequest, Message: fmt.Sprintf("organization %q or sender %q is not a GitHub login", org, login)}
	}
	if ev.Installation == nil || ev.Installation.ID <= 0 {
		return &adapter.Failure{Kind: adapter.BadRequest, Message: `field "installation.id" is required`}
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	inst := ev.Installation.ID
	fail := func(what string, err error) error {
		return &adapter.Failure{Kind: adapter.Unavailable, Message: fmt.Sprintf(
			"gatelog could not read %s from GitHub's API as the App's installation %d, so the deployment is not approved: %s", what, inst, githubAPIError(err))}
	}
	member, err := g.lookup(ctx, inst, "member", org, login, "")
	if err != nil {
		return fail(fmt.Sprintf("whether %s is a member of organization %s", login, org), err)
	}
	isMember := member.found && member.state == "active"
	claims["github_org_member"] = isMember
	if !isMember {
		return nil
	}
	if len(g.teams) > 0 {
		for _, team := range g.teams {
			m, err := g.lookup(ctx, inst, "team", org, login, team)
			if err != nil {
				return fail(fmt.Sprintf("%s's membership of team %s/%s", login, org, team), err)
			}
			if m.found && m.state == "active" {
				req.Subject.Groups = append(req.Subject.Groups, team)
			}
		}
		claims["groups_source"] = "github-team-membership:" + org
	}
	o, err := g.lookup(ctx, inst, "org", org, "", "")
	if err != nil {
		return fail(fmt.Sprintf("whether organization %s requires two-factor authentication", org), err)
	}
	switch {
	case o.state == "true":
		claims["github_org_2fa_required"] = true
		claims["mfa_source"] = "github-org-2fa-required:" + org
		req.Subject.MFA = true
	case o.state == "false":
		claims["github_org_2fa_required"] = false
	case g.twoFactorOrgs[strings.ToLower(org)]:
		claims["mfa_source"] = "setting:github.org_2fa_required:" + org
		req.Subject.MFA = true
	}
	return nil
}

// maxTagPages bounds the tag listing resolveRef reads (100 tags a page).
const maxTagPages = 10

// resolveRef decides whether the deployment's ref is a tag. GitHub names it
// by its short name ("main", "v1.2.3": the workflow's GITHUB_REF_NAME) and
// the payload does not say which kind it is, so the adapter made it
// refs/heads/NAME. It is refs/tags/NAME only if the repository has a tag
// NAME whose commit is the deployment's sha ("List repository tags", which
// every App may call with its default Metadata permission); a tag of that
// name at another commit, or one beyond the first maxTagPages pages, leaves
// the branch reading, which matches no tag rule (fail closed). The record
// keeps the name as sent in resource.attributes.ref_name and, for a tag,
// ref_source "github-tag-list".
func (g *githubFacts) resolveRef(ctx context.Context, req *decision.Request, ev github.Event) error {
	name, sha := ev.Ref, ev.SHA
	if ev.Deployment != nil {
		name, sha = cmp.Or(name, ev.Deployment.Ref), cmp.Or(sha, ev.Deployment.SHA)
	}
	owner, repo, ok := strings.Cut(ev.Repository.FullName, "/")
	if name == "" || sha == "" || !ok || req.Resource.Ref != "refs/heads/"+name || ev.Installation == nil {
		return nil
	}
	if !githubNameRE.MatchString(owner) || !githubNameRE.MatchString(repo) {
		return &adapter.Failure{Kind: adapter.BadRequest, Message: fmt.Sprintf("repository %q is not owner/name", ev.Repository.FullName)}
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	a, err := g.lookup(ctx, ev.Installation.ID, "tag", ev.Repository.FullName, name, "")
	if err != nil {
		return &adapter.Failure{Kind: adapter.Unavailable, Message: fmt.Sprintf(
			"gatelog could not read the tags of %s from GitHub's API as the App's installation %d, to tell whether %q is a tag, so the deployment is not approved: %s",
			ev.Repository.FullName, ev.Installation.ID, name, githubAPIError(err))}
	}
	if a.found && strings.EqualFold(a.state, sha) {
		req.Resource.Ref = "refs/tags/" + name
		if req.Resource.Attributes == nil {
			req.Resource.Attributes = map[string]any{}
		}
		req.Resource.Attributes["ref_source"] = "github-tag-list"
	}
	return nil
}

// lookup answers one question, from the cache or from GitHub: "member"
// (organization membership of user), "team" (membership of user in team),
// "org" (the organization's 2FA requirement) or "tag" (the commit of tag
// user in repository org).
func (g *githubFacts) lookup(ctx context.Context, inst int64, kind, org, user, team string) (cachedAnswer, error) {
	key := strings.ToLower(strings.Join([]string{strconv.FormatInt(inst, 10), kind, org, user, team}, "\x00"))
	now := g.now()
	g.mu.Lock()
	if a, ok := g.cache[key]; ok && now.Before(a.until) {
		g.mu.Unlock()
		return a, nil
	}
	g.mu.Unlock()

	c, err := g.client(inst)
	if err != nil {
		return cachedAnswer{}, err
	}
	var a cachedAnswer
	switch kind {
	case "member":
		m, _, err := c.Organizations.GetOrgMembership(ctx, user, org)
		a, err = membershipAnswer(m, err)
		if err != nil {
			return a, err
		}
	case "team":
		m, _, err := c.Teams.GetTeamMembershipBySlug(ctx, org, team, user)
		a, err = membershipAnswer(m, err)
		if err != nil {
			return a, err
		}
	case "org":
		o, _, err := c.Organizations.Get(ctx, org)
		if err != nil {
			return a, err
		}
		a.found = true
		if o.TwoFactorRequirementEnabled != nil {
			a.state = strconv.FormatBool(*o.TwoFactorRequirementEnabled)
		}
	case "tag":
		owner, repo, _ := strings.Cut(org, "/")
		opts := &gogithub.ListOptions{PerPage: 100}
		for page := 0; page < maxTagPages && !a.found; page++ {
			tags, resp, err := c.Repositories.ListTags(ctx, owner, repo, opts)
			if err != nil {
				return a, err
			}
			for _, t := range tags {
				if t.GetName() == user {
					a.found, a.state = true, t.GetCommit().GetSHA()
					break
				}
			}
			if resp.NextPage == 0 {
				break
			}
			opts.Page = resp.NextPage
		}
	default:
		return a, fmt.Errorf("unknown lookup %q", kind)
	}
	a.until = g.now().Add(g.ttl)
	g.mu.Lock()
	if len(g.cache) >= maxSenderCache {
		for k, v := range g.cache {
			if !now.Before(v.until) {
				delete(g.cache, k)
			}
		}
		if len(g.cache) >= maxSenderCache {
			clear(g.cache)
		}
	}
	g.cache[key] = a
	g.mu.Unlock()
	return a, nil
}

// membershipAnswer reads a membership answer: GitHub's 404 means "not a
// member" (documented for both endpoints), anything else that is not a 200
// is an error.
func membershipAnswer(m *gogithub.Membership, err error) (cachedAnswer, error) {
	var er *gogithub.ErrorResponse
	switch {
	case errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound:
		return cachedAnswer{}, nil
	case err != nil:
		return cachedAnswer{}, err
	}
	return cachedAnswer{found: true, state: m.GetState()}, nil
}

func (g *githubFacts) client(inst int64) (*gogithub.Client, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.clients[inst]; ok {
		return c, nil
	}
	// One client per installation keeps its token until it nears expiry
	// (ghinstallation refreshes it).
	base := g.api + "/"
	c, err := gogithub.NewClient(
		gogithub.WithTransport(ghinstallation.NewFromAppsTransport(g.apps, inst)),
		gogithub.WithURLs(&base, &base),
		gogithub.WithUserAgent("gatelog"),
	)
	if err != nil {
		return nil, fmt.Errorf("GitHub API client: %w", err)
	}
	g.clients[inst] = c
	return c, nil
}

// githubAPIError says what went wrong in words for the review comment:
// GitHub's status and message, and for a 403 the permission to grant.
// Tokens never appear in go-github's or ghinstallation's errors.
func githubAPIError(err error) string {
	var er *gogithub.ErrorResponse
	var he *ghinstallation.HTTPError
	switch {
	case errors.As(err, &er) && er.Response != nil:
		msg := fmt.Sprintf("GitHub answered %d %s", er.Response.StatusCode, er.Message)
		if er.Response.StatusCode == http.StatusForbidden {
			msg += " (the App needs the organization permission Members: read)"
		}
		return msg
	case errors.As(err, &he) && he.Response != nil:
		return fmt.Sprintf("the installation token was refused: GitHub answered %s", he.Response.Status)
	case errors.Is(err, context.DeadlineExceeded):
		return "GitHub did not answer in time"
	}
	return err.Error()
}
