package gatelog_test

grant_to(grantee) := object.union(privileged_request("role.grant"), {"resource": {"kind": "role-binding", "name": grantee}})

grant_via_attribute(grantee) := object.union(privileged_request("role.grant"), {"resource": {
	"kind": "role-binding",
	"name": "release-managers",
	"attributes": {"grantee": grantee},
}})

# Self-grant.

test_granting_a_role_to_oneself_is_denied_with_critical_alert if {
	every request in [grant_to("alice"), grant_via_attribute("alice")] {
		d := decide(request) with data.gatelog_config.rbac.subject_roles as {"alice": ["operator"]}
			with data.gatelog_config.rbac.roles.operator as operator_role
		d.allow == false
		d.reasons == ["subject \"alice\" may not grant a role to itself"]
		has_alert(d, "self_grant", "critical")
	}
}

test_self_grant_can_alert_without_denying if {
	d := decide(grant_to("alice")) with data.gatelog_config.rbac.subject_roles as {"alice": ["operator"]}
		with data.gatelog_config.rbac.roles.operator as operator_role
		with data.gatelog_config.alerts.self_grant.deny as false
	d.allow == true
	has_alert(d, "self_grant", "critical")
}

test_granting_a_role_to_someone_else_raises_no_alert if {
	every request in [grant_to("bob"), grant_via_attribute("bob")] {
		d := decide(request) with data.gatelog_config.rbac.subject_roles as {"alice": ["operator"]}
			with data.gatelog_config.rbac.roles.operator as operator_role
		d.allow == true
		d.alerts == []
	}
}

test_self_grant_actions_are_configurable if {
	request := object.union(grant_to("alice"), {"action": "team.add-member"})
	d := decide(request) with data.gatelog_config.rbac.subject_roles as {"alice": ["operator"]}
		with data.gatelog_config.rbac.roles.operator as operator_role
		with data.gatelog_config.alerts.self_grant.actions as ["team.add-member"]
	d.allow == false
	has_alert(d, "self_grant", "critical")
}

# First use of a privileged action.

test_first_privileged_use_alerts if {
	request := object.union(deploy_prod, {"context": {"history": {"privileged_actions_used": ["secret.read"]}}})
	d := decide(request)
	d.allow == true
	d.alerts == [{
		"severity": "warning",
		"code": "first_privileged_use",
		"message": "subject \"alice\" uses privileged action \"deploy\" for the first time",
	}]
}

test_first_privileged_use_with_empty_history_alerts if {
	d := decide(object.union(deploy_prod, {"context": {"history": {}}}))
	has_alert(d, "first_privileged_use", "warning")
}

test_first_privileged_use_can_deny if {
	request := object.union(deploy_prod, {"context": {"history": {}}})
	d := decide(request) with data.gatelog_config.alerts.first_privileged_use.deny as true
	d.allow == false
	d.reasons == ["subject \"alice\" has never used privileged action \"deploy\" before; first use needs an operator"]
}

test_repeated_privileged_use_raises_no_alert if {
	d := decide(object.union(deploy_prod, {"context": {"history": {"privileged_actions_used": ["deploy"]}}}))
	d.allow == true
	d.alerts == []
}

test_without_history_first_use_is_not_judged if {
	d := decide(deploy_prod)
	no_alert(d, "first_privileged_use")
}

test_unprivileged_first_use_raises_no_alert if {
	d := decide(object.union(trigger, {"context": {"history": {}}}))
	d.alerts == []
}

# Working hours.

at(request, t) := object.union(request, {"context": {"time": t}, "subject": {"auth_time": t}})

test_privileged_action_at_night_alerts if {
	d := decide(at(deploy_prod, "2026-03-04T22:00:00Z"))
	d.allow == true
	d.alerts == [{
		"severity": "high",
		"code": "off_hours",
		"message": "subject \"alice\" requested privileged action \"deploy\" at 2026-03-04T22:00:00Z, outside working hours (Monday,Tuesday,Wednesday,Thursday,Friday 07:00-19:00 UTC)",
	}]
}

test_privileged_action_on_weekend_alerts if {
	d := decide(at(deploy_prod, "2026-03-07T10:00:00Z"))
	has_alert(d, "off_hours", "high")
}

