"""Blame's pure part: field paths, values, before/after, and two agents fighting over a field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.blame import ABSENT, Landed, blame, format_path, parse_field_path, value_at
from orchestrator.decision import Status

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
POOL = {
    "apiVersion": "apx/v1",
    "kind": "WorkerPool",
    "metadata": {"name": "checkout", "tenant": "acme"},
    "spec": {"replicas": 4, "minReplicas": 2, "maxReplicas": 20, "accelerator": "none"},
}


def pool(**spec: object) -> str:
    return yaml.safe_dump({**POOL, "spec": {**POOL["spec"], **spec}}, sort_keys=False)  # type: ignore[dict-item]


def landed(
    n: int,
    agent: str,
    before: str | None,
    after: str | None,
    *,
    environment: str = "dev",
    at: datetime | None = None,
) -> Landed:
    return Landed(
        intent_id=f"in-{n}",
        agent=agent,
        status=Status.APPLIED,
        environment=environment,
        at=at or T0 + timedelta(minutes=n),
        commit=f"{n:040x}",
        before=before,
        after=after,
    )


# -- field paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("spec.replicas", ("spec", "replicas")),
        ("spec.plans[0].rateLimit.rps", ("spec", "plans", 0, "rateLimit", "rps")),
        ("spec.ingress[1].ports[0]", ("spec", "ingress", 1, "ports", 0)),
        ('metadata.labels["app.kubernetes.io/name"]', ("metadata", "labels", "app.kubernetes.io/name")),
        ("metadata.labels['team']", ("metadata", "labels", "team")),
    ],
)
def test_field_paths_read_as_users_write_them(text: str, path: tuple[object, ...]) -> None:
    assert parse_field_path(text) == path
    assert parse_field_path(format_path(parse_field_path(text))) == path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("spec..replicas", "character 6"),
        ("spec.", "character 6"),
        (".spec", "character 1"),
        ("spec.plans[x]", "[N]"),
        ("spec.plans[0", "[N]"),
        ("spec replicas", "character 5"),
        ("spec.plans[0]rps", "character 14"),
    ],
)
def test_a_bad_field_path_is_refused_saying_where(text: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_field_path(text)
    assert says in str(caught.value)
    assert "spec.plans[0].rateLimit.rps" in str(caught.value)  # an example of the right form


_keys = st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=8)


@given(
    st.lists(st.one_of(_keys, st.integers(0, 99)), min_size=1, max_size=6).filter(
        lambda p: isinstance(p[0], str)
    )
)
def test_every_path_survives_formatting_and_parsing(steps: list[str | int]) -> None:
    path = tuple(steps)
    if any(isinstance(s, str) and ("]" in s or ('"' in s and "'" in s)) for s in path):
        return  # such a key cannot be typed
    assert parse_field_path(format_path(path)) == path


def test_value_at_finds_nested_values_and_says_absent_for_anything_missing() -> None:
    document = {"spec": {"plans": [{"name": "pro", "rateLimit": {"rps": 100}}], "note": None}}
    assert value_at(document, ("spec", "plans", 0, "rateLimit", "rps")) == 100
    assert value_at(document, ("spec", "plans", 0, "rateLimit")) == {"rps": 100}
    assert value_at(document, ("spec", "note")) is None  # present, and null
    for missing in (
        ("spec", "plans", 1),
        ("spec", "plans", "0"),
        ("spec", "replicas"),
        ("spec", "note", "x"),
    ):
        assert value_at(document, missing) is ABSENT
    assert value_at(ABSENT, ("spec",)) is ABSENT


# -- before / after -----------------------------------------------------------------------


def test_without_a_field_each_line_lists_the_fields_the_intent_changed() -> None:
    lines = blame(
        [
            landed(1, "builder", None, pool()),
            landed(2, "optimizer", pool(), pool(replicas=6, maxReplicas=30)),
        ]
    )
    created, scaled = lines
    assert ("spec.replicas", ABSENT, 4) in [(c.field, c.before, c.after) for c in created.changes]
    assert [(c.field, c.before, c.after) for c in scaled.changes] == [
        ("spec.replicas", 4, 6),
        ("spec.maxReplicas", 20, 30),
    ]


def test_with_a_field_only_intents_that_changed_it_are_listed() -> None:
    lines = blame(
        [
            landed(1, "builder", pool(), pool(maxReplicas=30)),
            landed(2, "optimizer", pool(maxReplicas=30), pool(maxReplicas=30, replicas=6)),
            landed(3, "security", pool(replicas=6), pool(replicas=6, accelerator="gpu")),
        ],
        path=("spec", "replicas"),
    )
    assert [(line.landed.intent_id, line.changes[0].before, line.changes[0].after) for line in lines] == [
        ("in-2", 4, 6)
    ]


def test_a_field_of_a_list_item_is_compared_whole_when_the_path_names_a_mapping() -> None:
    before = yaml.safe_dump({"spec": {"plans": [{"name": "pro", "rateLimit": {"rps": 100, "burst": 200}}]}})
    after = yaml.safe_dump({"spec": {"plans": [{"name": "pro", "rateLimit": {"rps": 150, "burst": 200}}]}})
    (line,) = blame([landed(1, "optimizer", before, after)], path=("spec", "plans", 0, "rateLimit"))
    assert (line.changes[0].before, line.changes[0].after) == (
        {"rps": 100, "burst": 200},
        {"rps": 150, "burst": 200},
    )
    (rps,) = blame([landed(1, "optimizer", before, after)], path=("spec", "plans", 0, "rateLimit", "rps"))
    assert rps.changes[0].field == "spec.plans[0].rateLimit.rps"


def test_a_deleted_resource_shows_its_field_going_absent() -> None:
    (line,) = blame([landed(1, "builder", pool(), None)], path=("spec", "replicas"))
    assert (line.changes[0].before, line.changes[0].after) == (4, ABSENT)
    assert line.fights == ()


def test_a_type_change_is_a_change() -> None:
    (line,) = blame([landed(1, "builder", pool(replicas=4), pool(replicas="4"))], path=("spec", "replicas"))
    assert (line.changes[0].before, line.changes[0].after) == (4, "4")


def test_lines_come_oldest_first_and_equal_times_keep_arrival_order() -> None:
    same = T0 + timedelta(hours=1)
    lines = blame(
        [
            landed(3, "c", pool(replicas=5), pool(replicas=6), at=same),
            landed(1, "a", pool(replicas=3), pool(replicas=4), at=T0),
            landed(4, "d", pool(replicas=6), pool(replicas=7), at=same),
        ]
    )
    assert [line.landed.intent_id for line in lines] == ["in-1", "in-3", "in-4"]


def test_an_unreadable_commit_stays_in_the_history_as_a_gap() -> None:
    gap = Landed(
        intent_id="in-2",
        agent="optimizer",
        status=Status.MERGED,
        environment="prod",
        at=T0 + timedelta(minutes=2),
        commit="e" * 40,
        before=None,
        after=None,
        missing=True,
    )
    lines = blame([landed(1, "builder", pool(), pool(replicas=6)), gap], path=("spec", "replicas"))
    assert [(line.landed.intent_id, line.changes) for line in lines][1] == ("in-2", ())


# -- fights -----------------------------------------------------------------------------


def test_a_value_set_back_by_another_agent_is_a_fight_naming_the_change_it_undoes() -> None:
    lines = blame(
        [
            landed(1, "optimizer", pool(replicas=4), pool(replicas=6)),
            landed(2, "builder", pool(replicas=6), pool(replicas=4)),
            landed(3, "optimizer", pool(replicas=4), pool(replicas=6)),
        ],
        path=("spec", "replicas"),
    )
    assert lines[0].fights == ()
    (fight,) = lines[1].fights
    assert (fight.field, fight.value, fight.undoes, fight.agent) == ("spec.replicas", 4, "in-1", "optimizer")
    (again,) = lines[2].fights
    assert (again.value, again.undoes, again.agent) == (6, "in-2", "builder")


def test_a_return_to_an_older_value_after_several_steps_is_a_fight() -> None:
    lines = blame(
        [
            landed(1, "builder", pool(replicas=4), pool(replicas=6)),
            landed(2, "builder", pool(replicas=6), pool(replicas=8)),
            landed(3, "optimizer", pool(replicas=8), pool(replicas=4)),
        ],
        path=("spec", "replicas"),
    )
    (fight,) = lines[2].fights
    assert (fight.undoes, fight.agent, fight.value) == ("in-1", "builder", 4)


def test_an_agent_undoing_itself_or_a_change_in_another_environment_is_no_fight() -> None:
    lines = blame(
        [
            landed(1, "optimizer", pool(replicas=4), pool(replicas=6)),
            landed(2, "optimizer", pool(replicas=6), pool(replicas=4)),
            landed(3, "builder", pool(replicas=4), pool(replicas=6), environment="prod"),
            landed(4, "builder", pool(replicas=6), pool(replicas=5)),
        ],
        path=("spec", "replicas"),
    )
    assert [line.fights for line in lines] == [(), (), (), ()]


def test_without_a_field_fights_are_found_per_field() -> None:
    lines = blame(
        [
            landed(1, "optimizer", pool(), pool(replicas=6, maxReplicas=30)),
            landed(2, "security", pool(replicas=6, maxReplicas=30), pool(replicas=6, maxReplicas=20)),
        ]
    )
    (fight,) = lines[1].fights
    assert (fight.field, fight.value, fight.undoes) == ("spec.maxReplicas", 20, "in-1")
