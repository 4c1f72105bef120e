package gatelog

# Privileged actions need a second factor and, where configured, a recent
# login: a stolen long-lived session should not be enough to deploy to
# production or read secrets.

default_privileged_actions := ["config.update", "secret.read", "role.grant", "policy.update", "key.rotate"]

# privileged is true for the configured actions and for any deploy to a
# protected environment (see environments.rego).
privileged if matches_any(setting(["privileged", "actions"], default_privileged_actions), input.action)

privileged if deploy_to_protected

mfa_required if {
	privileged
	setting(["mfa", "required"], true) == true
}

denials contains msg if {
	mfa_required
	not input.subject.mfa == true
	msg := sprintf("privileged action %q on %s requires multi-factor authentication, and subject %q did not use it (subject.mfa is not true)", [input.action, resource_description, input.subject.id])
}

# The login age check is on when max_auth_age_s > 0.
max_auth_age_s := setting(["mfa", "max_auth_age_s"], 0)

auth_age_checked if {
	mfa_required
	max_auth_age_s > 0
}

auth_time_ns := parse_time(input.subject.auth_time)

denials contains msg if {
	auth_age_checked
	not auth_time_ns
	msg := sprintf("privileged action %q requires subject.auth_time to check the login is at most %d seconds old", [input.action, max_auth_age_s])
}

denials contains msg if {
	auth_age_checked
	auth_age_s := (now_ns - auth_time_ns) / 1e9
	auth_age_s > max_auth_age_s
	msg := sprintf("privileged action %q requires a login within the last %d seconds; subject %q last authenticated at %s, %d seconds before the request", [input.action, max_auth_age_s, input.subject.id, input.subject.auth_time, round(auth_age_s)])
}
