package gatelog

# Signs of privilege escalation: granting a role to oneself, using a
# privileged action for the first time, and privileged actions at odd hours.
# Each raises an alert; gatelog_config.alerts.<code>.deny decides whether it
# also denies. Alerts are logged with the decision either way. Each rule
# tests the request before it reads a setting: most requests raise no alert.

# Self-grant: the grantee is the resource name or resource.attributes.grantee.
# The alert and the denial each test both in place, in a body of their own,
# rather than read a self_grant rule: nearly every request fails the first
# test of all four bodies, which costs less than evaluating a rule that says
# so (the four bodies: 560 against 568 allocations on deploy-prod.json).
alerts contains {"severity": severity, "code": "self_grant", "message": msg} if {
	input.resource.name == input.subject.id
	self_grant_action == true
	severity := object.get(config, ["alerts", "self_grant", "severity"], "critical")
	msg := sprintf("subject %q tried to grant a role to itself (%s)", [input.subject.id, resource_description])
}

alerts contains {"severity": severity, "code": "self_grant", "message": msg} if {
	input.resource.attributes.grantee == input.subject.id
	self_grant_action == true
	severity := object.get(config, ["alerts", "self_grant", "severity"], "critical")
	msg := sprintf("subject %q tried to grant a role to itself (%s)", [input.subject.id, resource_description])
}

denials contains msg if {
	input.resource.name == input.subject.id
	self_grant_action == true
	object.get(config, ["alerts", "self_grant", "deny"], true) == true
	msg := sprintf("subject %q may not grant a role to itself", [input.subject.id])
}

denials contains msg if {
	input.resource.attributes.grantee == input.subject.id
	self_grant_action == true
	object.get(config, ["alerts", "self_grant", "deny"], true) == true
	msg := sprintf("subject %q may not grant a role to itself", [input.subject.id])
}

# self_grant_action is only evaluated for a request that names its own
# subject, so it may cost a rule.
self_grant_action if {
	is_string(input.subject.id)
	input.subject.id != ""
	object.get(config, ["alerts", "self_grant", "enabled"], true) == true
	matches_any(object.get(config, ["alerts", "self_grant", "actions"], ["role.grant"]), input.action)
}

# First use: only judged when the daemon sent a history; without one the
# daemon does not track history and every action would look new. The alert
# and the denial each test the whole condition rather than share a helper
# rule: most requests carry no history and fail the first test, and a rule
# evaluated costs more than that test twice.
alerts contains {"severity": severity, "code": "first_privileged_use", "message": msg} if {
	is_object(input.context.history)
	privileged == true
	not input.action in object.get(input.context.history, "privileged_actions_used", [])
	object.get(config, ["alerts", "first_privileged_use", "enabled"], true) == true
	severity := object.get(config, ["alerts", "first_privileged_use", "severity"], "warning")
	msg := sprintf("subject %q uses privileged action %q for the first time", [input.subject.id, input.action])
}

denials contains msg if {
	is_object(input.context.history)
	privileged == true
	not input.action in object.get(input.context.history, "privileged_actions_used", [])
	object.get(config, ["alerts", "first_privileged_use", "enabled"], true) == true
	config.alerts.first_privileged_use.deny == true
	msg := sprintf("subject %q has never used privileged action %q before; first use needs an operator", [input.subject.id, input.action])
}

# Working hours are evaluated in the configured IANA time zone, so a 09:00
# start means 09:00 where the team works, across daylight saving changes.
# Without a working_hours setting no time is odd.
#
# Working hours are "HH:MM" ("24:00" allowed). Zero-padded times of day
# compare as strings as they do as numbers, so the request's local time is
# formatted the same way (one time.format, rather than time.clock and a
# sprintf) instead of every bound converted to minutes. The weekday is
# tested first, with time.weekday: an unknown time zone fails there.
#
# off_hours says whether the request's time is outside working hours; only
# privileged actions count, and the alert and the denial test privileged
# before they read off_hours, so most requests never evaluate the rule
# (10 allocations fewer for them, 2 more for privileged ones).
off_hours if {
	hours := config.working_hours
	is_object(hours)
	object.get(config, ["alerts", "off_hours", "enabled"], true) == true
	now_ns
	not within_working_hours(hours)
}

within_working_hours(hours) if {
	zone := object.get(hours, "time_zone", "UTC")
	time.weekday([now_ns, zone]) in object.get(hours, "days", ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"])
	local_time := time.format([now_ns, zone, "15:04"])
	start := object.get(hours, "start", "00:00")
	regex.match(`^([01]\d|2[0-3]):[0-5]\d$|^24:00$`, start)
	start <= local_time
	end := object.get(hours, "end", "24:00")
	regex.match(`^([01]\d|2[0-3]):[0-5]\d$|^24:00$`, end)
	local_time < end
}

off_hours_description := sprintf("%s %s-%s %s", [
	concat(",", object.get(hours, "days", ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"])),
	object.get(hours, "start", "00:00"),
	object.get(hours, "end", "24:00"),
	object.get(hours, "time_zone", "UTC"),
]) if {
	hours := config.working_hours
}

alerts contains {"severity": severity, "code": "off_hours", "message": msg} if {
	privileged == true
	off_hours == true
	severity := object.get(config, ["alerts", "off_hours", "severity"], "high")
	msg := sprintf("subject %q requested privileged action %q at %s, outside working hours (%s)", [input.subject.id, input.action, input.context.time, off_hours_description])
}

denials contains msg if {
	privileged == true
	off_hours == true
	config.alerts.off_hours.deny == true
	msg := sprintf("privileged action %q is only allowed during working hours (%s); it was requested at %s", [input.action, off_hours_description, input.context.time])
}
