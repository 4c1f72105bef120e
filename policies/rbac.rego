package gatelog

# Role-based access control. Roles grant actions on resources matched by
# glob patterns; subjects get roles for being authenticated at all, through
# their groups (identity-provider groups and CI teams alike) or directly by
# subject id. Nothing is allowed unless some role grants it: default deny.
#
# role_grants are the reasons an allowed request reports, one for each role
# the subject holds that permits the request, saying how the subject holds
# it. Unauthenticated subjects hold no roles. A request is granted when the
# set is not empty, so the set is the only thing an allow evaluates: the
# roles a subject merely holds (role_bindings) are only listed in the deny
# reason when none of them permits the request. Each body starts with
# verified == true, which OPA's index answers for unverified subjects.
#
# A role permits the request when one of its permissions matches it. A
# permission lists glob patterns per field; a missing list matches any
# value, including an empty one. A permission only matches requests whose
# fields are all strings. The action is matched first, and the resource's
# fields are only looked up once some permission's action matches: most of
# a role's permissions are for other actions. owner_kinds confines a role to
# objects created for an owner, e.g. the Tekton controller's TaskRuns: the
# kind of resource.attributes.owner. The fields are read with
# object.get(input, path, ""), which gives "" for a missing field and for a
# resource that is not an object, where a resource_values rule used to hold
# them: a rule evaluated costs more than the five reads (pipeline-trigger.json:
# 449 against 390 allocations).
#
# The three bodies repeat that match rather than call a role_permits(role)
# function: OPA charges a function call per role held (about 13
# allocations each, more than the match itself when the action rules a
# permission out), and the three copies took a decision of
# examples/requests/deploy-prod.json from 607 to 568 allocations. They are
# the same lines in the same order; change them together.
role_grants contains sprintf("allowed by role %q (any authenticated subject)", [role]) if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some role in config.rbac.authenticated_roles
	is_string(input.action)
	some permission in config.rbac.roles[role].permissions
	some action in object.get(permission, "actions", ["*"])
	glob.match(action, null, input.action)
	system := object.get(input, ["resource", "system"], "")
	is_string(system)
	repository := object.get(input, ["resource", "repository"], "")
	is_string(repository)
	environment := object.get(input, ["resource", "environment"], "")
	is_string(environment)
	namespace := object.get(input, ["resource", "namespace"], "")
	is_string(namespace)
	owner_kind := object.get(input, ["resource", "attributes", "owner", "kind"], "")
	is_string(owner_kind)
	some system_pattern in object.get(permission, "systems", ["*"])
	glob.match(system_pattern, null, system)
	some repository_pattern in object.get(permission, "repositories", ["*"])
	glob.match(repository_pattern, null, repository)
	some environment_pattern in object.get(permission, "environments", ["*"])
	glob.match(environment_pattern, null, environment)
	some namespace_pattern in object.get(permission, "namespaces", ["*"])
	glob.match(namespace_pattern, null, namespace)
	some owner_kind_pattern in object.get(permission, "owner_kinds", ["*"])
	glob.match(owner_kind_pattern, null, owner_kind)
}

role_grants contains sprintf("allowed by role %q (group %q)", [role, group]) if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some group in input.subject.groups
	some role in config.rbac.group_roles[group]
	is_string(input.action)
	some permission in config.rbac.roles[role].permissions
	some action in object.get(permission, "actions", ["*"])
	glob.match(action, null, input.action)
	system := object.get(input, ["resource", "system"], "")
	is_string(system)
	repository := object.get(input, ["resource", "repository"], "")
	is_string(repository)
	environment := object.get(input, ["resource", "environment"], "")
	is_string(environment)
	namespace := object.get(input, ["resource", "namespace"], "")
	is_string(namespace)
	owner_kind := object.get(input, ["resource", "attributes", "owner", "kind"], "")
	is_string(owner_kind)
	some system_pattern in object.get(permission, "systems", ["*"])
	glob.match(system_pattern, null, system)
	some repository_pattern in object.get(permission, "repositories", ["*"])
	glob.match(repository_pattern, null, repository)
	some environment_pattern in object.get(permission, "environments", ["*"])
	glob.match(environment_pattern, null, environment)
	some namespace_pattern in object.get(permission, "namespaces", ["*"])
	glob.match(namespace_pattern, null, namespace)
	some owner_kind_pattern in object.get(permission, "owner_kinds", ["*"])
	glob.match(owner_kind_pattern, null, owner_kind)
}

role_grants contains sprintf("allowed by role %q (subject %q)", [role, input.subject.id]) if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some role in config.rbac.subject_roles[input.subject.id]
	is_string(input.action)
	some permission in config.rbac.roles[role].permissions
	some action in object.get(permission, "actions", ["*"])
	glob.match(action, null, input.action)
	system := object.get(input, ["resource", "system"], "")
	is_string(system)
	repository := object.get(input, ["resource", "repository"], "")
	is_string(repository)
	environment := object.get(input, ["resource", "environment"], "")
	is_string(environment)
	namespace := object.get(input, ["resource", "namespace"], "")
	is_string(namespace)
	owner_kind := object.get(input, ["resource", "attributes", "owner", "kind"], "")
	is_string(owner_kind)
	some system_pattern in object.get(permission, "systems", ["*"])
	glob.match(system_pattern, null, system)
	some repository_pattern in object.get(permission, "repositories", ["*"])
	glob.match(repository_pattern, null, repository)
	some environment_pattern in object.get(permission, "environments", ["*"])
	glob.match(environment_pattern, null, environment)
	some namespace_pattern in object.get(permission, "namespaces", ["*"])
	glob.match(namespace_pattern, null, namespace)
	some owner_kind_pattern in object.get(permission, "owner_kinds", ["*"])
	glob.match(owner_kind_pattern, null, owner_kind)
}

# role_bindings are the roles an authenticated subject holds, whether or
# not they permit the request, for the deny reason.
role_bindings contains role if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some role in config.rbac.authenticated_roles
}

role_bindings contains role if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some group in input.subject.groups
	some role in config.rbac.group_roles[group]
}

role_bindings contains role if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	some role in config.rbac.subject_roles[input.subject.id]
}

roles_held := concat(", ", sort(role_bindings)) if {
	count(role_bindings) > 0
} else := "none"

denials contains msg if {
	input.subject.verified == true
	is_string(input.subject.id)
	input.subject.id != ""
	role_grants == set()
	msg := sprintf("no role of subject %q permits action %q on %s (roles held: %s)", [input.subject.id, input.action, resource_description, roles_held])
}
