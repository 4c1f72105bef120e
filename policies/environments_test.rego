package gatelog_test

from_ref(request, ref) := object.union(request, {"resource": {"ref": ref}})

test_production_deploy_from_unprotected_ref_is_denied if {
	d := decide(from_ref(deploy_prod, "refs/heads/feature-x"))
	d.allow == false
	d.reasons == [`deploy to protected environment "production" is only allowed from protected refs (refs/heads/main, refs/tags/v*), not from ref "refs/heads/feature-x"`]
}

test_production_deploy_from_release_tag_is_allowed if {
	d := decide(from_ref(deploy_prod, "refs/tags/v1.4.2"))
	d.allow == true
}

test_production_deploy_without_ref_is_denied if {
	d := decide(json.remove(deploy_prod, ["resource/ref"]))
	d.allow == false
	has_reason(d, "not from no ref")
}

test_unprotected_environment_accepts_any_ref if {
	d := decide(deploy_staging)
	d.allow == true
}

test_protected_environments_are_configurable if {
	request := object.union(deploy_prod, {"resource": {"environment": "prod-eu", "ref": "refs/heads/feature-x"}, "subject": {"mfa": false}})
	d := decide(request) with data.gatelog_config.environments.protected as ["prod-*"]
	d.allow == false
	has_reason(d, "only allowed from protected refs")
	has_reason(d, "requires multi-factor authentication")
	d2 := decide(deploy_prod) with data.gatelog_config.environments.protected as ["prod-*"]
	d2.allow == true
}

test_protected_refs_are_configurable if {
	d := decide(from_ref(deploy_prod, "refs/heads/release/2026.03")) with data.gatelog_config.environments.protected_refs as ["refs/heads/release/*"]
	d.allow == true
	d2 := decide(deploy_prod) with data.gatelog_config.environments.protected_refs as ["refs/heads/release/*"]
	d2.allow == false
}

test_deploy_actions_are_configurable if {
	request := object.union(deploy_prod, {"action": "release.promote"})
	d := decide(request) with data.gatelog_config.environments.deploy_actions as ["release.*"]
		with data.gatelog_config.rbac.roles["release-manager"].permissions as [{"actions": ["release.promote"]}]
	d.allow == true
	d2 := decide(from_ref(request, "refs/heads/feature-x")) with data.gatelog_config.environments.deploy_actions as ["release.*"]
		with data.gatelog_config.rbac.roles["release-manager"].permissions as [{"actions": ["release.promote"]}]
	d2.allow == false
}

# Freeze windows.

year_end := {
	"name": "year-end freeze",
	"start": "2026-03-01T00:00:00Z",
	"end": "2026-03-05T00:00:00Z",
	"environments": ["production", "staging"],
}

test_deploy_during_freeze_window_is_denied_with_its_name if {
	every request in [deploy_prod, deploy_staging] {
		d := decide(request) with data.gatelog_config.environments.freeze_windows as [year_end]
		d.allow == false
		d.reasons == [sprintf(`deploy to environment %q is blocked by freeze window "year-end freeze" (2026-03-01T00:00:00Z to 2026-03-05T00:00:00Z)`, [request.resource.environment])]
	}
}

test_freeze_window_is_start_inclusive_end_exclusive if {
	at_start := object.union(deploy_prod, {"context": {"time": "2026-03-01T00:00:00Z"}, "subject": {"auth_time": "2026-03-01T00:00:00Z"}})
	at_end := object.union(deploy_prod, {"context": {"time": "2026-03-05T00:00:00Z"}, "subject": {"auth_time": "2026-03-05T00:00:00Z"}})
	d1 := decide(at_start) with data.gatelog_config.environments.freeze_windows as [year_end]
	d1.allow == false
	d2 := decide(at_end) with data.gatelog_config.environments.freeze_windows as [year_end]
	d2.allow == true
}

test_freeze_window_outside_its_time_allows if {
	later := object.union(year_end, {"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z"})
	d := decide(deploy_prod) with data.gatelog_config.environments.freeze_windows as [later]
	d.allow == true
}

test_freeze_window_of_other_environment_allows if {
	d := decide(deploy_prod) with data.gatelog_config.environments.freeze_windows as [object.union(year_end, {"environments": ["dev-*"]})]
	d.allow == true
}

test_freeze_window_without_environments_freezes_all if {
	d := decide(deploy_staging) with data.gatelog_config.environments.freeze_windows as [object.remove(year_end, ["environments"])]
	d.allow == false
	has_reason(d, "year-end freeze")
}

test_freeze_window_does_not_stop_other_actions if {
	d := decide(trigger) with data.gatelog_config.environments.freeze_windows as [object.remove(year_end, ["environments"])]
	d.allow == true
}

test_unreadable_freeze_window_denies_deploys if {
	d := decide(deploy_prod) with data.gatelog_config.environments.freeze_windows as [object.union(year_end, {"end": "soon"})]
	d.allow == false
	d.reasons == [`freeze window "year-end freeze" has a start or end that is not an RFC 3339 time; deploys it covers are denied until it is fixed`]
}
