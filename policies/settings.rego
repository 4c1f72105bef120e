package gatelog

# Settings: one rule per key of data.gatelog_config (policies/data.yaml),
# with its default, so a missing key never leaves the decision undefined.
#
# Each setting reads its own leaf of the configuration. OPA evaluates a
# rule once per decision and converts only the part of data a reference
# reaches; looking every setting up in the whole configuration object
# (object.get over data.gatelog_config, 32 times a decision) was the
# largest cost of the library before (issue #24).

default privileged_actions := ["config.update", "secret.read", "role.grant", "policy.update", "key.rotate"]

privileged_actions := data.gatelog_config.privileged.actions

default mfa_setting := true

mfa_setting := data.gatelog_config.mfa.required

default max_auth_age_s := 0

max_auth_age_s := data.gatelog_config.mfa.max_auth_age_s

default rotation_period_s := 7776000

rotation_period_s := data.gatelog_config.credentials.rotation_period_s

default deploy_actions := ["deploy"]

deploy_actions := data.gatelog_config.environments.deploy_actions

default protected_environments := ["production"]

protected_environments := data.gatelog_config.environments.protected

default protected_refs := ["refs/heads/main", "refs/tags/v*"]

protected_refs := data.gatelog_config.environments.protected_refs

default freeze_windows := []

freeze_windows := data.gatelog_config.environments.freeze_windows

default separation_of_duties_setting := true

separation_of_duties_setting := data.gatelog_config.separation_of_duties.enabled

default break_glass_setting := true

break_glass_setting := data.gatelog_config.break_glass.enabled

# Without working_hours no time is odd.
default working_hours := null

working_hours := data.gatelog_config.working_hours

default authenticated_roles := []

authenticated_roles := data.gatelog_config.rbac.authenticated_roles

default group_roles := {}

group_roles := data.gatelog_config.rbac.group_roles

default subject_roles := {}

subject_roles := data.gatelog_config.rbac.subject_roles

# The alerts' settings, each code's defaults merged with its configuration
# key by key. break_glass always alerts; stale_credential never denies by
# itself (credentials.rego denies privileged actions with a stale one).
alert_defaults := {
	"self_grant": {"severity": "critical", "enabled": true, "deny": true, "actions": ["role.grant"]},
	"first_privileged_use": {"severity": "warning", "enabled": true, "deny": false},
	"off_hours": {"severity": "high", "enabled": true, "deny": false},
	"stale_credential": {"severity": "warning", "enabled": true},
	"break_glass": {"severity": "critical"},
}

alert_settings := object.union(alert_defaults, data.gatelog_config.alerts) if {
	is_object(data.gatelog_config.alerts)
} else := alert_defaults
