"""A→B→A on one field is named as a fight between the two agents."""

from __future__ import annotations

from typing import Any

from orchestrator.oscillation import PastChange, detect


def pool(replicas: int, spot: bool = False) -> dict[str, Any]:
    return {"spec": {"replicas": replicas, "spot": spot}}


def past(agent: str, before: dict[str, Any], after: dict[str, Any], intent: str = "in-1") -> PastChange:
    return PastChange(intent_id=intent, agent=agent, target="WorkerPool/checkout", before=before, after=after)


def test_setting_a_field_back_after_another_agents_change_is_an_oscillation() -> None:
    history = [past("optimizer", pool(4), pool(6))]
    [found] = detect(
        agent="builder", target="WorkerPool/checkout", current=pool(6), proposed=pool(4), history=history
    )
    assert found.field == "spec.replicas" and found.agents == ("optimizer", "builder")
    assert "optimizer and builder are fighting" in found.describe()
    assert "in-1" in found.describe()


def test_the_same_agent_revising_its_own_change_is_not_an_oscillation() -> None:
    history = [past("optimizer", pool(4), pool(6))]
    assert (
        detect(
            agent="optimizer",
            target="WorkerPool/checkout",
            current=pool(6),
            proposed=pool(4),
            history=history,
        )
        == []
    )


def test_moving_on_to_a_third_value_is_not_an_oscillation() -> None:
    history = [past("optimizer", pool(4), pool(6))]
    assert (
        detect(
            agent="builder", target="WorkerPool/checkout", current=pool(6), proposed=pool(8), history=history
        )
        == []
    )


def test_a_change_to_another_field_is_not_an_oscillation() -> None:
    history = [past("optimizer", pool(4), pool(6))]
    assert (
        detect(
            agent="builder",
            target="WorkerPool/checkout",
            current=pool(6),
            proposed=pool(6, spot=True),
            history=history,
        )
        == []
    )


def test_when_the_value_moved_on_since_it_is_not_an_oscillation() -> None:
    history = [past("optimizer", pool(4), pool(6))]
    assert (
        detect(
            agent="builder", target="WorkerPool/checkout", current=pool(7), proposed=pool(4), history=history
        )
        == []
    )
