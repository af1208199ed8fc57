# The input guard: a rule that reads a missing or mistyped field is undefined,
# so it never fires — the silent fail-open this rule exists to turn into a
# denial. Every field another rule reads is listed here with its type.
package apx.rules.guard

import rego.v1

required := [
	{"path": ["intent", "tenant"], "type": "string"},
	{"path": ["intent", "environment"], "type": "string"},
	{"path": ["changes"], "type": "array"},
	{"path": ["blast", "routes_touched"], "type": "number"},
	{"path": ["blast", "quota_factor"], "type": "number"},
	{"path": ["blast", "rate_limit_factor"], "type": "number"},
	{"path": ["blast", "replicas_after_max"], "type": "number"},
	{"path": ["blast", "network", "changed"], "type": "boolean"},
	{"path": ["blast", "network", "opens_world"], "type": "boolean"},
	{"path": ["cumulative", "routes"], "type": "number"},
	{"path": ["now_ns"], "type": "number"},
]

# `input` itself may be absent: fall back to an empty object so every field is reported.
default doc := {}

doc := input

violation contains {"rule": "policy-input", "effect": "deny", "msg": msg, "resources": set()} if {
	some field in required
	not _has_type(object.get(doc, field.path, null), field.type)
	msg := concat("", [
		"the policy input has no ", concat(".", array.concat(["input"], field.path)),
		" of type ", field.type, ", so the policy cannot judge this intent",
	])
}

violation contains {"rule": "policy-input", "effect": "deny", "msg": msg, "resources": set()} if {
	some i, c in object.get(doc, "changes", [])
	some key in ["kind", "name"]
	not is_string(object.get(c, key, null))
	msg := concat("", ["the policy input's change ", sprintf("%v", [i]), " has no ", key, " (a string)"])
}

_has_type(v, "string") if is_string(v)

_has_type(v, "number") if is_number(v)

_has_type(v, "boolean") if is_boolean(v)

_has_type(v, "array") if is_array(v)
