"""What the benchmarks in this directory share: timing helpers and app set-up.

Imported as ``common`` because the benchmarks run as scripts (``python bench/x.py``),
which puts this directory first on ``sys.path``.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from orchestrator.bootstrap import App
from orchestrator.settings import Settings


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


class Breakdown:
    """Wall time per wrapped callable, summed; ``outer`` counts only calls not made
    from inside another wrapped one, so the outer figures add up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.outer: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth = 0

    def wrap(self, name: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            label = name(*args, **kwargs) if callable(name) else name
            outermost = self._depth == 0
            self._depth += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self._depth -= 1
                self.seconds[label] += elapsed
                self.calls[label] += 1
                if outermost:
                    self.outer[label] += elapsed

        return wrapper

    def per_op(self, n: int) -> dict[str, dict[str, float]]:
        return {
            "breakdown_ms_per_op": {k: v * 1000 / n for k, v in sorted(self.seconds.items())},
            "outer_ms_per_op": {k: v * 1000 / n for k, v in sorted(self.outer.items())},
            "calls_per_op": {k: v / n for k, v in sorted(self.calls.items())},
        }

    def reset(self) -> None:
        self.seconds.clear()
        self.outer.clear()
        self.calls.clear()


def raised_limits(settings: Settings) -> Settings:
    rules = settings.admission
    admission = rules.model_copy(
        update={
            "rate_limit": rules.rate_limit.model_copy(update={"deploys": 10**9}),
            "breaker": rules.breaker.model_copy(update={"max_deploys": 10**9}),
        }
    )
    return settings.model_copy(update={"admission": admission})


def close(app: App) -> None:
    app.store.close()
    app.repo.close()
