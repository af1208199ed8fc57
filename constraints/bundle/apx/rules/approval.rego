package apx.rules.approval

import rego.v1

import data.apx.lib

violation contains {"rule": "prod-needs-approval", "effect": "require_approval", "msg": msg, "kinds": "any"} if {
	env := input.intent.environment
	env in protected
	msg := concat("", ["changes to ", lib.text(env), " need human approval"])
}

# Never read data.apx as a whole: it contains the rules (a recursion).
default protected := ["prod"]

protected := data.apx.protected_environments if is_array(data.apx.protected_environments)
