package gatelog_test

import data.gatelog

default_privileged_actions := ["config.update", "secret.read", "role.grant", "policy.update", "key.rotate"]

test_privileged_action_with_mfa_and_recent_login_is_allowed if {
	every action in default_privileged_actions {
		d := decide(privileged_request(action)) with data.gatelog_config.rbac.subject_roles as {"alice": ["operator"]}
			with data.gatelog_config.rbac.roles.operator as operator_role
		d.allow == true
		d.reasons == ["allowed by role \"operator\" (subject \"alice\")"]
	}
}

test_privileged_action_without_mfa_is_denied if {
	every action in default_privileged_actions {
		request := object.union(privileged_request(action), {"subject": {"mfa": false}})
		d := decide(request) with data.gatelog_config.rbac.subject_roles as {"alice": ["operator"]}
			with data.gatelog_config.rbac.roles.operator as operator_role
		d.allow == false
		d.reasons == [sprintf(`privileged action %q on system "github", repository "acme/shop", kind "config", name "service-x" requires multi-factor authentication, and subject "alice" did not use it (subject.mfa is not true)`, [action])]
	}
}

test_privileged_action_with_old_login_is_denied if {
	request := object.union(deploy_prod, {"subject": {"auth_time": "2026-03-04T08:30:00Z"}})
	d := decide(request) with data.gatelog_config.mfa.max_auth_age_s as 3600
	d.allow == false
	d.reasons == [`privileged action "deploy" requires a login within the last 3600 seconds; subject "alice" last authenticated at 2026-03-04T08:30:00Z, 5400 seconds before the request`]
}

test_login_exactly_at_max_age_is_accepted if {
	request := object.union(deploy_prod, {"subject": {"auth_time": "2026-03-04T09:00:00Z"}})
	d := decide(request) with data.gatelog_config.mfa.max_auth_age_s as 3600
	d.allow == true
}

test_privileged_action_without_auth_time_is_denied_when_age_is_checked if {
	d := decide(json.remove(deploy_prod, ["subject/auth_time"])) with data.gatelog_config.mfa.max_auth_age_s as 3600
	d.allow == false
	d.reasons == [`privileged action "deploy" requires subject.auth_time to check the login is at most 3600 seconds old`]
}

# The default data.yaml leaves the login age unchecked (the daemon stamps
# context.time with its own clock, and not every credential has auth_time).
test_default_configuration_does_not_check_login_age if {
	old := object.union(deploy_prod, {"subject": {"auth_time": "2025-01-01T00:00:00Z"}})
	every request in [old, json.remove(deploy_prod, ["subject/auth_time"])] {
		d := decide(request)
		d.allow == true
	}
}

test_max_auth_age_applies_only_to_privileged_actions if {
	d := decide(trigger) with data.gatelog_config.mfa.max_auth_age_s as 60
	d.allow == true
}

test_mfa_requirement_can_be_turned_off if {
	request := json.remove(object.union(deploy_prod, {"subject": {"mfa": false}}), ["subject/auth_time"])
	d := decide(request) with data.gatelog_config.mfa.required as false
		with data.gatelog_config.mfa.max_auth_age_s as 3600
	d.allow == true
}

test_unprivileged_actions_need_no_mfa if {
	d := decide(trigger)
	d.allow == true
	not gatelog.privileged with input as trigger
}

test_deploy_to_unprotected_environment_needs_no_mfa if {
	d := decide(object.union(deploy_staging, {"subject": {"mfa": false}}))
	d.allow == true
}

test_privileged_actions_are_configurable if {
	d := decide(trigger) with data.gatelog_config.privileged.actions as ["pipeline.*"]
	d.allow == false
	has_reason(d, `privileged action "pipeline.trigger"`)
}
