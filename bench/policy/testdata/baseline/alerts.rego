package gatelog

# Signs of privilege escalation: granting a role to oneself, using a
# privileged action for the first time, and privileged actions at odd hours.
# Each raises an alert; gatelog_config.alerts.<code>.deny decides whether it
# also denies. Alerts are logged with the decision either way.

# Self-grant: the grantee is the resource name or resource.attributes.grantee.
self_grant_actions := object.get(setting(["alerts", "self_grant"], {}), "actions", ["role.grant"])

self_grant if {
	subject_id_present
	matches_any(self_grant_actions, input.action)
	grantee_is_subject
}

grantee_is_subject if input.resource.name == input.subject.id

grantee_is_subject if input.resource.attributes.grantee == input.subject.id

alerts contains alert("self_grant", "critical", msg) if {
	self_grant
	alert_enabled("self_grant")
	msg := sprintf("subject %q tried to grant a role to itself (%s)", [input.subject.id, resource_description])
}

denials contains msg if {
	self_grant
	alert_enabled("self_grant")
	alert_denies("self_grant", true)
	msg := sprintf("subject %q may not grant a role to itself", [input.subject.id])
}

# First use: only judged when the daemon sent a history; without one the
# daemon does not track history and every action would look new.
first_privileged_use if {
	privileged
	is_object(input.context.history)
	not input.action in object.get(input.context.history, "privileged_actions_used", [])
}

alerts contains alert("first_privileged_use", "warning", msg) if {
	first_privileged_use
	alert_enabled("first_privileged_use")
	msg := sprintf("subject %q uses privileged action %q for the first time", [input.subject.id, input.action])
}

denials contains msg if {
	first_privileged_use
	alert_enabled("first_privileged_use")
	alert_denies("first_privileged_use", false)
	msg := sprintf("subject %q has never used privileged action %q before; first use needs an operator", [input.subject.id, input.action])
}

# Working hours are evaluated in the configured IANA time zone, so a 09:00
# start means 09:00 where the team works, across daylight saving changes.
# Without a working_hours setting no time is odd.
working_hours := setting(["working_hours"], null)

weekdays := ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]

# clock_minutes turns "HH:MM" into minutes since midnight ("24:00" allowed).
clock_minutes(s) := (to_number(substring(s, 0, 2)) * 60) + to_number(substring(s, 3, 2)) if {
	regex.match(`^([01]\d|2[0-3]):[0-5]\d$|^24:00$`, s)
}

within_working_hours if {
	zone := object.get(working_hours, "time_zone", "UTC")
	time.weekday([now_ns, zone]) in object.get(working_hours, "days", weekdays)
	[hour, minute, _] := time.clock([now_ns, zone])
	clock_minutes(object.get(working_hours, "start", "00:00")) <= (hour * 60) + minute
	(hour * 60) + minute < clock_minutes(object.get(working_hours, "end", "24:00"))
}

off_hours if {
	privileged
	is_object(working_hours)
	now_ns
	not within_working_hours
}

off_hours_description := sprintf("%s %s-%s %s", [
	concat(",", object.get(working_hours, "days", weekdays)),
	object.get(working_hours, "start", "00:00"),
	object.get(working_hours, "end", "24:00"),
	object.get(working_hours, "time_zone", "UTC"),
])

alerts contains alert("off_hours", "high", msg) if {
	off_hours
	alert_enabled("off_hours")
	msg := sprintf("subject %q requested privileged action %q at %s, outside working hours (%s)", [input.subject.id, input.action, input.context.time, off_hours_description])
}

denials contains msg if {
	off_hours
	alert_enabled("off_hours")
	alert_denies("off_hours", false)
	msg := sprintf("privileged action %q is only allowed during working hours (%s); it was requested at %s", [input.action, off_hours_description, input.context.time])
}
