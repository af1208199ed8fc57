# Network exposure. regopy has no net.cidr_* built-ins, so the orchestrator
# computes the facts in Python (ipaddress) and these rules read booleans only.
package apx.rules.network

import rego.v1

import data.apx.lib

violation contains {"rule": "no-world-ingress", "effect": "deny", "msg": msg, "kinds": {"NetworkPolicy"}} if {
	input.blast.network.opens_world == true
	added := lib.listing(object.get(input.blast.network, "added_cidrs", []), "not listed")
	msg := concat("", ["the intent opens ingress to the whole internet (0.0.0.0/0 or ::/0); CIDRs added: ", added])
}

violation contains {"rule": "network-change-needs-approval", "effect": "require_approval", "msg": msg, "kinds": {"NetworkPolicy"}} if {
	input.blast.network.changed == true
	added := lib.listing(object.get(input.blast.network, "added_cidrs", []), "none")
	removed := lib.listing(object.get(input.blast.network, "removed_cidrs", []), "none")
	msg := concat("", ["network allowlist changes need human approval in every environment (added: ", added, "; removed: ", removed, ")"])
}
