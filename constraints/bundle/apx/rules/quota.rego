# Quota and rate-limit raises: the factor is new/old for the plan that grew most.
package apx.rules.quota

import rego.v1

import data.apx.lib

violation contains {"rule": "max-quota-factor", "effect": "deny", "msg": msg, "kinds": {"Product"}} if {
	factor := input.blast.quota_factor
	factor > data.apx.limits.max_quota_factor
	msg := concat("", ["the intent raises a quota ", lib.text(factor), "x; at most ", lib.text(data.apx.limits.max_quota_factor), "x is allowed"])
}

violation contains {"rule": "max-quota-factor", "effect": "deny", "msg": msg, "kinds": {"Product"}} if {
	factor := input.blast.rate_limit_factor
	factor > data.apx.limits.max_rate_limit_factor
	msg := concat("", ["the intent raises a rate limit ", lib.text(factor), "x; at most ", lib.text(data.apx.limits.max_rate_limit_factor), "x is allowed"])
}
