package apx_test.quota

import rego.v1

msgs := {v.msg | some v in data.apx.rules.quota.violation; v.rule == "max-quota-factor"}

test_quota_raise_above_twice_is_denied if {
	msgs == {"the intent raises a quota 2.5x; at most 2x is allowed"} with input.blast as {"quota_factor": 2.5, "rate_limit_factor": 1}
}

test_rate_limit_raise_above_twice_is_denied if {
	msgs == {"the intent raises a rate limit 3x; at most 2x is allowed"} with input.blast as {"quota_factor": 1, "rate_limit_factor": 3}
}

test_both_raises_are_reported if {
	count(msgs) == 2 with input.blast as {"quota_factor": 4, "rate_limit_factor": 3}
}

test_raises_up_to_twice_are_allowed if {
	count(msgs) == 0 with input.blast as {"quota_factor": 2, "rate_limit_factor": 2}
}

# Each half reads only its own field: a missing rate-limit factor cannot hide a quota raise.
test_quota_raise_fires_without_a_rate_limit_factor if {
	count(msgs) == 1 with input.blast as {"quota_factor": 3}
}
