package apx_test.guard

import rego.v1

msgs := {v.msg | some v in data.apx.rules.guard.violation}

test_a_complete_input_passes_the_guard if {
	count(msgs) == 0 with input.intent as {"id": "in-1", "agent": "builder", "tenant": "acme", "environment": "dev", "mode": "auto"}
		with input.blast as {
			"routes_touched": 1, "quota_factor": 1, "rate_limit_factor": 1, "replicas_after_max": 0,
			"network": {"changed": false, "opens_world": false},
		}
		with input.cumulative as {"window": "1h", "routes": 1, "intents": []}
		with input.now_ns as 1
}

test_a_missing_field_is_denied_by_name if {
	"the policy input has no input.blast.routes_touched of type number, so the policy cannot judge this intent" in msgs with input.blast as {"quota_factor": 1}
}

test_a_mistyped_field_is_denied if {
	"the policy input has no input.blast.network.opens_world of type boolean, so the policy cannot judge this intent" in msgs with input.blast.network as {"changed": false, "opens_world": "no"}
}

test_no_input_at_all_is_denied_field_by_field if {
	count(msgs) == 10
	"the policy input has no input.now_ns of type number, so the policy cannot judge this intent" in msgs
}

test_a_missing_limit_is_denied if {
	"the policy data has no number data.apx.limits.max_replicas, so the policy cannot judge this intent" in msgs with data.apx.limits as {"max_routes_per_intent": 50}
}
