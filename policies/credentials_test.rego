package gatelog_test

stale := 7776001

test_stale_credential_alerts_on_unprivileged_action if {
	d := decide(object.union(trigger, {"subject": {"token_age_s": stale}}))
	d.allow == true
	d.alerts == [{
		"severity": "warning",
		"code": "stale_credential",
		"message": "subject \"bob\" uses a credential 7776001 seconds old, past the rotation period of 7776000 seconds",
	}]
}

test_stale_credential_is_denied_for_privileged_action if {
	d := decide(object.union(deploy_prod, {"subject": {"token_age_s": stale}}))
	d.allow == false
	d.reasons == [`credential of subject "alice" is 7776001 seconds old, past the rotation period of 7776000 seconds; rotate it before privileged action "deploy"`]
	has_alert(d, "stale_credential", "warning")
}

test_credential_at_rotation_period_is_fresh if {
	d := decide(object.union(deploy_prod, {"subject": {"token_age_s": 7776000}}))
	d.allow == true
	no_alert(d, "stale_credential")
}

test_rotation_period_is_configurable if {
	d := decide(object.union(deploy_prod, {"subject": {"token_age_s": 4000}})) with data.gatelog_config.credentials.rotation_period_s as 3600
	d.allow == false
	has_alert(d, "stale_credential", "warning")
}

test_rotation_check_can_be_turned_off if {
	d := decide(object.union(deploy_prod, {"subject": {"token_age_s": stale}})) with data.gatelog_config.credentials.rotation_period_s as 0
	d.allow == true
	d.alerts == []
}

test_stale_credential_alert_can_be_turned_off if {
	d := decide(object.union(trigger, {"subject": {"token_age_s": stale}})) with data.gatelog_config.alerts.stale_credential.enabled as false
	d.allow == true
	d.alerts == []
}

test_stale_credential_alert_severity_is_configurable if {
	d := decide(object.union(trigger, {"subject": {"token_age_s": stale}})) with data.gatelog_config.alerts.stale_credential.severity as "high"
	has_alert(d, "stale_credential", "high")
}

test_expired_credential_is_denied if {
	d := decide(object.union(trigger, {"subject": {"credential_expires_at": "2026-03-04T09:59:59Z"}}))
	d.allow == false
	d.reasons == ["credential of subject \"bob\" expired at 2026-03-04T09:59:59Z"]
}

test_credential_expiring_at_decision_time_is_expired if {
	d := decide(object.union(trigger, {"subject": {"credential_expires_at": now}}))
	d.allow == false
}

test_unexpired_credential_is_accepted if {
	d := decide(object.union(trigger, {"subject": {"credential_expires_at": "2026-03-04T10:00:01Z"}}))
	d.allow == true
}

test_unreadable_expiry_is_denied if {
	d := decide(object.union(trigger, {"subject": {"credential_expires_at": "next week"}}))
	d.allow == false
	d.reasons == ["subject.credential_expires_at is not an RFC 3339 time: \"next week\""]
}
