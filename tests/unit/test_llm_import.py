"""litellm takes seconds to import: only building a router may pay for it.

Checked in fresh interpreters, since this test process may already hold litellm.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _imported_modules(*argv: str) -> set[str]:
    """Top-level names of the modules a fresh ``python -X importtime ARGV`` imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, timeout=120, check=True
    )
    lines = [
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    ]
    return {name.split(".")[0] for name in lines}


def test_importing_the_llm_modules_does_not_import_litellm() -> None:
    modules = _imported_modules("-c", "import agents.llm, agents.llm_settings")

    assert "agents" in modules
    assert "litellm" not in modules


def test_apx_help_does_not_import_litellm() -> None:
    apx = Path(sys.executable).with_name("apx")

    modules = _imported_modules(str(apx), "--help")

    assert "orchestrator" in modules
    assert "litellm" not in modules
