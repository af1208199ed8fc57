package apx.rules.replicas

import rego.v1

import data.apx.lib

# replicas_after_max is the largest of replicas/maxReplicas any changed WorkerPool ends with.
violation contains {"rule": "max-replicas", "effect": "deny", "msg": msg, "kinds": {"WorkerPool"}} if {
	replicas := input.blast.replicas_after_max
	replicas > data.apx.limits.max_replicas
	msg := concat("", ["the intent sets replicas to ", lib.text(replicas), "; at most ", lib.text(data.apx.limits.max_replicas), " are allowed"])
}
