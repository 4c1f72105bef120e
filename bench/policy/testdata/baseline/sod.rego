package gatelog

# Separation of duties: whoever wrote or approved a change must not be the
# one who ships it to a protected environment, so every production change
# passes at least two people.

sod_enabled if setting(["separation_of_duties", "enabled"], true) == true

change := input.context.change if is_object(input.context.change)

denials contains msg if {
	sod_enabled
	deploy_to_protected
	subject_id_present
	input.subject.id == change.author
	msg := sprintf("separation of duties: subject %q authored change %q and may not deploy it to protected environment %q", [input.subject.id, object.get(change, "id", ""), resource_field("environment")])
}

denials contains msg if {
	sod_enabled
	deploy_to_protected
	subject_id_present
	input.subject.id in object.get(change, "approvers", [])
	msg := sprintf("separation of duties: subject %q approved change %q and may not deploy it to protected environment %q", [input.subject.id, object.get(change, "id", ""), resource_field("environment")])
}
