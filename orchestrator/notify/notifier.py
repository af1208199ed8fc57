"""What the pipeline calls to tell people something happened: a queue insert, never an HTTP call.

:class:`OutboxNotifier` implements :class:`orchestrator.notify.events.Notifier`.
It picks the webhooks whose ``events`` filter wants the notification and
queues one row per webhook in the outbox; a
:class:`~orchestrator.notify.delivery.DeliveryWorker` posts them later. It
never raises: a notification that cannot even be queued (the database is
down) is logged as an error and the decision that caused it goes ahead, since
a lost message is better than a held or failed change.

Call :meth:`OutboxNotifier.notify` after the decision's own transaction has
committed, never inside it: on SQLite the queue insert is a write of its own,
and it would wait (up to the busy timeout) for the caller's open write to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.logs import get_logger
from orchestrator.notify.events import Notification
from orchestrator.notify.outbox import Outbox

if TYPE_CHECKING:
    from orchestrator.notify.events import Notifier
    from orchestrator.notify.settings import NotificationSettings, WebhookSettings

__all__ = ["OutboxNotifier"]

log = get_logger("apx.notify")


class OutboxNotifier:
    """Queues each notification for every configured webhook that wants it."""

    def __init__(self, outbox: Outbox, webhooks: Sequence[WebhookSettings]) -> None:
        self._outbox = outbox
        self._webhooks = tuple(webhooks)

    @classmethod
    def from_settings(cls, settings: NotificationSettings, outbox: Outbox) -> OutboxNotifier:
        return cls(outbox, settings.webhooks)

    def notify(self, notification: Notification) -> None:
        targets = [w for w in self._webhooks if w.wants(notification.kind)]
        if not targets:
            return
        try:
            self._outbox.enqueue(notification, targets)
        except Exception as exc:
            # Never let a notification fail a decision; say loudly that it was lost.
            log.error(
                "notification could not be queued; it will not be sent",
                kind=notification.kind.value,
                intent_id=notification.intent_id,
                trace_id=notification.trace_id,
                webhooks=[w.name for w in targets],
                error=f"{type(exc).__name__}: {exc}",
            )


if TYPE_CHECKING:
    _notifier: type[Notifier] = OutboxNotifier
