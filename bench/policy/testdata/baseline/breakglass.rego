package gatelog

# Break-glass: in an emergency a subject whose verified credential carries
# the break_glass claim may override every denial except failed
# authentication. Each use raises a critical alert, must state a reason, and
# obliges a post-incident review.

break_glass_requested if {
	setting(["break_glass", "enabled"], true) == true
	input.subject.claims.break_glass == true
}

break_glass_reason := trim_space(input.context.break_glass_reason) if {
	is_string(input.context.break_glass_reason)
	trim_space(input.context.break_glass_reason) != ""
}

stated_break_glass_reason := break_glass_reason if {
	break_glass_reason
} else := "(none given)"

denials contains "break-glass requires a non-empty context.break_glass_reason" if {
	break_glass_requested
	not break_glass_reason
}

break_glass_override if {
	break_glass_requested
	break_glass_reason
	count(auth_denials) == 0
}

break_glass_reasons := array.concat(
	[sprintf("allowed by break-glass override for subject %q: %s", [input.subject.id, break_glass_reason])],
	sort({sprintf("overridden: %s", [d]) | some d in denials}),
)

alerts contains alert("break_glass", "critical", msg) if {
	break_glass_requested
	msg := sprintf("subject %q used break-glass for action %q on %s; reason: %s", [input.subject.id, input.action, resource_description, stated_break_glass_reason])
}

obligations["post_incident_review"] := {
	"subject": input.subject.id,
	"reason": break_glass_reason,
} if {
	break_glass_override
}
