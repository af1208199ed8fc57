# The router: modes, effects and waivers. These call apx.route and
# apx.normalize with literals instead of mocking with `with`: regopy compiles
# every `with` against the whole rule graph, which made this file take ~30 s to build.
# The default rules feeding it are tested with real inputs from Python
# (tests/integration/test_rego_engine.py).
package apx_test.decision

import rego.v1

import data.apx

v_deny := {"rule": "r", "effect": "deny", "msg": "too big", "kinds": {"WorkerPool"}}

v_approve := {"rule": "a", "effect": "require_approval", "msg": "needs eyes", "kinds": {"Route"}}

# 2025-06-01T12:00:00Z in nanoseconds.
now := 1748779200000000000

# What the engines derive from input.changes (input.scope) plus the clock.
ctx := {"now_ns": now, "tenants": ["acme"], "resources": {"WorkerPool": ["WorkerPool/checkout"]}}

waiver := {
	"rule": "r", "reason": "load test", "ticket": "OPS-1",
	"expires": "2025-06-02T00:00:00Z", "expires_ns": now + 1,
}

test_a_deny_violation_in_enforce_mode_denies if {
	d := apx.route({v_deny}, {}, [], ctx)
	d.deny == {{"rule": "r", "msg": "too big"}}
	count(d.warn) == 0
}

test_a_require_approval_violation_requires_approval if {
	d := apx.route({v_approve}, {}, [], ctx)
	d.require_approval == {{"rule": "a", "msg": "needs eyes"}}
	count(d.deny) == 0
}

test_no_violation_gives_an_empty_decision if {
	apx.route(set(), {}, [waiver], ctx) == {"deny": set(), "require_approval": set(), "warn": set(), "dryrun": set(), "waived": set()}
}

test_warn_mode_reroutes_to_warn if {
	d := apx.route({v_deny}, {"r": "warn"}, [], ctx)
	count(d.deny) == 0
	d.warn == {{"rule": "r", "msg": "too big", "effect": "deny"}}
}

test_dryrun_mode_records_the_would_be_effect if {
	d := apx.route({v_deny, v_approve}, {"r": "dryrun", "a": "dryrun"}, [], ctx)
	count(d.deny) == 0
	count(d.require_approval) == 0
	d.dryrun == {{"rule": "r", "msg": "too big", "effect": "deny"}, {"rule": "a", "msg": "needs eyes", "effect": "require_approval"}}
}

test_an_unknown_mode_means_enforce if {
	d := apx.route({v_deny}, {"r": "enfroce"}, [], ctx)
	count(d.deny) == 1
}

test_the_input_guard_cannot_be_downgraded if {
	guard := {"rule": "policy-input", "effect": "deny", "msg": "no input", "kinds": null}
	d := apx.route({guard}, {"policy-input": "dryrun"}, [], ctx)
	count(d.deny) == 1
}

test_the_input_guard_cannot_be_waived if {
	guard := {"rule": "policy-input", "effect": "deny", "msg": "no input", "kinds": null}
	d := apx.route({guard}, {}, [object.union(waiver, {"rule": "policy-input"})], ctx)
	count(d.deny) == 1
	count(d.waived) == 0
}

test_a_live_waiver_moves_the_violation_to_waived if {
	d := apx.route({v_deny}, {}, [waiver], ctx)
	count(d.deny) == 0
	d.waived == {{
		"rule": "r", "msg": "too big", "ticket": "OPS-1", "reason": "load test",
		"expires": "2025-06-02T00:00:00Z", "tenant": null, "resource": null,
	}}
}

test_a_waiver_also_covers_a_rule_in_warn_mode if {
	d := apx.route({v_deny}, {"r": "warn"}, [waiver], ctx)
	count(d.warn) == 0
	count(d.waived) == 1
}

test_an_expired_waiver_does_not_apply if {
	d := apx.route({v_deny}, {}, [waiver], object.union(ctx, {"now_ns": now + 1}))
	count(d.deny) == 1
	count(d.waived) == 0
}

test_a_waiver_without_a_clock_does_not_apply if {
	d := apx.route({v_deny}, {}, [waiver], object.union(ctx, {"now_ns": null}))
	count(d.deny) == 1
}

test_a_waiver_without_a_ticket_does_not_apply if {
	d := apx.route({v_deny}, {}, [object.remove(waiver, ["ticket"])], ctx)
	count(d.deny) == 1
}

