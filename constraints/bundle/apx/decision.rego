# The decision: every violation the rule packages emit, routed by its rule's
# enforcement mode and set aside when a live waiver covers it.
#
# Rules live in packages data.apx.rules.<name> and emit `violation` items
#   {"rule": id, "effect": "deny" | "require_approval", "msg": text,
#    "kinds": {"Route", ...} | "any"}
# where `kinds` says which changed resources the violation can come from (what
# a resource-scoped waiver is matched against). Adding a rule is adding a
# file: nothing here names a rule, except the input guard, which may not be
# relaxed.
#
# Everything that could silently drop a violation fails closed instead: an
# unknown effect counts as deny, an unknown mode as enforce, a violation that is
# not an object is still a denial, and a waiver that cannot be reported does
# not apply.
#
# The routing is a function of its arguments (`route`) so its unit tests call
# it with literals: regopy rewrites every `with` against the whole rule graph,
# and a few dozen `with data.apx... as` clauses over the decision took ~30 s to
# build.
package apx

import rego.v1

# The input guard's denials cannot be downgraded or waived: without its fields
# the other rules cannot judge the intent at all.
input_guard := "policy-input"

# Without waivers nothing reads the scope, so it is not even assembled.
decision := route(violations, _modes, _waivers, _context) if {
	count(_waivers) > 0
} else := route(violations, _modes, [], {})

# The loader lists the rule packages in data.apx.rule_packages: iterating the
# rule tree with an unbound package (below) evaluates every rule of every
# package, ~6 ms per decision in regopy instead of ~0.5.
violations contains normalize(pkg, v) if {
	some pkg in data.apx.rule_packages
	some v in data.apx.rules[pkg].violation
}

# Evaluated by something other than the APX loader (`opa test`, `opa eval`).
violations contains normalize(pkg, v) if {
	not is_array(data.apx.rule_packages)
	some pkg
	some v in data.apx.rules[pkg].violation
}

# Never read data.apx as a whole (it contains these rules: a recursion), and
# never name a rule here like a key of data.apx (the same path: a conflict).
default _modes := {}

_modes := data.apx.enforcement if is_object(data.apx.enforcement)

default _waivers := []

_waivers := data.apx.waivers if is_array(data.apx.waivers)

# What waiver scoping needs: the engines derive input.scope from input.changes
# in Python (validators.policy.policy_document), so no rule iterates changes.
_context := {"now_ns": _now_ns, "tenants": _tenants, "resources": _resources}

default _now_ns := null

_now_ns := input.now_ns

default _tenants := []

_tenants := input.scope.tenants if is_array(input.scope.tenants)

default _resources := {}

_resources := input.scope.resources if is_object(input.scope.resources)

route(vs, modes, ws, ctx) := {
	"deny": {{"rule": v.rule, "msg": v.msg} |
		some v in open
		v.effect == "deny"
		mode(modes, v.rule) == "enforce"
	},
	"require_approval": {{"rule": v.rule, "msg": v.msg} |
		some v in open
		v.effect == "require_approval"
		mode(modes, v.rule) == "enforce"
	},
	"warn": {{"rule": v.rule, "msg": v.msg, "effect": v.effect} |
		some v in open
		mode(modes, v.rule) == "warn"
	},
	"dryrun": {{"rule": v.rule, "msg": v.msg, "effect": v.effect} |
		some v in open
		mode(modes, v.rule) == "dryrun"
	},
	"waived": uses,
} if {
	uses := waiver_uses(vs, ws, ctx)
	open := {v | some v in vs; not _covered(uses, v)}
}

# One item per (violation, waiver) pair, so every waiver use is on the record.
# An item that cannot be built (a waiver without ticket or reason) is no use:
# the violation then stays open.
waiver_uses(vs, ws, ctx) := {item |
	some v in vs
	v.rule != input_guard
	some w in ws
	applies(w, v, ctx)
	item := {
		"rule": v.rule,
		"msg": v.msg,
		"ticket": w.ticket,
		"reason": w.reason,
		"expires": w.expires,
		"tenant": object.get(w, "tenant", null),
		"resource": object.get(w, "resource", null),
	}
}

# enforce | warn | dryrun; anything else means enforce.
mode(modes, rule) := "enforce" if {
	rule == input_guard
} else := m if {
	m := modes[rule]
	m in {"warn", "dryrun"}
} else := "enforce"

_covered(uses, v) if {
	some item in uses
	item.rule == v.rule
	item.msg == v.msg
}

# Expiry is exclusive and compared in nanoseconds: the loader turns each
# waiver's RFC 3339 `expires` into `expires_ns` (regopy's time.parse_rfc3339_ns
# rejects the "Z" suffix).
applies(w, v, ctx) if {
	w.rule == v.rule
	is_number(ctx.now_ns)
	is_number(w.expires_ns)
	ctx.now_ns < w.expires_ns
	_tenant_ok(w, ctx)
	_resource_ok(w, v, ctx)
}

_tenant_ok(w, _) if object.get(w, "tenant", null) == null

# A tenant-scoped waiver covers an intent only if every tenant it touches
# (its own and each change's) is that tenant.
_tenant_ok(w, ctx) if {
	is_string(w.tenant)
	count(ctx.tenants) > 0
	every t in ctx.tenants {
		t == w.tenant
	}
}

_resource_ok(w, _, _) if object.get(w, "resource", null) == null

# A resource-scoped waiver covers a violation only if that resource is the only
# changed one the violation could come from.
_resource_ok(w, v, ctx) if {
	is_string(w.resource)
	labels := _labels(v.kinds, ctx.resources)
	count(labels) > 0
	every label in labels {
		label == w.resource
	}
}

# The changed resources ("Kind/name") of the given kinds; none for unknown kinds,
# so a violation that does not say where it comes from is never resource-waived.
_labels(kinds, resources) := {label | some list in resources; some label in list} if {
	kinds == "any"
} else := {label | some kind in kinds; some label in object.get(resources, kind, [])} if {
	is_set(kinds)
} else := set()

_effects := {"deny", "require_approval"}

# A violation as the router needs it, whatever shape the rule emitted.
normalize(pkg, v) := {"rule": pkg, "effect": "deny", "msg": v, "kinds": null} if {
	is_string(v)
} else := {
	"rule": _text(object.get(v, "rule", pkg)),
	"effect": _known_effect(object.get(v, "effect", "deny")),
	"msg": _message(pkg, object.get(v, "msg", null)),
	"kinds": _kinds(object.get(v, "kinds", null)),
} if {
	is_object(v)
} else := {
	"rule": pkg,
	"effect": "deny",
	"msg": concat("", ["rule package ", pkg, " emitted a violation that is neither text nor an object"]),
	"kinds": null,
}

_text(x) := x if is_string(x) else := sprintf("%v", [x])

_known_effect(e) := e if e in _effects else := "deny"

_message(pkg, msg) := msg if {
	is_string(msg)
} else := concat("", ["a rule in package ", pkg, " fired without a message"])

_kinds(x) := x if {
	x == "any"
} else := {k | some k in x} if {
	is_set(x)
} else := {k | some k in x} if {
	is_array(x)
} else := null
