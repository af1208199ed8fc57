package apx_test.replicas

import rego.v1

fired := {v.msg | some v in data.apx.rules.replicas.violation; v.rule == "max-replicas"}

test_more_than_100_replicas_is_denied if {
	fired == {"the intent sets replicas to 101; at most 100 are allowed"} with input.blast as {"replicas_after_max": 101}
}

test_100_replicas_is_allowed if {
	count(fired) == 0 with input.blast as {"replicas_after_max": 100}
}

test_replica_violation_comes_from_worker_pools if {
	vs := data.apx.rules.replicas.violation with input.blast as {"replicas_after_max": 150}
	some v in vs
	v.kinds == {"WorkerPool"}
}
