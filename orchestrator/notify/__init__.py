"""Notifications: breaker trips, PRs, approvals, merges and rollbacks, posted to webhooks.

The pipeline builds an :class:`~orchestrator.notify.events.Notification` and
calls a :class:`~orchestrator.notify.events.Notifier`; that only queues it in
the outbox. A delivery worker posts it later and retries with backoff, so a
receiver can never block or fail a decision.

==========================  ====================================================
module                      what it holds (and what it imports)
==========================  ====================================================
``events``                  the value, its kinds, the JSON and Slack renderers (pure)
``settings``                ``notifications:`` in apx.yaml (pydantic)
``outbox``                  the ``Outbox`` port, ``Delivery``, the in-memory fake
``notifier``                ``OutboxNotifier``: what the pipeline calls
``sql_outbox``              the outbox table and ``SqlOutbox`` (sqlalchemy)
``retry``                   which answers are retried and when (pure)
``delivery``                ``Deliverer`` and ``DeliveryWorker`` (httpx)
==========================  ====================================================

Importing this package imports nothing of these: ``orchestrator.sql_store``
imports ``sql_outbox`` to register the table, and ``apx --help`` should not
pay for httpx.
"""
