package gatelog

# Credential hygiene. A credential older than the rotation period still
# works, but it should not be trusted for privileged actions, and everyone
# should hear about it; an expired credential proves nothing at all.

# A credential is stale when its token_age_s exceeds the rotation period (0
# turns the check off). The alert and the denial each test it in place: a
# shared helper rule costs more than the test twice. The age is compared
# first, as nearly every request fails there; Rego orders values of
# different types instead of failing (a string is greater than any number),
# so testing is_number and the period after the comparison gives the same
# answer with two calls fewer per body.
alerts contains {"severity": severity, "code": "stale_credential", "message": msg} if {
	rotation_period_s := object.get(config, ["credentials", "rotation_period_s"], 7776000)
	input.subject.token_age_s > rotation_period_s
	is_number(input.subject.token_age_s)
	rotation_period_s > 0
	object.get(config, ["alerts", "stale_credential", "enabled"], true) == true
	severity := object.get(config, ["alerts", "stale_credential", "severity"], "warning")
	msg := sprintf("subject %q uses a credential %d seconds old, past the rotation period of %d seconds", [input.subject.id, input.subject.token_age_s, rotation_period_s])
}

denials contains msg if {
	rotation_period_s := object.get(config, ["credentials", "rotation_period_s"], 7776000)
	input.subject.token_age_s > rotation_period_s
	is_number(input.subject.token_age_s)
	rotation_period_s > 0
	privileged == true
	msg := sprintf("credential of subject %q is %d seconds old, past the rotation period of %d seconds; rotate it before privileged action %q", [input.subject.id, input.subject.token_age_s, rotation_period_s, input.action])
}

# Expiry is part of authentication, so break-glass cannot override it. Both
# rules parse the time, so an expiry that looks like a time but is not one
# (month 13) is an evaluation error, as in every other rule that reads one.
auth_denials contains msg if {
	is_string(input.subject.credential_expires_at)
	input.subject.credential_expires_at != ""
	parse_time(input.subject.credential_expires_at) <= now_ns
	msg := sprintf("credential of subject %q expired at %s", [input.subject.id, input.subject.credential_expires_at])
}

auth_denials contains msg if {
	is_string(input.subject.credential_expires_at)
	input.subject.credential_expires_at != ""
	not parse_time(input.subject.credential_expires_at)
	msg := sprintf("subject.credential_expires_at is not an RFC 3339 time: %q", [input.subject.credential_expires_at])
}
