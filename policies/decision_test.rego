package gatelog_test

import data.gatelog

# Baseline (issue 3), with the default data.yaml.

test_authenticated_subject_may_trigger_pipeline if {
	d := decide(trigger)
	d.allow == true
	d.reasons == ["allowed by role \"pipeline-runner\" (any authenticated subject)"]
	d.alerts == []
	d.obligations == {}
}

test_unverified_subject_may_not_trigger_pipeline if {
	d := decide(object.union(trigger, {"subject": {"verified": false}}))
	d.allow == false
	d.reasons == ["subject is not authenticated: subject.verified is not true"]
}

test_subject_without_id_may_not_trigger_pipeline if {
	d := decide(object.union(trigger, {"subject": {"id": ""}}))
	d.allow == false
	has_reason(d, "subject.id is empty")

	# A missing id and one that is not a string are no id either.
	every request in [json.remove(trigger, ["subject/id"]), object.union(trigger, {"subject": {"id": 42}})] {
		decide(request).reasons == ["subject is not authenticated: subject.id is empty"]
	}
}

test_release_manager_with_mfa_may_deploy_to_production if {
	d := decide(deploy_prod)
	d.allow == true
	d.reasons == ["allowed by role \"release-manager\" (group \"release-managers\")"]
	d.alerts == []
}

test_production_deploy_needs_release_managers_group if {
	request := object.union(deploy_prod, {"subject": {"groups": ["developers"]}})
	d := decide(request)
	d.allow == false
	d.reasons == [`no role of subject "alice" permits action "deploy" on system "github", repository "acme/shop", environment "production", kind "workflow" (roles held: pipeline-runner)`]
}

test_production_deploy_needs_mfa if {
	d := decide(object.union(deploy_prod, {"subject": {"mfa": false}}))
	d.allow == false
	count(d.reasons) == 1
	has_reason(d, "requires multi-factor authentication")
}

test_everything_else_is_denied_by_default if {
	every action in ["secret.read", "config.update", "role.grant", "artifact.publish"] {
		d := decide(object.union(trigger, {"action": action}))
		d.allow == false
		has_reason(d, sprintf("no role of subject \"bob\" permits action %q", [action]))
	}
}

test_missing_context_time_is_denied if {
	d := decide(json.remove(trigger, ["context/time"]))
	d.allow == false
	d.reasons == ["context.time is missing or not an RFC 3339 time; time-dependent rules cannot be checked"]
}

test_malformed_context_time_is_denied if {
	d := decide(object.union(trigger, {"context": {"time": "yesterday"}}))
	d.allow == false
	has_reason(d, "context.time is missing")
}

# The decision is defined and well formed for any input, and a deny always
# says why.
test_decision_is_always_well_formed if {
	every request in [{}, {"subject": null}, {"action": 5, "resource": "x"}, trigger, deploy_prod] {
		d := decide(request)
		is_boolean(d.allow)
		is_array(d.reasons)
		is_array(d.alerts)
		is_object(d.obligations)
		count(d.reasons) > 0
	}
}

test_decision_without_reasons_falls_back_to_deny if {
	d := decide(trigger) with data.gatelog.role_grants as set()
		with data.gatelog.auth_denials as set()
		with data.gatelog.denials as set()
	d == {
		"allow": false,
		"reasons": ["the policy produced no reason for its decision; denied by default"],
		"alerts": [],
		"obligations": {},
	}
}

test_without_configuration_nothing_is_allowed if {
	d := decide(trigger) with data.gatelog_config as {}
	d.allow == false
	has_reason(d, "roles held: none")
}

test_configuration_that_is_not_an_object_is_ignored if {
	d := decide(trigger) with data.gatelog_config as "allow everything"
	d.allow == false
	has_reason(d, "roles held: none")
}

test_request_without_resource_is_described if {
	d := decide({"subject": bob, "action": "artifact.publish", "context": {"time": now}})
	d.allow == false
	has_reason(d, "on an unnamed resource")
}

# The daemon replays logged requests: the same input gives the same decision
# whatever the wall clock says.
test_decision_ignores_the_wall_clock if {
	d1 := decide(deploy_prod)
	d2 := decide(deploy_prod) with time.now_ns as 0
	d1 == d2
}

test_parse_time_is_undefined_for_non_times if {
	gatelog.parse_time("2026-03-04T10:00:00+01:00") == 1772614800000000000
	not gatelog.parse_time("2026-03-04 10:00")
	not gatelog.parse_time(42)
}
