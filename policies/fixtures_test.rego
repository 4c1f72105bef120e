# Shared fixtures for the policy tests: a fixed decision time inside the
# default working hours (Wednesday 10:00 UTC) and requests built from it.
package gatelog_test

import data.gatelog

now := "2026-03-04T10:00:00Z"

alice := {
	"id": "alice",
	"kind": "user",
	"issuer": "https://idp.example.com",
	"groups": ["release-managers"],
	"mfa": true,
	"auth_time": "2026-03-04T09:45:00Z",
	"token_age_s": 300,
	"verified": true,
}

bob := {
	"id": "bob",
	"kind": "user",
	"issuer": "https://idp.example.com",
	"groups": ["developers"],
	"mfa": false,
	"auth_time": "2026-03-04T08:00:00Z",
	"token_age_s": 300,
	"verified": true,
}

deploy_prod := {
	"subject": alice,
	"action": "deploy",
	"resource": {
		"system": "github",
		"kind": "workflow",
		"repository": "acme/shop",
		"environment": "production",
		"ref": "refs/heads/main",
	},
	"context": {"time": now},
	"source": {"adapter": "github", "request_id": "req-1"},
}

deploy_staging := object.union(deploy_prod, {"resource": {"environment": "staging", "ref": "refs/heads/feature-x"}})

trigger := {
	"subject": bob,
	"action": "pipeline.trigger",
	"resource": {
		"system": "tekton",
		"namespace": "ci",
		"name": "build",
		"repository": "acme/shop",
		"ref": "refs/heads/feature-x",
	},
	"context": {"time": now},
	"source": {"adapter": "tekton", "request_id": "req-2"},
}

# privileged_request is alice doing action on a config resource; tests
# give her the "operator" role (every action) where they need an allow.
privileged_request(action) := object.union(deploy_prod, {
	"action": action,
	"resource": {"kind": "config", "name": "service-x", "environment": "", "ref": ""},
})

operator_role := {"permissions": [{"actions": ["*"]}]}

decide(request) := d if {
	d := gatelog.decision with input as request
}

has_reason(d, text) if {
	some r in d.reasons
	contains(r, text)
}

has_alert(d, code, severity) if {
	some a in d.alerts
	a.code == code
	a.severity == severity
}

no_alert(d, code) if {
	every a in d.alerts {
		a.code != code
	}
}
