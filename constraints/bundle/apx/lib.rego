# Helpers the rules share. Rules read scalars from the input and never iterate
# input.changes: in regopy each object visited costs ~0.1 ms, which for a
# 60-route intent was most of the evaluation.
package apx.lib

import rego.v1

# "a, b, c" or the fallback when there is nothing to list; never undefined, so a
# message built with it cannot make its rule disappear.
listing(xs, fallback) := fallback if {
	count(xs) == 0
} else := concat(", ", [text(x) | some x in xs])

# A limit from data.apx.limits; missing limits default to the shipped values so
# a user's data.json cannot switch a rule off by omission. (Never read data.apx
# as a whole: it contains the rules, so that would be a recursion.)
limit(name) := data.apx.limits[name] if {
	is_number(data.apx.limits[name])
} else := _defaults[name]

_defaults := {
	"max_routes_per_intent": 50,
	"max_routes_per_window": 50,
	"max_quota_factor": 2,
	"max_rate_limit_factor": 2,
	"max_replicas": 100,
}

# Strings as they are, anything else formatted. Messages are built with concat:
# regopy's sprintf puts quotes around strings computed by rules or passed to
# functions (%s and %v alike), so sprintf only ever formats non-strings here.
text(x) := x if is_string(x) else := sprintf("%v", [x])
