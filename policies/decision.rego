# Package gatelog is gatelog's bundled policy library. The daemon evaluates
# data.gatelog.decision for every request. The other files of this package
# each add deny reasons, alerts or obligations for one concept; this file
# joins them into the decision and holds the helpers they share.
#
# Settings come from data.gatelog_config (policies/data.yaml); every read
# gives a default, so a missing key never leaves the decision undefined.
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

decision := {
	"allow": allow,
	"reasons": reasons,
	"alerts": [a | some a in alerts],
	"obligations": obligations,
} if {
	count(reasons) > 0
}

# auth_denials are failures to establish who is asking. Break-glass cannot
# override them: an emergency does not make an unknown caller trustworthy.
# denials are everything else that forbids the request. Both are sets of
# human-readable reasons, filled by the other files.
default allow := false

allow if {
	count(auth_denials) == 0
	count(denials) == 0
}

allow if break_glass_override

reasons := break_glass_reasons if {
	break_glass_override
} else := sort({sprintf("allowed by role %q (%s)", [b.role, b.via]) | some b in granting_bindings}) if {
	allow
} else := sort(auth_denials | denials)

# Authentication: the daemon sets subject.verified only for subjects taken
# from a verified credential (or vouched for by a trusted caller).
subject_id_present if {
	is_string(input.subject.id)
	input.subject.id != ""
}

authenticated if {
	input.subject.verified == true
	subject_id_present
}

auth_denials contains "subject is not authenticated: subject.verified is not true" if {
	not input.subject.verified == true
}

auth_denials contains "subject is not authenticated: subject.id is empty" if {
	not subject_id_present
}

# Rules never read the wall clock: the daemon stamps context.time, so a
# request replayed from the log gets the same decision. Without it no
# time-dependent rule (credential expiry, MFA age, freezes) can be checked.
now_ns := parse_time(input.context.time)

auth_denials contains "context.time is missing or not an RFC 3339 time; time-dependent rules cannot be checked" if {
	not now_ns
}

# Configuration. Rules read settings in place with object.get(config, path,
# default): OPA converts only the part of data a lookup reaches. A helper
# function per setting, or merging the defaults into the whole
# configuration on every decision, cost more than the lookups themselves
# (issue #24, bench/policy).
default config := {}

config := data.gatelog_config if is_object(data.gatelog_config)

# Helpers shared by the rule files.

# parse_time returns nanoseconds since the epoch for an RFC 3339 string and
# is undefined for anything else, instead of raising a builtin error.
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

# resource_field reads a resource field, "" when absent.
resource_field(name) := object.get(resource, name, "")

resource := input.resource if {
	is_object(input.resource)
} else := {}

# The resource fields rules match on, looked up once per decision ("" when
# absent). owner_kind is the kind of the object that controls the resource
# (the Tekton adapter's resource.attributes.owner: a TaskRun's
# PipelineRun), "" when there is none.
resource_values := {
	"system": object.get(resource, "system", ""),
	"repository": object.get(resource, "repository", ""),
	"environment": object.get(resource, "environment", ""),
	"namespace": object.get(resource, "namespace", ""),
	"ref": object.get(resource, "ref", ""),
	"owner_kind": object.get(resource, ["attributes", "owner", "kind"], ""),
}

resource_description := concat(", ", parts) if {
	parts := [sprintf("%s %q", [k, v]) |
		some k in ["system", "repository", "namespace", "environment", "kind", "name"]
		v := resource_field(k)
		v != ""
	]
	count(parts) > 0
} else := "an unnamed resource"

# alert builds an alert object; its severity is read from
# gatelog_config.alerts.<code>.severity.
alert(code, default_severity, message) := {
	"severity": object.get(config, ["alerts", code, "severity"], default_severity),
	"code": code,
	"message": message,
}