test_working_hours_start_is_inclusive_and_end_exclusive if {
	no_alert(decide(at(deploy_prod, "2026-03-04T07:00:00Z")), "off_hours")
	no_alert(decide(at(deploy_prod, "2026-03-04T18:59:59Z")), "off_hours")
	has_alert(decide(at(deploy_prod, "2026-03-04T06:59:59Z")), "off_hours", "high")
	has_alert(decide(at(deploy_prod, "2026-03-04T19:00:00Z")), "off_hours", "high")
}

test_off_hours_can_deny if {
	d := decide(at(deploy_prod, "2026-03-04T22:00:00Z")) with data.gatelog_config.alerts.off_hours.deny as true
	d.allow == false
	d.reasons == [`privileged action "deploy" is only allowed during working hours (Monday,Tuesday,Wednesday,Thursday,Friday 07:00-19:00 UTC); it was requested at 2026-03-04T22:00:00Z`]
}

test_unprivileged_action_at_night_raises_no_alert if {
	d := decide(at(trigger, "2026-03-04T23:00:00Z"))
	d.allow == true
	d.alerts == []
}

test_off_hours_alert_can_be_turned_off if {
	d := decide(at(deploy_prod, "2026-03-04T22:00:00Z")) with data.gatelog_config.alerts.off_hours.enabled as false
	d.alerts == []
}

test_without_working_hours_no_time_is_odd if {
	d := decide(at(deploy_prod, "2026-03-07T03:00:00Z")) with data.gatelog_config.working_hours as null
	d.alerts == []
}

new_york := {"time_zone": "America/New_York", "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"], "start": "09:00", "end": "17:00"}

# 10:00 UTC is 05:00 in New York; 15:00 UTC is 10:00 there.
test_working_hours_use_the_configured_time_zone if {
	has_alert(decide(at(deploy_prod, "2026-03-04T10:00:00Z")), "off_hours", "high") with data.gatelog_config.working_hours as new_york
	no_alert(decide(at(deploy_prod, "2026-03-04T15:00:00Z")), "off_hours") with data.gatelog_config.working_hours as new_york
}

# New York moves to daylight saving time on 2026-03-08: 13:30 UTC is 08:30
# on the Friday before and 09:30 on the Monday after.
test_working_hours_follow_daylight_saving_time if {
	has_alert(decide(at(deploy_prod, "2026-03-06T13:30:00Z")), "off_hours", "high") with data.gatelog_config.working_hours as new_york
	no_alert(decide(at(deploy_prod, "2026-03-09T13:30:00Z")), "off_hours") with data.gatelog_config.working_hours as new_york
}

# A Friday 23:30 UTC is already Saturday in Tokyo.
test_working_days_are_taken_in_the_time_zone if {
	tokyo := {"time_zone": "Asia/Tokyo", "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"], "start": "00:00", "end": "24:00"}
	has_alert(decide(at(deploy_prod, "2026-03-06T23:30:00Z")), "off_hours", "high") with data.gatelog_config.working_hours as tokyo
	no_alert(decide(at(deploy_prod, "2026-03-06T14:30:00Z")), "off_hours") with data.gatelog_config.working_hours as tokyo
}

# Bounds are "HH:MM" ("24:00" allowed), start inclusive; an unreadable
# bound means no time is within working hours, so privileged actions alert.
test_working_hours_bounds_are_hh_mm if {
	no_alert(decide(at(deploy_prod, "2026-03-04T23:59:00Z")), "off_hours") with data.gatelog_config.working_hours as {"start": "00:00", "end": "24:00"}
	no_alert(decide(at(deploy_prod, "2026-03-04T08:30:00Z")), "off_hours") with data.gatelog_config.working_hours as {"start": "08:30", "end": "17:00"}
	has_alert(decide(at(deploy_prod, "2026-03-04T10:00:00Z")), "off_hours", "high") with data.gatelog_config.working_hours as {"start": "8:30", "end": "17:00"}
	has_alert(decide(at(deploy_prod, "2026-03-04T10:00:00Z")), "off_hours", "high") with data.gatelog_config.working_hours as {"start": "08:30", "end": "24:30"}
}
