package gatelog

# Separation of duties: whoever wrote or approved a change must not be the
# one who ships it to a protected environment, so every production change
# passes at least two people. Each rule starts with the change itself:
# most requests carry none, and then nothing else is read.

denials contains msg if {
	change := input.context.change
	input.subject.id == change.author
	deploy_to_protected == true
	object.get(config, ["separation_of_duties", "enabled"], true) == true
	is_string(input.subject.id)
	input.subject.id != ""
	msg := sprintf("separation of duties: subject %q authored change %q and may not deploy it to protected environment %q", [input.subject.id, object.get(change, "id", ""), input.resource.environment])
}

denials contains msg if {
	change := input.context.change
	input.subject.id in change.approvers
	deploy_to_protected == true
	object.get(config, ["separation_of_duties", "enabled"], true) == true
	is_string(input.subject.id)
	input.subject.id != ""
	msg := sprintf("separation of duties: subject %q approved change %q and may not deploy it to protected environment %q", [input.subject.id, object.get(change, "id", ""), input.resource.environment])
}
