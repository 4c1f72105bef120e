package gatelog_test

with_change(request, change) := object.union(request, {"context": {"change": change}})

change_by_dave := {"id": "acme/shop#42", "author": "dave", "approvers": ["erin", "frank"]}

test_author_may_not_deploy_own_change_to_production if {
	d := decide(with_change(deploy_prod, object.union(change_by_dave, {"author": "alice"})))
	d.allow == false
	d.reasons == [`separation of duties: subject "alice" authored change "acme/shop#42" and may not deploy it to protected environment "production"`]
}

test_approver_may_not_deploy_change_to_production if {
	d := decide(with_change(deploy_prod, object.union(change_by_dave, {"approvers": ["erin", "alice"]})))
	d.allow == false
	d.reasons == [`separation of duties: subject "alice" approved change "acme/shop#42" and may not deploy it to protected environment "production"`]
}

test_third_person_may_deploy_change_to_production if {
	d := decide(with_change(deploy_prod, change_by_dave))
	d.allow == true
}

test_author_may_deploy_own_change_to_unprotected_environment if {
	d := decide(with_change(deploy_staging, object.union(change_by_dave, {"author": "alice"})))
	d.allow == true
}

test_without_change_separation_of_duties_does_not_apply if {
	d := decide(deploy_prod)
	d.allow == true
}

test_change_without_approvers_only_checks_author if {
	d := decide(with_change(deploy_prod, {"id": "c1", "author": "dave"}))
	d.allow == true
}

test_separation_of_duties_can_be_turned_off if {
	d := decide(with_change(deploy_prod, object.union(change_by_dave, {"author": "alice"}))) with data.gatelog_config.separation_of_duties.enabled as false
	d.allow == true
}
