package gatelog

# Role-based access control. Roles grant actions on resources matched by
# glob patterns; subjects get roles for being authenticated at all, through
# their groups (identity-provider groups and CI teams alike) or directly by
# subject id. Nothing is allowed unless some role grants it: default deny.

# role_bindings are the roles an authenticated subject holds, each as
# [role, how, name]: how is "authenticated", "group" (name is the group)
# or "subject" (name is the subject id). Unauthenticated subjects hold no
# roles. The text saying where a role came from is only built for an allow
# (role_reasons).
role_bindings contains [role, "authenticated", ""] if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some role in config.rbac.authenticated_roles
}

role_bindings contains [role, "group", group] if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some group in input.subject.groups
	some role in config.rbac.group_roles[group]
}

role_bindings contains [role, "subject", input.subject.id] if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some role in config.rbac.subject_roles[input.subject.id]
}

# granting_bindings are the held roles with a permission for this request.
# A permission lists glob patterns per field; a missing list matches any
# value, including an empty one. A permission only matches requests whose
# fields are all strings. The action is matched first: most of a subject's
# permissions are for other actions. owner_kinds confines a role to objects
# created for an owner, e.g. the Tekton controller's TaskRuns. The fields
# are tested in this body rather than in a function: a call per permission
# costs more than the tests.
granting_bindings contains [role, how, name] if {
	is_string(input.action)
	values := resource_values
	is_string(values.system)
	is_string(values.repository)
	is_string(values.environment)
	is_string(values.namespace)
	is_string(values.owner_kind)
	some [role, how, name] in role_bindings
	some permission in config.rbac.roles[role].permissions
	some action in object.get(permission, "actions", ["*"])
	glob.match(action, null, input.action)
	some system in object.get(permission, "systems", ["*"])
	glob.match(system, null, values.system)
	some repository in object.get(permission, "repositories", ["*"])
	glob.match(repository, null, values.repository)
	some environment in object.get(permission, "environments", ["*"])
	glob.match(environment, null, values.environment)
	some namespace in object.get(permission, "namespaces", ["*"])
	glob.match(namespace, null, values.namespace)
	some owner_kind in object.get(permission, "owner_kinds", ["*"])
	glob.match(owner_kind, null, values.owner_kind)
}

# role_reasons say which roles allowed the request, and how the subject
# holds each.
role_reasons := sort({reason |
	some [role, how, name] in granting_bindings
	reason := binding_reason(role, how, name)
})

binding_reason(role, "authenticated", _) := sprintf("allowed by role %q (any authenticated subject)", [role])

binding_reason(role, "group", group) := sprintf("allowed by role %q (group %q)", [role, group])

binding_reason(role, "subject", id) := sprintf("allowed by role %q (subject %q)", [role, id])

roles_held := concat(", ", sort({role | some [role, _, _] in role_bindings})) if {
	count(role_bindings) > 0
} else := "none"

denials contains msg if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	count(granting_bindings) == 0
	msg := sprintf("no role of subject %q permits action %q on %s (roles held: %s)", [input.subject.id, input.action, resource_description, roles_held])
}
