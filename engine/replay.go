package engine

import (
	"context"
	"slices"

	"github.com/gatelog/gatelog/record/decision"
)

// Replayed is a logged decision set beside what the engine's policy
// decides for the same request now.
type Replayed struct {
	LogIndex int64
	Logged   decision.Record
	Now      decision.Decision
	Policy   decision.Policy
}

// Change says how the decision would change: "deny -> allow", "allow ->
// deny", "reasons" or "alerts" (same outcome, different explanation), or
// "" when it would not.
func (r Replayed) Change() string {
	was, now := r.Logged.Decision, r.Now
	switch {
	case was.Allow && !now.Allow:
		return "allow -> deny"
	case !was.Allow && now.Allow:
		return "deny -> allow"
	case !slices.Equal(sorted(was.Reasons), sorted(now.Reasons)):
		return "reasons"
	case !slices.Equal(alertCodes(was.Alerts), alertCodes(now.Alerts)):
		return "alerts"
	}
	return ""
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func alertCodes(as []decision.Alert) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Severity+"/"+a.Code)
	}
	slices.Sort(out)
	return out
}

// Replay decides the logged request again with the policy in force. The
// request is the one the daemon recorded, subject binding and decision
// time included, so the same policy gives the same answer.
func (e *Engine) Replay(ctx context.Context, index int64, rec decision.Record) Replayed {
	d, pol := e.Decide(ctx, rec.Request)
	return Replayed{LogIndex: index, Logged: rec, Now: d, Policy: pol}
}
