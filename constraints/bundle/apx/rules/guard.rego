# The input guard: a rule that reads a missing or mistyped field is undefined,
# so it never fires — the silent fail-open this rule exists to turn into a
# denial. Every field another rule reads is checked here, one rule body each
# (3x cheaper in regopy than iterating a table of paths with object.get).
#
# The engines check the whole input contract in Python before evaluating
# (validators.policy.check_input), each change included; this guard is the
# policy's own line of defence, and what protects it when evaluated elsewhere.
# It reads scalars only (regopy is slow at visiting input objects), and no
# module here mentions input.changes, so the engines need not send it.
package apx.rules.guard

import rego.v1

violation contains _missing("input.intent.tenant", "string") if {
	not is_string(input.intent.tenant)
}

violation contains _missing("input.intent.environment", "string") if {
	not is_string(input.intent.environment)
}

violation contains _missing("input.blast.routes_touched", "number") if {
	not is_number(input.blast.routes_touched)
}

violation contains _missing("input.blast.quota_factor", "number") if {
	not is_number(input.blast.quota_factor)
}

violation contains _missing("input.blast.rate_limit_factor", "number") if {
	not is_number(input.blast.rate_limit_factor)
}

violation contains _missing("input.blast.replicas_after_max", "number") if {
	not is_number(input.blast.replicas_after_max)
}

violation contains _missing("input.blast.network.changed", "boolean") if {
	not is_boolean(input.blast.network.changed)
}

violation contains _missing("input.blast.network.opens_world", "boolean") if {
	not is_boolean(input.blast.network.opens_world)
}

violation contains _missing("input.cumulative.routes", "number") if {
	not is_number(input.cumulative.routes)
}

violation contains _missing("input.now_ns", "number") if {
	not is_number(input.now_ns)
}

violation contains _no_limit("max_routes_per_intent") if {
	not is_number(data.apx.limits.max_routes_per_intent)
}

violation contains _no_limit("max_routes_per_window") if {
	not is_number(data.apx.limits.max_routes_per_window)
}

violation contains _no_limit("max_quota_factor") if {
	not is_number(data.apx.limits.max_quota_factor)
}

violation contains _no_limit("max_rate_limit_factor") if {
	not is_number(data.apx.limits.max_rate_limit_factor)
}

violation contains _no_limit("max_replicas") if {
	not is_number(data.apx.limits.max_replicas)
}

_missing(field, type) := {
	"rule": "policy-input",
	"effect": "deny",
	"msg": concat("", ["the policy input has no ", field, " of type ", type, ", so the policy cannot judge this intent"]),
	"kinds": null,
}

# The loader fills in the shipped limits for any a bundle's data.json leaves
# out; this catches a bundle evaluated without it (and a limit that is not a number).
_no_limit(name) := {
	"rule": "policy-input",
	"effect": "deny",
	"msg": concat("", ["the policy data has no number data.apx.limits.", name, ", so the policy cannot judge this intent"]),
	"kinds": null,
}
