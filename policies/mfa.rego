package gatelog

# Privileged actions need a second factor and, where configured, a recent
# login: a stolen long-lived session should not be enough to deploy to
# production or read secrets.

# privileged is true for any deploy to a protected environment (see
# environments.rego) and for the configured actions. The deploy is checked
# first: other rules need deploy_to_protected anyway, and a match spares the
# loop over the patterns.
privileged if deploy_to_protected == true

privileged if {
	is_string(input.action)
	some pattern in object.get(config, ["privileged", "actions"], ["config.update", "secret.read", "role.grant", "policy.update", "key.rotate"])
	glob.match(pattern, null, input.action)
}

# The subject's second factor is tested first: most privileged requests
# have it, and then the setting is never read.
denials contains msg if {
	not input.subject.mfa == true
	privileged == true
	object.get(config, ["mfa", "required"], true) == true
	msg := sprintf("privileged action %q on %s requires multi-factor authentication, and subject %q did not use it (subject.mfa is not true)", [input.action, resource_description, input.subject.id])
}

# The login age check is on when max_auth_age_s > 0. auth_time_ns tests
# the time in place, as now_ns does, rather than through parse_time: a
# function call more costs 4 to 6 allocations per request that checks it.
auth_time_ns := time.parse_rfc3339_ns(input.subject.auth_time) if {
	is_string(input.subject.auth_time)
	regex.match(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`, input.subject.auth_time)
}

denials contains msg if {
	max_auth_age_s := config.mfa.max_auth_age_s
	max_auth_age_s > 0
	privileged == true
	object.get(config, ["mfa", "required"], true) == true
	not auth_time_ns
	msg := sprintf("privileged action %q requires subject.auth_time to check the login is at most %d seconds old", [input.action, max_auth_age_s])
}

denials contains msg if {
	max_auth_age_s := config.mfa.max_auth_age_s
	max_auth_age_s > 0
	privileged == true
	object.get(config, ["mfa", "required"], true) == true
	auth_age_s := (now_ns - auth_time_ns) / 1e9
	auth_age_s > max_auth_age_s
	msg := sprintf("privileged action %q requires a login within the last %d seconds; subject %q last authenticated at %s, %d seconds before the request", [input.action, max_auth_age_s, input.subject.id, input.subject.auth_time, round(auth_age_s)])
}
