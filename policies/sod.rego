package gatelog

# Separation of duties: whoever wrote or approved a change must not be the
# one who ships it to a protected environment, so every production change
# passes at least two people.

sod_enabled if object.get(config, ["separation_of_duties", "enabled"], true) == true

change := input.context.change if is_object(input.context.change)

denials contains msg if {
	input.subject.id == change.author
	deploy_to_protected
	sod_enabled
	subject_id_present
	msg := sprintf("separation of duties: subject %q authored change %q and may not deploy it to protected environment %q", [input.subject.id, object.get(change, "id", ""), resource_values.environment])
}

denials contains msg if {
	input.subject.id in object.get(change, "approvers", [])
	deploy_to_protected
	sod_enabled
	subject_id_present
	msg := sprintf("separation of duties: subject %q approved change %q and may not deploy it to protected environment %q", [input.subject.id, object.get(change, "id", ""), resource_values.environment])
}
