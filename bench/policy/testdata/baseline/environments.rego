package gatelog

# Protected environments and branches. Only code from reviewed refs may
# reach a protected environment, and nothing is deployed anywhere during a
# freeze window (release freezes, incidents, holidays).

deploy_action if matches_any(setting(["environments", "deploy_actions"], ["deploy"]), input.action)

protected_environment if {
	resource_field("environment") != ""
	matches_any(setting(["environments", "protected"], ["production"]), resource_field("environment"))
}

deploy_to_protected if {
	deploy_action
	protected_environment
}

protected_refs := setting(["environments", "protected_refs"], ["refs/heads/main", "refs/tags/v*"])

ref_description := sprintf("ref %q", [resource_field("ref")]) if {
	resource_field("ref") != ""
} else := "no ref"

denials contains msg if {
	deploy_to_protected
	not matches_any(protected_refs, resource_field("ref"))
	msg := sprintf("deploy to protected environment %q is only allowed from protected refs (%s), not from %s", [resource_field("environment"), concat(", ", protected_refs), ref_description])
}

# Freeze windows apply to every deploy into a matching environment; a window
# without environments freezes all of them. The window is [start, end).
freeze_windows := setting(["environments", "freeze_windows"], [])

freeze_applies(window) if {
	deploy_action
	matches_any(object.get(window, "environments", ["*"]), resource_field("environment"))
}

denials contains msg if {
	some window in freeze_windows
	freeze_applies(window)
	parse_time(window.start) <= now_ns
	now_ns < parse_time(window.end)
	msg := sprintf("deploy to environment %q is blocked by freeze window %q (%s to %s)", [resource_field("environment"), window.name, window.start, window.end])
}

# A window whose times cannot be read might be in force: fail closed.
denials contains msg if {
	some window in freeze_windows
	freeze_applies(window)
	not valid_window(window)
	msg := sprintf("freeze window %q has a start or end that is not an RFC 3339 time; deploys it covers are denied until it is fixed", [object.get(window, "name", "(unnamed)")])
}

valid_window(window) if {
	parse_time(window.start)
	parse_time(window.end)
}
