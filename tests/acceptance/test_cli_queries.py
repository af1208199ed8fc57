"""Querying the intent log with the installed ``apx``: list filters and paging, show's causes
and effects, and blame over a field two agents fight over (issue 4).

One home is shared by the module: three agents take turns on ``WorkerPool/checkout``
in dev, each caused by the one before (optimizer 4→6, builder 6→4, optimizer 4→6 and
maxReplicas 20→30), and a builder intent is rejected on the way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
APX = shutil.which("apx", path=str(Path(sys.executable).parent)) or "apx"


def apx(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APX_HOME": str(home)}
    env.pop("APX_DATABASE_URL", None)
    return subprocess.run([APX, *args], capture_output=True, text=True, input=stdin, env=env, timeout=120)


def scale(replicas: int, max_replicas: int = 20, *, caused_by: str | None = None) -> str:
    metadata = {"tenant": "acme", **({"causedBy": caused_by} if caused_by else {})}
    return yaml.safe_dump(
        {
            "apiVersion": "apx/v1",
            "kind": "Intent",
            "metadata": metadata,
            "spec": {
                "environment": "dev",
                "rationale": f"checkout to {replicas} replicas",
                "changes": [
                    {
                        "action": "update",
                        "resource": {
                            "apiVersion": "apx/v1",
                            "kind": "WorkerPool",
                            "metadata": {"name": "checkout", "tenant": "acme"},
                            "spec": {
                                "replicas": replicas,
                                "minReplicas": 2,
                                "maxReplicas": max_replicas,
                                "accelerator": "none",
                                "spot": False,
                            },
                        },
                    }
                ],
            },
        }
    )


@dataclass(frozen=True)
class Story:
    home: Path
    first: str  # optimizer 4 → 6
    second: str  # builder 6 → 4, caused by first
    rejected: str  # builder, invalid replicas
    third: str  # optimizer 4 → 6 and maxReplicas 20 → 30, caused by second


def submit(home: Path, text: str, agent: str) -> dict[str, object]:
    result = apx("submit", "-", "--agent", agent, "--json", home=home, stdin=text)
    decision: dict[str, object] = json.loads(result.stdout)
    return decision


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    home = tmp_path_factory.mktemp("queries") / "home"
    assert apx("init", home=home).returncode == 0
    settings = yaml.safe_load((home / "apx.yaml").read_text())
    # Three deploys by two agents within minutes: neither the rate limit nor the breaker
    # may hold them, and the set-back must land so blame has a fight to show.
    settings["admission"]["rate_limit"] = {"deploys": 100, "per": "5m"}
    settings["admission"]["breaker"] = {
        "max_deploys": 100,
        "window": "15m",
        "cooldown": "30m",
        "trip_on_oscillation": False,
    }
    (home / "apx.yaml").write_text(yaml.safe_dump(settings))

    first = submit(home, scale(6), "optimizer")
    second = submit(home, scale(4, caused_by=str(first["intent_id"])), "builder")
    invalid = (EXAMPLES / "builder-invalid-replicas.yaml").read_text()
    rejected = submit(home, invalid, "builder")
    third = submit(home, scale(6, 30, caused_by=str(second["intent_id"])), "optimizer")
    statuses = [d["status"] for d in (first, second, rejected, third)]
    assert statuses == ["applied", "applied", "rejected", "applied"], [
        (d["status"], d["reasons"]) for d in (first, second, rejected, third)
    ]
    return Story(
        home=home,
        first=str(first["intent_id"]),
        second=str(second["intent_id"]),
        rejected=str(rejected["intent_id"]),
        third=str(third["intent_id"]),
    )


def listed(story: Story, *args: str) -> list[str]:
    result = apx("intents", "list", "-o", "json", *args, home=story.home)
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json.loads(result.stdout)]


def one_line_error(result: subprocess.CompletedProcess[str], *mentions: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in mentions:
        assert text in lines[0], lines[0]


# -- intents list ---------------------------------------------------------------------


def test_caused_by_lists_the_intents_an_intent_led_to(story: Story) -> None:
    assert listed(story, "--caused-by", story.first) == [story.second]
    assert listed(story, "--caused-by", story.second) == [story.third]
    assert listed(story, "--caused-by", story.third) == []


def test_reason_finds_intents_by_any_reason_ignoring_case(story: Story) -> None:
    assert listed(story, "--reason", "OSCILLATION") == [story.third, story.second]
    assert listed(story, "--reason", "oscillation", "--agent", "builder") == [story.second]
    assert listed(story, "--reason", "replicas", "--status", "rejected") == [story.rejected]
    assert listed(story, "--reason", "no such words anywhere") == []


def test_until_and_since_take_timestamps_and_durations(story: Story) -> None:
    shown = json.loads(apx("intents", "show", story.second, "--json", home=story.home).stdout)
    second_received = shown["timeline"][0]["at"]
    assert listed(story, "--until", second_received) == [story.first]
    assert story.first not in listed(story, "--since", second_received)
    assert listed(story, "--until", "1h") == []  # nothing is an hour old yet
    assert len(listed(story, "--since", "1h", "--until", "2026-01-01T00:00")) == 0
    assert len(listed(story, "--until", "2999-01-01T00:00")) == 4


def test_json_pages_follow_the_cursor_printed_on_stderr(story: Story) -> None:
    everything = listed(story)
    seen: list[str] = []
    args = ["--limit", "3"]
    for _ in range(5):
        result = apx("intents", "list", "-o", "json", *args, home=story.home)
        assert result.returncode == 0
        seen += [row["id"] for row in json.loads(result.stdout)]  # stdout is only the JSON array
        if not result.stderr:
            break
        hint = result.stderr.strip()
        assert hint.startswith("apx: more: --cursor ")
        args = ["--limit", "3", "--cursor", hint.removeprefix("apx: more: --cursor ")]
    assert seen == everything and len(everything) == 4


def test_the_table_prints_the_next_cursor_after_itself(story: Story) -> None:
    result = apx("intents", "list", "--limit", "2", home=story.home)
    assert result.returncode == 0
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("apx: more: --cursor ")
    rest = apx("intents", "list", "-o", "json", "--cursor", last.split()[-1], home=story.home)
    assert [row["id"] for row in json.loads(rest.stdout)] == [story.second, story.first]
    assert rest.stderr == ""  # the last page says nothing more


def test_cursors_combine_with_filters(story: Story) -> None:
    first_page = apx("intents", "list", "-o", "json", "--status", "applied", "--limit", "1", home=story.home)
    cursor = first_page.stderr.strip().split()[-1]
    assert listed(story, "--status", "applied", "--cursor", cursor) == [story.second, story.first]


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("--cursor", "not-a-cursor"), ("--cursor", "not-a-cursor")),
        (("--cursor", ""), ("--cursor",)),
        (("--until", "yesterday"), ("--until", "yesterday")),
        (("--since", "2026-13-45"), ("--since",)),
        (("--target", "Gadget/x"), ("--target",)),
    ],
)
def test_bad_list_options_are_one_line_naming_the_option(
    story: Story, args: tuple[str, ...], mentions: tuple[str, ...]
) -> None:
    one_line_error(apx("intents", "list", *args, home=story.home), *mentions)


# -- intents show -----------------------------------------------------------------------


def test_show_names_the_causal_chain_and_the_children(story: Story) -> None:
    text = apx("intents", "show", story.third, home=story.home).stdout
    chain = text[text.index("caused by") : text.index("timeline:")]
    assert chain.index(story.second) < chain.index(story.first)  # nearest first
    assert "builder" in chain and "optimizer" in chain and "applied" in chain

    middle = json.loads(apx("intents", "show", story.second, "--json", home=story.home).stdout)
    assert [(p["id"], p["agent"], p["status"]) for p in middle["parents"]] == [
        (story.first, "optimizer", "applied")
    ]
    assert [(c["id"], c["agent"], c["status"]) for c in middle["children"]] == [
        (story.third, "optimizer", "applied")
    ]
    root = json.loads(apx("intents", "show", story.first, "--json", home=story.home).stdout)
    assert root["parents"] == []


def test_show_gives_the_blast_radius(story: Story) -> None:
    shown = json.loads(apx("intents", "show", story.second, "--json", home=story.home).stdout)
    assert shown["blast_radius"]["replica_delta"] == -2
    assert shown["blast_radius"] == shown["decision"]["blast_radius"]
    text = apx("intents", "show", story.second, home=story.home).stdout
    radius = text[text.index("blast radius:") :]
    assert "replica_delta: -2" in radius and "replicas_before=6, replicas_after=4" in radius


# -- intents blame --------------------------------------------------------------------------


def blame(story: Story, *args: str) -> list[dict[str, object]]:
    result = apx("intents", "blame", *args, "-o", "json", home=story.home)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_blame_lists_who_changed_a_resource_oldest_first_with_commits(story: Story) -> None:
    rows = blame(story, "WorkerPool/checkout")
    assert [(r["intent_id"], r["agent"], r["status"]) for r in rows] == [
        (story.first, "optimizer", "applied"),
        (story.second, "builder", "applied"),
        (story.third, "optimizer", "applied"),
    ]
    fields = [sorted(c["field"] for c in r["changes"]) for r in rows]  # type: ignore[attr-defined]
    assert fields == [["spec.replicas"], ["spec.replicas"], ["spec.maxReplicas", "spec.replicas"]]
    log = subprocess.run(
        ["git", "-C", str(story.home / "config-repo"), "log", "--format=%H", "dev"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert [r["commit"] for r in rows] == list(reversed(log[:3]))


def test_blame_of_a_field_shows_old_and_new_values_and_the_fight(story: Story) -> None:
    rows = blame(story, "WorkerPool/checkout", "--field", "spec.replicas")
    assert [(r["before"], r["after"]) for r in rows] == [(4, 6), (6, 4), (4, 6)]
    assert rows[0]["fight"] is None
    assert rows[1]["fight"] == {
        "field": "spec.replicas",
        "value": 4,
        "undoes": story.first,
        "agent": "optimizer",
    }
    assert rows[2]["fight"] == {
        "field": "spec.replicas",
        "value": 6,
        "undoes": story.second,
        "agent": "builder",
    }

    table = apx("intents", "blame", "WorkerPool/checkout", "--field", "spec.replicas", home=story.home)
    assert table.returncode == 0
    assert "6 → 4" in table.stdout and "FIGHT" in table.stdout and "agents are fighting" in table.stdout


def test_blame_of_a_field_lists_only_the_intents_that_changed_it(story: Story) -> None:
    rows = blame(story, "WorkerPool/checkout", "--field", "spec.maxReplicas")
    assert [(r["intent_id"], r["before"], r["after"], r["fight"]) for r in rows] == [
        (story.third, 20, 30, None)
    ]
    assert blame(story, "WorkerPool/checkout", "--field", "spec.accelerator") == []


def test_blame_in_an_environment_nobody_changed_is_empty(story: Story) -> None:
    assert blame(story, "WorkerPool/checkout", "--env", "prod") == []
    result = apx("intents", "blame", "Route/r-01", home=story.home)
    assert result.returncode == 0 and "no landed intent changed Route/r-01" in result.stdout


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("WorkerPool/checkout", "--field", "spec..replicas"), ("--field", "spec..replicas")),
        (("WorkerPool/checkout", "--field", "spec.plans[x]"), ("--field",)),
        (("Gadget/checkout",), ("KIND/NAME", "Gadget")),
        (("checkout",), ("KIND/NAME",)),
        (("WorkerPool/Not_A_Name",), ("KIND/NAME",)),
        (("WorkerPool/checkout", "--env", "qa"), ("--env", "qa")),
    ],
)
def test_bad_blame_input_is_one_line_naming_what_is_wrong(
    story: Story, args: tuple[str, ...], mentions: tuple[str, ...]
) -> None:
    one_line_error(apx("intents", "blame", *args, home=story.home), *mentions)
