"""``apx demo``: a fresh home and example intents through the pipeline.

``demo`` carries no decorator: :mod:`orchestrator.cli` registers it, in the
order ``apx --help`` lists the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    home: Annotated[Path, typer.Option("--home", help="Where to make the demo's home.")] = Path(".apx-demo"),
) -> None:
    """Init a fresh home and run example intents through the pipeline, printing each decision."""
    from orchestrator.demo import run_demo

    raise typer.Exit(run_demo(home))
