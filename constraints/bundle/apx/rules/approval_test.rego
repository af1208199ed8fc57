package apx_test.approval

import rego.v1

fired := {v | some v in data.apx.rules.approval.violation; v.rule == "prod-needs-approval"}

test_prod_changes_need_approval if {
	vs := fired with input.intent as {"environment": "prod", "tenant": "acme"}
	some v in vs
	v.effect == "require_approval"
	v.msg == "changes to prod need human approval"
	v.kinds == "any"
}

test_dev_changes_need_no_approval if {
	count(fired) == 0 with input.intent as {"environment": "dev", "tenant": "acme"}
}

test_protected_environments_come_from_data if {
	count(fired) == 1 with input.intent as {"environment": "staging", "tenant": "acme"}
		with data.apx.protected_environments as ["prod", "staging"]
}
