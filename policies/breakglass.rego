package gatelog

# Break-glass: in an emergency a subject whose verified credential carries
# the break_glass claim may override every denial except failed
# authentication. Each use raises a critical alert, must state a reason, and
# obliges a post-incident review; the decision's first branch
# (decision.rego) grants the override. The rules start with the
# claim itself, an equality on the input OPA indexes: without the claim
# none of them runs. With it, each reads the break_glass.enabled setting in
# place: a break_glass_requested rule that the three share cost more than
# the three reads (1,159 against 1,150 allocations, with the override's
# tests as equalities, on Acme's sre-break-glass-at-night.json).

break_glass_reason := trim_space(input.context.break_glass_reason) if {
	is_string(input.context.break_glass_reason)
	trim_space(input.context.break_glass_reason) != ""
}

denials contains "break-glass requires a non-empty context.break_glass_reason" if {
	input.subject.claims.break_glass == true
	object.get(config, ["break_glass", "enabled"], true) == true
	not break_glass_reason
}

break_glass_reasons := array.concat(
	[sprintf("allowed by break-glass override for subject %q: %s", [input.subject.id, break_glass_reason])],
	sort({sprintf("overridden: %s", [d]) | some d in denials}),
)

alerts contains {"severity": severity, "code": "break_glass", "message": msg} if {
	input.subject.claims.break_glass == true
	object.get(config, ["break_glass", "enabled"], true) == true
	severity := object.get(config, ["alerts", "break_glass", "severity"], "critical")
	msg := sprintf("subject %q used break-glass for action %q on %s; reason: %s", [input.subject.id, input.action, resource_description, stated_break_glass_reason])
}

stated_break_glass_reason := break_glass_reason if {
	break_glass_reason
} else := "(none given)"
