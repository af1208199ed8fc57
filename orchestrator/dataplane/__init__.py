"""The reference data plane: it executes what lands on the environment branches, and measures it.

Issue 5's hand-off: the orchestrator writes signed commits; something must run
them and say how they behave, so a change that hurts can be rolled back. In
production that is Argo CD or Flux plus Prometheus (``docs/how-to/run-the-data-plane.md``);
this package is a small, deterministic stand-in that needs neither:

* :mod:`~orchestrator.dataplane.runtime` — pure: reconcile an environment's
  resources into what would be served, and the metrics that produces at a time;
* :mod:`~orchestrator.dataplane.metrics` — the :class:`MetricsStore` port the
  canary and the Optimizer read, its :class:`Sample`, and an in-memory fake;
* :mod:`~orchestrator.dataplane.sql` — the SQL adapter (table ``dataplane_metrics``);
* :mod:`~orchestrator.dataplane.runner` — :class:`DataPlane`, the loop that
  follows the branches (read-only) and publishes a tick of metrics each interval.

Nothing is imported here, so :mod:`orchestrator.sql_store` can import the SQL
model without pulling in git or the runner.
"""
