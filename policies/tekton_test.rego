package gatelog_test

# step.run in the bundled data: anyone authenticated may run a single task
# outside any environment; only the Tekton controller may run the tasks of
# a PipelineRun it owns inside one (the PipelineRun was the deploy).

controller := {
	"id": "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller",
	"kind": "service",
	"groups": ["system:serviceaccounts", "system:serviceaccounts:tekton-pipelines", "system:authenticated"],
	"mfa": false,
	"token_age_s": 0,
	"verified": true,
}

controller_taskrun := {
	"subject": controller,
	"action": "step.run",
	"resource": {
		"system": "tekton",
		"kind": "TaskRun",
		"namespace": "payments",
		"environment": "production",
		"name": "deploy-x7k2p-rollout",
		"attributes": {"owner": {"kind": "PipelineRun", "name": "deploy-x7k2p", "api_version": "tekton.dev/v1"}},
	},
	"context": {"time": now},
	"source": {"adapter": "tekton", "request_id": "req-3"},
}

test_controller_runs_tasks_of_its_pipelinerun if {
	d := decide(controller_taskrun)
	d.allow == true
	d.reasons == ["allowed by role \"tekton-controller\" (subject \"system:serviceaccount:tekton-pipelines:tekton-pipelines-controller\")"]
}

test_controller_needs_a_pipelinerun_owner if {
	every owner in [{}, {"kind": "Deployment"}, "PipelineRun"] {
		d := decide(json.patch(controller_taskrun, [{"op": "replace", "path": "/resource/attributes/owner", "value": owner}]))
		d.allow == false
		has_reason(d, "permits action \"step.run\"")
	}
}

test_controller_role_is_only_step_run if {
	d := decide(object.union(controller_taskrun, {"action": "deploy"}))
	d.allow == false
}

test_user_taskrun_with_an_owner_is_not_the_controllers if {
	d := decide(object.union(controller_taskrun, {"subject": bob}))
	d.allow == false
	has_reason(d, "(roles held: pipeline-runner)")
}

test_anyone_runs_a_task_outside_environments if {
	d := decide(object.union(trigger, {"action": "step.run"}))
	d.allow == true
	d.reasons == ["allowed by role \"pipeline-runner\" (any authenticated subject)"]
}

test_step_run_into_an_environment_is_not_for_anyone if {
	every env in ["production", "staging"] {
		d := decide(object.union(trigger, {"action": "step.run", "resource": {"environment": env}}))
		d.allow == false
	}
}
