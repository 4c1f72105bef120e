# Package gatelog is gatelog's bundled policy library. The daemon evaluates
# data.gatelog.decision for every request. The other files of this package
# each add deny reasons, alerts or obligations for one concept; this file
# joins them into the decision and holds what they share.
#
# Settings come from data.gatelog_config (policies/data.yaml); every read
# gives a default, so a missing key never leaves the decision undefined.
#
# The library is written for what OPA charges per decision (see
# docs/policy-performance.md): a rule evaluated costs about as much as five
# built-in tests in one body, so conditions are tested in the body that needs them
# rather than through small helper rules and functions; a helper rule is
# kept where several bodies share work worth caching (now_ns, privileged,
# deploy_to_protected). Helpers are tested with `helper == true` rather
# than a bare `helper`: a bare reference makes OPA name a fresh variable
# on every evaluation. Each body starts with the input test most requests
# fail, and builds its message (sprintf) only after every condition holds.
package gatelog

# The decision is only given when it is well formed: a deny must say why.
# Otherwise (no reason at all, which no rule here produces) the default
# applies, so the entrypoint is defined for every input and never allows by
# accident.
default decision := {
	"allow": false,
	"reasons": ["the policy produced no reason for its decision; denied by default"],
	"alerts": [],
	"obligations": {},
}

# The three outcomes, tried in order. auth_denials are failures to
# establish who is asking, and break-glass cannot override them: an
# emergency does not make an unknown caller trustworthy. denials are
# everything else that forbids the request. Both are sets of human-readable
# reasons, filled by the other files. An allow names the roles that
# granted it (rbac.rego). sort(alerts) lists the alerts in the set's own
# order, without the cost of a comprehension. The override's conditions
# (breakglass.rego: the claim, the switch, a stated reason, no failed
# authentication) are tested in the first branch itself: the only reader of
# a break_glass_override rule would be this one, and the rule cost 12 more
# allocations on Acme's break-glass requests.
decision := {
	"allow": true,
	"reasons": break_glass_reasons,
	"alerts": sort(alerts),
	"obligations": {"post_incident_review": {"subject": input.subject.id, "reason": break_glass_reason}},
} if {
	input.subject.claims.break_glass == true
	object.get(config, ["break_glass", "enabled"], true) == true
	break_glass_reason != ""
	auth_denials == set()
} else := {
	"allow": true,
	"reasons": sort(role_grants),
	"alerts": sort(alerts),
	"obligations": {},
} if {
	auth_denials == set()
	denials == set()
	role_grants != set()
} else := {
	"allow": false,
	"reasons": reasons,
	"alerts": sort(alerts),
	"obligations": {},
} if {
	reasons := sort(auth_denials | denials)
	count(reasons) > 0
}

# Authentication: the daemon sets subject.verified only for subjects taken
# from a verified credential (or vouched for by a trusted caller). Rules
# that need an authenticated subject test the same three things in place.
auth_denials contains "subject is not authenticated: subject.verified is not true" if {
	not input.subject.verified == true
}

# The three ways to have no subject id, each tested in its own body: an
# empty id is an equality OPA's index answers, and a helper rule for
# "present" would cost more than the three tests.
auth_denials contains "subject is not authenticated: subject.id is empty" if {
	input.subject.id == ""
}

# No id at all (not is_string(...) would be undefined for it, not true).
auth_denials contains "subject is not authenticated: subject.id is empty" if {
	not input.subject.id
}

# An id that is there but not a string.
auth_denials contains "subject is not authenticated: subject.id is empty" if {
	not is_string(input.subject.id)
}

# Rules never read the wall clock: the daemon stamps context.time, so a
# request replayed from the log gets the same decision. Without it no
# time-dependent rule (credential expiry, MFA age, freezes) can be checked.
now_ns := time.parse_rfc3339_ns(input.context.time) if {
	is_string(input.context.time)
	regex.match(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`, input.context.time)
}

auth_denials contains "context.time is missing or not an RFC 3339 time; time-dependent rules cannot be checked" if {
	not now_ns
}

# Configuration. Rules read settings in place with object.get(config, path,
# default) or by their path under config where a missing setting fails the
# rule as its default would: a list only iterated (a missing list holds
# nothing, as an empty one does), a switch off by default
# (config.alerts.off_hours.deny == true), a check off at 0
# (config.mfa.max_auth_age_s > 0), working hours. A read by path costs
# about a third of an object.get.
default config := {}

config := c if {
	c := data.gatelog_config
	is_object(c)
}

# Helpers shared by the rule files.

# parse_time returns nanoseconds since the epoch for an RFC 3339 string and
# is undefined for anything else, instead of raising a builtin error. (now_ns
# tests the request's time in place, which spares a call per decision.)
parse_time(s) := time.parse_rfc3339_ns(s) if {
	is_string(s)
	regex.match(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`, s)
}

# matches_any is true when value matches one of the glob patterns. Patterns
# use no delimiters, so "*" also matches "/" ("refs/heads/*" matches
# "refs/heads/team/x").
matches_any(patterns, value) if {
	is_string(value)
	some pattern in patterns
	glob.match(pattern, null, value)
}

# resource_description names the resource in messages; only a reported
# reason or alert evaluates it. A field that is absent, or a resource that is
# not an object, leaves input.resource[k] undefined: no part.
resource_description := concat(", ", parts) if {
	parts := [sprintf("%s %q", [k, v]) |
		some k in ["system", "repository", "namespace", "environment", "kind", "name"]
		v := input.resource[k]
		v != ""
	]
	count(parts) > 0
} else := "an unnamed resource"
