package gatelog

# Protected environments and branches. Only code from reviewed refs may
# reach a protected environment, and nothing is deployed anywhere during a
# freeze window (release freezes, incidents, holidays).

# deploy_action is only read by the freeze window rules, which first find
# a window; deploy_to_protected tests the action in place.
deploy_action if {
	is_string(input.action)
	some pattern in object.get(config, ["environments", "deploy_actions"], ["deploy"])
	glob.match(pattern, null, input.action)
}

# deploy_to_protected is read by the ref, separation-of-duties and MFA
# rules: one rule, so the patterns are matched once per decision. It tests
# the deploy action in place rather than through deploy_action, which most
# decisions then never evaluate, and reads the environment from the input
# (the rule fails when it is absent or not a string). The rules below read
# the resource's fields from the input too: where deploy_to_protected holds,
# input.resource is an object with an environment.
deploy_to_protected if {
	is_string(input.action)
	some action_pattern in object.get(config, ["environments", "deploy_actions"], ["deploy"])
	glob.match(action_pattern, null, input.action)
	environment := input.resource.environment
	is_string(environment)
	environment != ""
	some pattern in object.get(config, ["environments", "protected"], ["production"])
	glob.match(pattern, null, environment)
}

denials contains msg if {
	deploy_to_protected == true
	protected_refs := object.get(config, ["environments", "protected_refs"], ["refs/heads/main", "refs/tags/v*"])
	ref := object.get(input.resource, "ref", "")
	not matches_any(protected_refs, ref)
	msg := sprintf("deploy to protected environment %q is only allowed from protected refs (%s), not from %s", [input.resource.environment, concat(", ", protected_refs), ref_description(ref)])
}

ref_description("") := "no ref"

ref_description(ref) := sprintf("ref %q", [ref]) if ref != ""

# Freeze windows apply to every deploy into a matching environment; a window
# without environments freezes all of them. The window is [start, end). A
# window whose times cannot be read might be in force: fail closed. One body
# finds the windows that cover the request and freeze_denial says why each
# denies, if it does: two bodies would each find them again.
denials contains msg if {
	some window in config.environments.freeze_windows
	deploy_action == true
	environment := object.get(input, ["resource", "environment"], "")
	matches_any(object.get(window, "environments", ["*"]), environment)
	msg := freeze_denial(window, environment)
}

freeze_denial(window, environment) := sprintf("deploy to environment %q is blocked by freeze window %q (%s to %s)", [environment, window.name, window.start, window.end]) if {
	parse_time(window.start) <= now_ns
	now_ns < parse_time(window.end)
} else := sprintf("freeze window %q has a start or end that is not an RFC 3339 time; deploys it covers are denied until it is fixed", [object.get(window, "name", "(unnamed)")]) if {
	not valid_window(window)
}

valid_window(window) if {
	parse_time(window.start)
	parse_time(window.end)
}
