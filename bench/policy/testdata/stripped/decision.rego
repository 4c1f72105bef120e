# A deliberately incomplete library: how few allocations a decision can
# cost when most of the bundled library's rules are left out. It keeps
# authentication, the decision time, protected refs, MFA, the stale
# credential denial, group roles (actions and environments only) and the
# off-hours alert; it has no freeze windows, self-grant, first privileged
# use, separation of duties, break-glass, credential expiry, subject or
# default roles, configurable severities or defaults for missing settings.
# It is a measurement, not a policy: nothing loads it but the command in
# bench/policy/README.md.
package gatelog

decision := {"allow": allow, "reasons": reasons, "alerts": [a | some a in alerts], "obligations": {}}

default allow := false

allow if count(denials) == 0

now_ns := time.parse_rfc3339_ns(input.context.time) if regex.match(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`, input.context.time)

denials contains "unauth" if not input.subject.verified == true

denials contains "noid" if input.subject.id == ""

denials contains "time" if not now_ns

denials contains "ref" if {
	privileged_deploy
	not ref_ok
}

ref_ok if {
	some p in data.gatelog_config.environments.protected_refs
	glob.match(p, null, input.resource.ref)
}

privileged_deploy if {
	some a in data.gatelog_config.environments.deploy_actions
	glob.match(a, null, input.action)
	some e in data.gatelog_config.environments.protected
	glob.match(e, null, input.resource.environment)
}

denials contains "mfa" if {
	privileged_deploy
	not input.subject.mfa == true
}

denials contains "stale" if {
	input.subject.token_age_s > data.gatelog_config.credentials.rotation_period_s
}

denials contains "norole" if count(granting) == 0

granting contains [role, g] if {
	some g in input.subject.groups
	some role in data.gatelog_config.rbac.group_roles[g]
	some p in data.gatelog_config.rbac.roles[role].permissions
	some a in p.actions
	glob.match(a, null, input.action)
	some e in p.environments
	glob.match(e, null, input.resource.environment)
}

alerts contains {"code": "off_hours", "severity": "high", "message": "m"} if {
	privileged_deploy
	not within
}

within if {
	wh := data.gatelog_config.working_hours
	time.weekday([now_ns, wh.time_zone]) in wh.days
	[h, m, _] := time.clock([now_ns, wh.time_zone])
	t := sprintf("%02d:%02d", [h, m])
	wh.start <= t
	t < wh.end
}

reasons := [sprintf("allowed by role %q (group %q)", [r, g]) | some [r, g] in granting] if allow

else := sort(denials)
