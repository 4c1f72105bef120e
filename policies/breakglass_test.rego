package gatelog_test

break_glass(request, reason) := object.union(request, {
	"subject": {"claims": {"break_glass": true}},
	"context": {"break_glass_reason": reason},
})

# bob is no release manager and used no MFA: two denials to override.
bob_deploys_prod := object.union(deploy_prod, {"subject": bob})

test_break_glass_with_reason_overrides_denials if {
	d := decide(break_glass(bob_deploys_prod, "INC-1234: checkout is down"))
	d.allow == true
	d.reasons[0] == `allowed by break-glass override for subject "bob": INC-1234: checkout is down`
	count(d.reasons) == 3
	every r in array.slice(d.reasons, 1, 3) {
		startswith(r, "overridden: ")
	}
	d.alerts == [{
		"severity": "critical",
		"code": "break_glass",
		"message": `subject "bob" used break-glass for action "deploy" on system "github", repository "acme/shop", environment "production", kind "workflow"; reason: INC-1234: checkout is down`,
	}]
	d.obligations == {"post_incident_review": {"subject": "bob", "reason": "INC-1234: checkout is down"}}
}

test_break_glass_on_allowed_request_still_alerts if {
	d := decide(break_glass(deploy_prod, "INC-1"))
	d.allow == true
	d.reasons == [`allowed by break-glass override for subject "alice": INC-1`]
	has_alert(d, "break_glass", "critical")
}

test_break_glass_without_reason_is_denied if {
	every reason in ["", "   "] {
		d := decide(break_glass(bob_deploys_prod, reason))
		d.allow == false
		has_reason(d, "break-glass requires a non-empty context.break_glass_reason")
		has_alert(d, "break_glass", "critical")
		d.obligations == {}
	}
}

test_break_glass_without_reason_field_is_denied if {
	request := object.union(trigger, {"subject": {"claims": {"break_glass": true}}})
	d := decide(request)
	d.allow == false
	d.reasons == ["break-glass requires a non-empty context.break_glass_reason"]
}

test_break_glass_does_not_override_failed_authentication if {
	unverified := object.union(bob_deploys_prod, {"subject": {"verified": false}})
	expired := object.union(bob_deploys_prod, {"subject": {"credential_expires_at": "2026-03-01T00:00:00Z"}})
	every request in [unverified, expired] {
		d := decide(break_glass(request, "INC-1"))
		d.allow == false
		has_alert(d, "break_glass", "critical")
	}
}

test_break_glass_claim_must_be_true if {
	request := object.union(bob_deploys_prod, {"subject": {"claims": {"break_glass": "true"}}, "context": {"break_glass_reason": "INC-1"}})
	d := decide(request)
	d.allow == false
	d.alerts == []
}

test_break_glass_can_be_turned_off if {
	d := decide(break_glass(bob_deploys_prod, "INC-1")) with data.gatelog_config.break_glass.enabled as false
	d.allow == false
	d.alerts == []
}
