# The input guard: a rule that reads a missing or mistyped field is undefined,
# so it never fires — the silent fail-open this rule exists to turn into a
# denial. Every field another rule reads is checked here, one rule body each
# (3x cheaper in regopy than iterating a table of paths with object.get).
#
# The engines also check the whole input contract in Python before evaluating
# (validators.policy.check_input), including each change; this guard is the
# policy's own line of defence, and what protects it when evaluated elsewhere.
# It reads scalars only: iterating input objects is what regopy is slow at.
package apx.rules.guard

import rego.v1

violation contains {"rule": "policy-input", "effect": "deny", "msg": "there is no policy input", "kinds": null} if {
	not is_object(input)
}

violation contains _missing("input.intent.tenant", "string") if {
	is_object(input)
	not is_string(input.intent.tenant)
}

violation contains _missing("input.intent.environment", "string") if {
	is_object(input)
	not is_string(input.intent.environment)
}

violation contains _missing("input.changes", "array") if {
	is_object(input)
	not is_array(input.changes)
}

violation contains _missing("input.blast.routes_touched", "number") if {
	is_object(input)
	not is_number(input.blast.routes_touched)
}

violation contains _missing("input.blast.quota_factor", "number") if {
	is_object(input)
	not is_number(input.blast.quota_factor)
}

violation contains _missing("input.blast.rate_limit_factor", "number") if {
	is_object(input)
	not is_number(input.blast.rate_limit_factor)
}

violation contains _missing("input.blast.replicas_after_max", "number") if {
	is_object(input)
	not is_number(input.blast.replicas_after_max)
}

violation contains _missing("input.blast.network.changed", "boolean") if {
	is_object(input)
	not is_boolean(input.blast.network.changed)
}

violation contains _missing("input.blast.network.opens_world", "boolean") if {
	is_object(input)
	not is_boolean(input.blast.network.opens_world)
}

violation contains _missing("input.cumulative.routes", "number") if {
	is_object(input)
	not is_number(input.cumulative.routes)
}

violation contains _missing("input.now_ns", "number") if {
	is_object(input)
	not is_number(input.now_ns)
}

_missing(field, type) := {
	"rule": "policy-input",
	"effect": "deny",
	"msg": concat("", ["the policy input has no ", field, " of type ", type, ", so the policy cannot judge this intent"]),
	"kinds": null,
}
