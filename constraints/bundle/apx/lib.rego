# Helpers the rules share. Sets hold "Kind/name" strings, never whole objects:
# regopy's cost grows with the size of what a rule builds.
package apx.lib

import rego.v1

# The changed resources of the given kinds, as a set of "Kind/name" labels: what
# a resource-scoped waiver is matched against. (A set, not sort(...): regopy's
# sort() returns arrays that never compare equal to another array.)
changed(kinds) := {concat("/", [c.kind, c.name]) |
	some c in input.changes
	c.kind in kinds
}

# Every changed resource, whatever its kind.
all_changed := {concat("/", [c.kind, c.name]) | some c in input.changes}

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
