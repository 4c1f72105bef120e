package gatelog

# Credential hygiene. A credential older than the rotation period still
# works, but it should not be trusted for privileged actions, and everyone
# should hear about it; an expired credential proves nothing at all.

rotation_period_s := setting(["credentials", "rotation_period_s"], 7776000)

stale_credential if {
	rotation_period_s > 0
	is_number(input.subject.token_age_s)
	input.subject.token_age_s > rotation_period_s
}

alerts contains alert("stale_credential", "warning", msg) if {
	stale_credential
	alert_enabled("stale_credential")
	msg := sprintf("subject %q uses a credential %d seconds old, past the rotation period of %d seconds", [input.subject.id, input.subject.token_age_s, rotation_period_s])
}

denials contains msg if {
	stale_credential
	privileged
	msg := sprintf("credential of subject %q is %d seconds old, past the rotation period of %d seconds; rotate it before privileged action %q", [input.subject.id, input.subject.token_age_s, rotation_period_s, input.action])
}

# Expiry is part of authentication, so break-glass cannot override it.
credential_expires_at_set if {
	is_string(input.subject.credential_expires_at)
	input.subject.credential_expires_at != ""
}

auth_denials contains msg if {
	credential_expires_at_set
	parse_time(input.subject.credential_expires_at) <= now_ns
	msg := sprintf("credential of subject %q expired at %s", [input.subject.id, input.subject.credential_expires_at])
}

auth_denials contains msg if {
	credential_expires_at_set
	not parse_time(input.subject.credential_expires_at)
	msg := sprintf("subject.credential_expires_at is not an RFC 3339 time: %q", [input.subject.credential_expires_at])
}
