package gatelog

# Role-based access control. Roles grant actions on resources matched by
# glob patterns; subjects get roles for being authenticated at all, through
# their groups (identity-provider groups and CI teams alike) or directly by
# subject id. Nothing is allowed unless some role grants it: default deny.

# role_bindings are the roles the subject holds and where each came from, so
# an allow can say why. Unauthenticated subjects hold no roles.
role_bindings contains {"role": role, "via": "any authenticated subject"} if {
	authenticated
	some role in setting(["rbac", "authenticated_roles"], [])
}

role_bindings contains {"role": role, "via": sprintf("group %q", [group])} if {
	authenticated
	some group in input.subject.groups
	some role in object.get(setting(["rbac", "group_roles"], {}), group, [])
}

role_bindings contains {"role": role, "via": sprintf("subject %q", [input.subject.id])} if {
	authenticated
	some role in object.get(setting(["rbac", "subject_roles"], {}), input.subject.id, [])
}

# granting_bindings are the held roles with a permission for this request.
granting_bindings contains b if {
	some b in role_bindings
	some permission in setting(["rbac", "roles", b.role, "permissions"], [])
	permits(permission)
}

# A permission lists glob patterns per field; a missing list matches any
# value, including an empty one.
permits(permission) if {
	matches_any(object.get(permission, "actions", ["*"]), input.action)
	matches_any(object.get(permission, "systems", ["*"]), resource_field("system"))
	matches_any(object.get(permission, "repositories", ["*"]), resource_field("repository"))
	matches_any(object.get(permission, "environments", ["*"]), resource_field("environment"))
	matches_any(object.get(permission, "namespaces", ["*"]), resource_field("namespace"))
	matches_any(object.get(permission, "owner_kinds", ["*"]), owner_kind)
}

# owner_kind is the kind of the object that controls the resource (the
# Tekton adapter's resource.attributes.owner: a TaskRun's PipelineRun), ""
# when there is none. A permission's owner_kinds confines a role to objects
# created for an owner, e.g. the Tekton controller's TaskRuns.
owner_kind := object.get(resource, ["attributes", "owner", "kind"], "")

roles_held := concat(", ", sort({b.role | some b in role_bindings})) if {
	count(role_bindings) > 0
} else := "none"

denials contains msg if {
	authenticated
	count(granting_bindings) == 0
	msg := sprintf("no role of subject %q permits action %q on %s (roles held: %s)", [input.subject.id, input.action, resource_description, roles_held])
}
