package apx_test.network

import rego.v1

fired(rule) := {v | some v in data.apx.rules.network.violation; v.rule == rule}

test_world_ingress_is_denied if {
	vs := fired("no-world-ingress") with input.blast.network as {"changed": true, "opens_world": true, "added_cidrs": ["0.0.0.0/0"]}
	some v in vs
	v.effect == "deny"
	contains(v.msg, "0.0.0.0/0")
}

test_world_ingress_is_denied_without_the_cidr_lists if {
	count(fired("no-world-ingress")) == 1 with input.blast.network as {"changed": true, "opens_world": true}
}

test_narrow_ingress_is_not_denied if {
	count(fired("no-world-ingress")) == 0 with input.blast.network as {"changed": true, "opens_world": false, "added_cidrs": ["10.0.0.0/8"]}
}

test_network_change_needs_approval if {
	vs := fired("network-change-needs-approval") with input.blast.network as {"changed": true, "opens_world": false, "added_cidrs": ["10.1.0.0/16"], "removed_cidrs": []}
	some v in vs
	v.effect == "require_approval"
	v.msg == "network allowlist changes need human approval in every environment (added: 10.1.0.0/16; removed: none)"
}

test_network_change_needs_approval_without_the_cidr_lists if {
	count(fired("network-change-needs-approval")) == 1 with input.blast.network as {"changed": true, "opens_world": false}
}

test_unchanged_network_needs_no_approval if {
	count(fired("network-change-needs-approval")) == 0 with input.blast.network as {"changed": false, "opens_world": false}
}