test_a_waiver_for_another_rule_does_not_apply if {
	d := apx.route({v_deny}, {}, [object.union(waiver, {"rule": "other"})], ctx)
	count(d.deny) == 1
}

test_a_tenant_scoped_waiver_applies_to_its_tenant if {
	d := apx.route({v_deny}, {}, [object.union(waiver, {"tenant": "acme"})], ctx)
	count(d.deny) == 0
	some use in d.waived
	use.tenant == "acme"
}

test_a_tenant_scoped_waiver_does_not_apply_to_another_tenant if {
	d := apx.route({v_deny}, {}, [object.union(waiver, {"tenant": "acme"})], object.union(ctx, {"tenants": ["globex"]}))
	count(d.deny) == 1
}

test_a_tenant_scoped_waiver_does_not_cover_an_intent_touching_another_tenant if {
	d := apx.route({v_deny}, {}, [object.union(waiver, {"tenant": "acme"})], object.union(ctx, {"tenants": ["acme", "globex"]}))
	count(d.deny) == 1
}

test_a_tenant_scoped_waiver_needs_to_know_the_tenants if {
	d := apx.route({v_deny}, {}, [object.union(waiver, {"tenant": "acme"})], object.union(ctx, {"tenants": []}))
	count(d.deny) == 1
}

test_a_resource_scoped_waiver_applies_to_its_resource if {
	d := apx.route({v_deny}, {}, [object.union(waiver, {"resource": "WorkerPool/checkout"})], ctx)
	count(d.deny) == 0
	some use in d.waived
	use.resource == "WorkerPool/checkout"
}

test_a_resource_scoped_waiver_does_not_apply_to_another_resource if {
	d := apx.route({v_deny}, {}, [object.union(waiver, {"resource": "WorkerPool/batch"})], ctx)
	count(d.deny) == 1
}

test_a_resource_scoped_waiver_does_not_cover_a_violation_from_several_resources if {
	c := object.union(ctx, {"resources": {"WorkerPool": ["WorkerPool/batch", "WorkerPool/checkout"]}})
	d := apx.route({v_deny}, {}, [object.union(waiver, {"resource": "WorkerPool/checkout"})], c)
	count(d.deny) == 1
}

test_a_resource_scoped_waiver_ignores_changes_of_kinds_the_rule_does_not_read if {
	c := object.union(ctx, {"resources": {"WorkerPool": ["WorkerPool/checkout"], "Route": ["Route/a"]}})
	d := apx.route({v_deny}, {}, [object.union(waiver, {"resource": "WorkerPool/checkout"})], c)
	count(d.deny) == 0
}

test_a_resource_scoped_waiver_on_a_rule_about_any_change_needs_that_change_alone if {
	v := object.union(v_approve, {"kinds": "any"})
	w := object.union(waiver, {"rule": "a", "resource": "WorkerPool/checkout"})
	c := object.union(ctx, {"resources": {"WorkerPool": ["WorkerPool/checkout"], "Route": ["Route/a"]}})
	count(apx.route({v}, {}, [w], c).require_approval) == 1
	count(apx.route({v}, {}, [w], ctx).require_approval) == 0
}

test_a_resource_scoped_waiver_does_not_cover_a_violation_of_unknown_origin if {
	v := object.union(v_deny, {"kinds": null})
	d := apx.route({v}, {}, [object.union(waiver, {"resource": "WorkerPool/checkout"})], ctx)
	count(d.deny) == 1
}

test_normalize_keeps_a_well_formed_violation if {
	apx.normalize("routes", v_deny) == v_deny
}

test_normalize_turns_plain_text_into_a_denial_named_for_its_package if {
	apx.normalize("routes", "no") == {"rule": "routes", "effect": "deny", "msg": "no", "kinds": null}
}

test_normalize_turns_an_unknown_effect_into_deny if {
	apx.normalize("routes", {"rule": "r", "effect": "block", "msg": "m"}).effect == "deny"
}

test_normalize_gives_a_violation_without_a_message_one if {
	apx.normalize("routes", {"rule": "r"}).msg == "a rule in package routes fired without a message"
}

test_normalize_turns_any_other_value_into_a_denial if {
	apx.normalize("routes", 5).effect == "deny"
}

test_normalize_accepts_kinds_as_an_array if {
	apx.normalize("routes", object.union(v_deny, {"kinds": ["Route", "Product"]})).kinds == {"Product", "Route"}
}
