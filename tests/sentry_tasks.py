"""A task that fails the way a send can, loaded into a real worker with
`celery -A worker worker -I tests.sentry_tasks` by tests/test_sentry.py."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(name="sendfleet.test_sentry_failure", ignore_result=True)
def failing_send(recipient: str, password: str, body_text: str) -> None:
    message = f"Subject: hello\n\n{body_text}"  # a local that must not be reported
    log.warning(
        "send.trouble", extra={"recipient": recipient, "password": password, "body_text": message}
    )
    raise RuntimeError(f"550 5.1.1 <{recipient}>: mailbox unavailable (marker-task-failure)")
