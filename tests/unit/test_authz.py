"""The role rules: what each role may do, and only for its tenants."""

from __future__ import annotations

import pytest

from orchestrator.authz import RULES, Action, authorize
from orchestrator.errors import Forbidden
from orchestrator.principals import Principal, Role


def principal(role: Role, *tenants: str) -> Principal:
    return Principal(
        name=f"a-{role.value}",
        role=role,
        tenants=frozenset(tenants or ("acme",)),
        agent="optimizer" if role is Role.AGENT else None,
    )


#: The contract, spelled out once more by hand so a change to RULES must change this too.
ALLOWED = {
    Role.AGENT: {Action.SUBMIT, Action.READ_INTENTS, Action.READ_POLICY, Action.READ_ENVIRONMENT},
    Role.REVIEWER: {
        Action.READ_INTENTS,
        Action.READ_PRS,
        Action.REVIEW,
        Action.READ_BREAKERS,
        Action.READ_POLICY,
        Action.READ_ENVIRONMENT,
    },
    Role.ENGINEER: {
        Action.READ_INTENTS,
        Action.READ_PRS,
        Action.READ_BREAKERS,
        Action.RESET_BREAKER,
        Action.AUDIT_VERIFY,
        Action.AUDIT_PROOF,
        Action.READ_POLICY,
        Action.READ_ENVIRONMENT,
    },
    Role.ADMIN: set(Action) - {Action.SUBMIT},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_each_role_may_do_exactly_its_actions(role: Role, action: Action) -> None:
    who = principal(role)
    if action in ALLOWED[role]:
        authorize(who, action, tenant="acme")
    else:
        with pytest.raises(Forbidden, match=f"role {who.role_text} may not {action.value}"):
            authorize(who, action, tenant="acme")


def test_every_action_has_a_rule() -> None:
    assert set(RULES) == set(Action)


@pytest.mark.parametrize("role", list(Role))
def test_no_role_acts_on_a_tenant_it_does_not_hold(role: Role) -> None:
    who = principal(role, "acme")
    for action in ALLOWED[role]:
        with pytest.raises(Forbidden, match=r"tenant 'globex' \(its tenants: acme\)"):
            authorize(who, action, tenant="globex")


def test_an_agent_can_never_approve_reset_or_read_the_audit_log_even_with_every_tenant() -> None:
    agent = principal(Role.AGENT, "*")
    for action in (Action.REVIEW, Action.RESET_BREAKER, Action.AUDIT_EXPORT, Action.AUDIT_PROOF):
        with pytest.raises(Forbidden):
            authorize(agent, action, tenant="acme")


def test_data_of_no_one_tenant_needs_every_tenant() -> None:
    with pytest.raises(Forbidden, match="data of every tenant"):
        authorize(principal(Role.ENGINEER, "acme", "globex"), Action.AUDIT_PROOF, tenant="*")
    authorize(principal(Role.ENGINEER, "*"), Action.AUDIT_PROOF, tenant="*")


def test_the_role_check_alone_passes_without_a_tenant() -> None:
    authorize(principal(Role.REVIEWER, "acme"), Action.READ_PRS)
    with pytest.raises(Forbidden):
        authorize(principal(Role.REVIEWER, "acme"), Action.AUDIT_EXPORT)
