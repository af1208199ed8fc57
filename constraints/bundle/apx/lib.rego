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

# Strings as they are, anything else formatted. Messages are built with concat:
# regopy's sprintf puts quotes around strings computed by rules or passed to
# functions (%s and %v alike), so sprintf only ever formats non-strings here.
text(x) := x if is_string(x) else := sprintf("%v", [x])
