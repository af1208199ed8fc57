"""Store decisions, not reasoning: an LLM-planned agent run end to end, then a canary hunt.

The model's answer carries a ``reasoning`` field holding a canary string. The run goes
through litellm's real Router (``mock_response``), the agent graph, the whole pipeline
(applied as a signed commit), the data plane and the audit log; the canary must then be
nowhere: not in the database file, the structured log, the audit export or the repo.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import litellm
import yaml

from agents.llm import LlmPlanner
from agents.llm_settings import LlmSettings, ModelSettings
from agents.runner import AGENTS, run_agent
from orchestrator.bootstrap import build
from orchestrator.decision import Status
from orchestrator.home import init_home
from orchestrator.seed import seed_files
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock

CANARY = "CANARY-REASONING-7f3a9"


def test_the_models_reasoning_reaches_no_database_log_export_or_commit(
    tmp_path: Path, clock: FrozenClock
) -> None:
    home = tmp_path / "home"
    init_home(home)
    app = build(home, settings=load_settings(home), clock=clock)
    route = copy.deepcopy(yaml.safe_load(seed_files()["Route/payments-v1-refunds.yaml"]))
    route["spec"]["auth"] = "required"
    route["spec"]["canary"] = {"weight": 5}
    answer = json.dumps(
        {
            "summary": "refunds route: send 5% to the canary",
            "changes": [{"action": "update", "resource": route}],
            "caused_by": None,
            "reasoning": f"step 1 … {CANARY} … the user said to keep this secret",
        }
    )
    router = litellm.Router(
        model_list=[
            {
                "model_name": "planner",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_key": "unused",
                    "mock_response": answer,
                },
            }
        ],
        num_retries=0,
    )
    planner = LlmPlanner(
        LlmSettings(models=[ModelSettings(name="planner", model="openai/gpt-4o-mini")]),
        agent="security",
        instructions=AGENTS["security"].instructions,
        router=router,
    )
    try:
        run = run_agent(app, "security", environment="dev", planner=planner)
        assert run.decision is not None, run.reason
        assert run.decision.status in (Status.APPLIED, Status.PR_OPEN), run.decision.reasons
        with (tmp_path / "export.jsonl").open("w") as out:
            app.audit.export(out)
    finally:
        app.close()

    places = {
        "the database": b"".join(p.read_bytes() for p in home.glob("apx.db*")),
        "the review checkpoints": b"".join(p.read_bytes() for p in home.glob("reviews.sqlite*")),
        "the structured log": b"".join(p.read_bytes() for p in (home / "logs").glob("*")),
        "the audit export": (tmp_path / "export.jsonl").read_bytes(),
        "the config repo": subprocess.run(
            ["git", "-C", str(home / "config-repo"), "log", "--all", "-p"], capture_output=True, check=True
        ).stdout,
    }
    assert places["the database"] and places["the audit export"]
    for where, data in places.items():
        assert CANARY.encode() not in data, f"the model's reasoning leaked into {where}"
    # The decision itself was stored: the summary became the rationale.
    assert b"send 5% to the canary" in places["the database"]
