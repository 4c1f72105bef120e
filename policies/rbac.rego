package gatelog

# Role-based access control. Roles grant actions on resources matched by
# glob patterns; subjects get roles for being authenticated at all, through
# their groups (identity-provider groups and CI teams alike) or directly by
# subject id. Nothing is allowed unless some role grants it: default deny.

# role_bindings are the roles the subject holds and where each came from, so
# an allow can say why. Unauthenticated subjects hold no roles. Lists that
# are only iterated are read straight from data: a missing one holds
# nothing, as an empty one does, and a direct reference is cheaper than
# object.get with a default.
role_bindings contains {"role": role, "via": "any authenticated subject"} if {
	authenticated
	some role in data.gatelog_config.rbac.authenticated_roles
}

role_bindings contains {"role": role, "via": sprintf("group %q", [group])} if {
	authenticated
	some group in input.subject.groups
	some role in data.gatelog_config.rbac.group_roles[group]
}

role_bindings contains {"role": role, "via": sprintf("subject %q", [input.subject.id])} if {
	authenticated
	some role in data.gatelog_config.rbac.subject_roles[input.subject.id]
}

# granting_bindings are the held roles with a permission for this request.
# A permission lists glob patterns per field; a missing list matches any
# value, including an empty one. The action is matched first: most of a
# subject's permissions are for other actions.
granting_bindings contains b if {
	some b in role_bindings
	resource_values_are_strings
	some permission in data.gatelog_config.rbac.roles[b.role].permissions
	some action in object.get(permission, "actions", ["*"])
	glob.match(action, null, input.action)
	permits_resource(permission)
}

# owner_kinds confines a role to objects created for an owner, e.g. the
# Tekton controller's TaskRuns.
permits_resource(permission) if {
	some system in object.get(permission, "systems", ["*"])
	glob.match(system, null, resource_values.system)
	some repository in object.get(permission, "repositories", ["*"])
	glob.match(repository, null, resource_values.repository)
	some environment in object.get(permission, "environments", ["*"])
	glob.match(environment, null, resource_values.environment)
	some namespace in object.get(permission, "namespaces", ["*"])
	glob.match(namespace, null, resource_values.namespace)
	some owner_kind in object.get(permission, "owner_kinds", ["*"])
	glob.match(owner_kind, null, resource_values.owner_kind)
}

# A permission only matches requests whose fields are all strings.
resource_values_are_strings if {
	is_string(input.action)
	is_string(resource_values.system)
	is_string(resource_values.repository)
	is_string(resource_values.environment)
	is_string(resource_values.namespace)
	is_string(resource_values.owner_kind)
}

roles_held := concat(", ", sort({b.role | some b in role_bindings})) if {
	count(role_bindings) > 0
} else := "none"

denials contains msg if {
	authenticated
	count(granting_bindings) == 0
	msg := sprintf("no role of subject %q permits action %q on %s (roles held: %s)", [input.subject.id, input.action, resource_description, roles_held])
}
