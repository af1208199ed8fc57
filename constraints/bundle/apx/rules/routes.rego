# Route limits: per intent, and per agent+tenant+environment over a window, so
# sixty one-route intents cannot get around the per-intent limit.
package apx.rules.routes

import rego.v1

import data.apx.lib

violation contains {"rule": "max-routes-per-intent", "effect": "deny", "msg": msg, "kinds": {"Route"}} if {
	touched := input.blast.routes_touched
	touched > data.apx.limits.max_routes_per_intent
	msg := concat("", ["the intent touches ", lib.text(touched), " routes; at most ", lib.text(data.apx.limits.max_routes_per_intent), " may change in one intent"])
}

# input.cumulative.routes counts distinct routes this agent touched in this
# tenant and environment within the window, this intent included.
violation contains {"rule": "max-routes-per-hour", "effect": "deny", "msg": msg, "kinds": {"Route"}} if {
	routes := input.cumulative.routes
	routes > data.apx.limits.max_routes_per_window
	window := lib.text(object.get(input.cumulative, "window", "1h"))
	earlier := lib.listing(object.get(input.cumulative, "intents", []), "none recorded")
	msg := concat("", [
		"with this intent the agent has touched ", lib.text(routes), " distinct routes within ", window,
		" (limit ", lib.text(data.apx.limits.max_routes_per_window), "); earlier intents counted: ", earlier,
	])
}
