"""Change windows in the pipeline: outside an allow window (or inside a deny one) an
auto-apply waits as ``queued`` and proceeds at the first drain after the window opens."""

from __future__ import annotations

from pathlib import Path

from test_pipeline import POOL, branch_file, doc, intent

from orchestrator.bootstrap import build
from orchestrator.decision import Status
from orchestrator.home import init_home
from orchestrator.settings import load_settings
from orchestrator.testing import FrozenClock
from orchestrator.windows import ChangeWindow


def test_an_auto_apply_waits_out_a_deny_window_then_lands(tmp_path: Path, clock: FrozenClock) -> None:
    home = tmp_path / "home"
    init_home(home)
    settings = load_settings(home)
    freeze = ChangeWindow(kind="deny", schedule="0 12 * * *", duration="1h", reason="lunch freeze")
    dev = settings.environments["dev"].model_copy(update={"windows": [freeze]})
    settings = settings.model_copy(update={"environments": {**settings.environments, "dev": dev}})
    app = build(home, settings=settings, clock=clock)  # the clock stands at 12:00 UTC
    try:
        waiting = app.orchestrator.submit(intent("dev", ("update", doc(POOL, replicas=6))), agent="optimizer")
        assert waiting.status is Status.QUEUED
        assert "lunch freeze" in waiting.reasons[0] and "change window" in waiting.reasons[0]
        assert app.orchestrator.drain("dev") == []
        assert branch_file(app, "dev", POOL)["spec"]["replicas"] == 4

        clock.advance(3600)  # 13:00: the freeze is over
        [landed] = app.orchestrator.drain("dev")
        assert landed.intent_id == waiting.intent_id and landed.status is Status.APPLIED
        assert branch_file(app, "dev", POOL)["spec"]["replicas"] == 6
    finally:
        app.close()
