"""Who may do what: the role rules of the HTTP API, as one pure function.

"AI is not root": an agent proposes and reads its own tenants' state, and
nothing more — it cannot approve, reset a breaker or read the audit log. The
API calls :func:`authorize` before every action; a refusal is a
:class:`~orchestrator.errors.Forbidden` whose message says which rule refused it,
and :mod:`orchestrator.api.errors` turns it into an audited 403.

No I/O here, so the whole table is unit-tested (``tests/unit/test_authz.py``).
"""

from __future__ import annotations

from enum import StrEnum

from orchestrator.errors import Forbidden
from orchestrator.principals import ALL_TENANTS, Principal, Role


class Action(StrEnum):
    SUBMIT = "submit intents"
    READ_INTENTS = "read intents"
    READ_PRS = "read PRs"
    REVIEW = "approve or reject PRs"
    READ_BREAKERS = "read breakers"
    RESET_BREAKER = "reset breakers"
    AUDIT_VERIFY = "verify the audit log"
    AUDIT_PROOF = "read audit proofs"
    AUDIT_EXPORT = "export the audit log"
    READ_POLICY = "read the policy"
    READ_ENVIRONMENT = "read environments"


_EVERYONE = frozenset(Role)
_HUMANS = frozenset({Role.REVIEWER, Role.ENGINEER, Role.ADMIN})

#: The roles allowed each action. Every action is also limited to the principal's
#: tenants (see :func:`authorize`); audit export is admin-only because the chain
#: holds every tenant's entries.
RULES: dict[Action, frozenset[Role]] = {
    Action.SUBMIT: frozenset({Role.AGENT}),
    Action.READ_INTENTS: _EVERYONE,
    Action.READ_PRS: _HUMANS,
    Action.REVIEW: frozenset({Role.REVIEWER, Role.ADMIN}),
    Action.READ_BREAKERS: _HUMANS,
    Action.RESET_BREAKER: frozenset({Role.ENGINEER, Role.ADMIN}),
    Action.AUDIT_VERIFY: frozenset({Role.ENGINEER, Role.ADMIN}),
    Action.AUDIT_PROOF: frozenset({Role.ENGINEER, Role.ADMIN}),
    Action.AUDIT_EXPORT: frozenset({Role.ADMIN}),
    Action.READ_POLICY: _EVERYONE,
    Action.READ_ENVIRONMENT: _EVERYONE,
}


def authorize(principal: Principal, action: Action, *, tenant: str | None = None) -> None:
    """Return if ``principal`` may do ``action`` (on ``tenant``'s data); raise Forbidden if not.

    ``tenant=None`` checks the role only: the caller then limits what it returns
    to :meth:`Principal.may_see` tenants (a list of intents, of PRs). Pass
    ``tenant="*"`` for something that belongs to no one tenant (an audit entry
    about the policy): only principals with every tenant may touch it.
    """
    allowed = RULES[action]
    if principal.role not in allowed:
        roles = ", ".join(sorted(r.value for r in allowed))
        raise Forbidden(f"role {principal.role_text} may not {action.value} (allowed: {roles})")
    if tenant is not None and not principal.may_see(tenant):
        mine = ", ".join(sorted(principal.tenants))
        what = "data of every tenant" if tenant == ALL_TENANTS else f"tenant {tenant!r}"
        raise Forbidden(f"{principal.name} may not {action.value} for {what} (its tenants: {mine})")
