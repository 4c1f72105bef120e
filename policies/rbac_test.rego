package gatelog_test

import data.gatelog

rbac := {
	"authenticated_roles": [],
	"group_roles": {"platform": ["namespace-admin"], "ghosts": ["undefined-role"]},
	"subject_roles": {"carol": ["repo-deployer"]},
	"roles": {
		"namespace-admin": {"permissions": [{
			"actions": ["step.run", "pipeline.*"],
			"systems": ["tekton"],
			"namespaces": ["team-*"],
		}]},
		"repo-deployer": {"permissions": [{
			"actions": ["deploy"],
			"repositories": ["acme/*"],
			"environments": ["staging", "dev-*"],
		}]},
	},
}

platform_step := object.union(trigger, {
	"subject": {"groups": ["platform"]},
	"action": "step.run",
	"resource": {"namespace": "team-payments"},
})

carol_deploy := object.union(deploy_staging, {"subject": {"id": "carol", "groups": []}})

test_group_role_allows_matching_action_system_and_namespace if {
	every action in ["step.run", "pipeline.trigger", "pipeline.cancel"] {
		d := decide(object.union(platform_step, {"action": action})) with data.gatelog_config.rbac as rbac
		d.allow == true
		d.reasons == ["allowed by role \"namespace-admin\" (group \"platform\")"]
	}
}

test_group_role_denies_other_namespace if {
	d := decide(object.union(platform_step, {"resource": {"namespace": "kube-system"}})) with data.gatelog_config.rbac as rbac
	d.allow == false
	has_reason(d, "(roles held: namespace-admin)")
}

test_group_role_denies_other_system if {
	d := decide(object.union(platform_step, {"resource": {"system": "jenkins"}})) with data.gatelog_config.rbac as rbac
	d.allow == false
	has_reason(d, `permits action "step.run" on system "jenkins"`)
}

test_group_role_denies_unlisted_action if {
	d := decide(object.union(platform_step, {"action": "deploy"})) with data.gatelog_config.rbac as rbac
	d.allow == false
}

test_subject_role_allows_matching_repository_and_environment if {
	every env in ["staging", "dev-eu"] {
		d := decide(object.union(carol_deploy, {"resource": {"environment": env}})) with data.gatelog_config.rbac as rbac
		d.allow == true
		d.reasons == ["allowed by role \"repo-deployer\" (subject \"carol\")"]
	}
}

test_subject_role_denies_other_repository if {
	d := decide(object.union(carol_deploy, {"resource": {"repository": "other/shop"}})) with data.gatelog_config.rbac as rbac
	d.allow == false
	has_reason(d, "(roles held: repo-deployer)")
}

test_subject_role_denies_other_environment if {
	d := decide(object.union(carol_deploy, {"resource": {"environment": "qa"}})) with data.gatelog_config.rbac as rbac
	d.allow == false
}

test_subject_role_is_not_given_to_others if {
	d := decide(object.union(carol_deploy, {"subject": {"id": "mallory"}})) with data.gatelog_config.rbac as rbac
	d.allow == false
	has_reason(d, "(roles held: none)")
}

test_undefined_role_grants_nothing if {
	d := decide(object.union(platform_step, {"subject": {"groups": ["ghosts"]}})) with data.gatelog_config.rbac as rbac
	d.allow == false
	has_reason(d, "(roles held: undefined-role)")
}

test_unauthenticated_subject_holds_no_roles if {
	request := object.union(platform_step, {"subject": {"verified": false}})
	bindings := gatelog.role_bindings with input as request with data.gatelog_config.rbac as rbac
	bindings == set()
	d := decide(request) with data.gatelog_config.rbac as rbac
	d.allow == false
	d.reasons == ["subject is not authenticated: subject.verified is not true"]
}

test_every_source_of_roles_is_reported if {
	request := object.union(carol_deploy, {"subject": {"groups": ["platform"]}})
	bindings := gatelog.role_bindings with input as request
		with data.gatelog_config.rbac as object.union(rbac, {"authenticated_roles": ["pipeline-runner"]})
	bindings == {"pipeline-runner", "namespace-admin", "repo-deployer"}
}

# A resource that is not an object has no fields: a permission that
# restricts none of them (pipeline-runner's trigger) still matches, one that
# restricts a field (namespace-admin's systems) does not.
test_resource_that_is_not_an_object_reads_as_empty_fields if {
	d := decide(object.union(trigger, {"resource": "build"}))
	d.allow == true
	d.reasons == ["allowed by role \"pipeline-runner\" (any authenticated subject)"]
	denied := decide(object.union(platform_step, {"resource": "build"})) with data.gatelog_config.rbac as rbac
	denied.allow == false
}
