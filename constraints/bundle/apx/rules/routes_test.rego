package apx_test.routes

import rego.v1

fired(rule) := {v.msg | some v in data.apx.rules.routes.violation; v.rule == rule}

test_max_routes_per_intent_fires_above_the_limit if {
	msgs := fired("max-routes-per-intent") with input.blast as {"routes_touched": 51}
	msgs == {"the intent touches 51 routes; at most 50 may change in one intent"}
}

test_max_routes_per_intent_allows_the_limit if {
	count(fired("max-routes-per-intent")) == 0 with input.blast as {"routes_touched": 50}
}

test_max_routes_per_intent_follows_data_limits if {
	count(fired("max-routes-per-intent")) == 1 with input.blast as {"routes_touched": 11}
		with data.apx.limits.max_routes_per_intent as 10
}

test_route_limits_say_they_come_from_routes if {
	vs := data.apx.rules.routes.violation with input.blast as {"routes_touched": 51}
	some v in vs
	v.kinds == {"Route"}
}

test_max_routes_per_hour_fires_and_names_earlier_intents if {
	msgs := fired("max-routes-per-hour") with input.cumulative as {"window": "1h", "routes": 51, "intents": ["in-1", "in-2"]}
	msgs == {"with this intent the agent has touched 51 distinct routes within 1h (limit 50); earlier intents counted: in-1, in-2"}
}

# The message reads optional fields; a missing one must not make the rule undefined.
test_max_routes_per_hour_fires_without_the_optional_fields if {
	count(fired("max-routes-per-hour")) == 1 with input.cumulative as {"routes": 51}
}

test_max_routes_per_hour_allows_the_limit if {
	count(fired("max-routes-per-hour")) == 0 with input.cumulative as {"routes": 50, "intents": ["in-1"]}
}
