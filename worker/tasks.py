"""Task shims: ids in, one domain call, typed outcomes to log levels (STYLE R6). Retry timing
lives in the domain (next_attempt_at), never in Celery autoretry."""

from __future__ import annotations

import logging

from celery import shared_task

from worker.jobs import dispatch as dispatch_job
from worker.jobs import recovery, send

log = logging.getLogger(__name__)


@shared_task(name="sendfleet.dispatch", ignore_result=True)
def dispatch() -> None:
    result = dispatch_job.run_dispatch()
    if result.queued or result.postponed:
        log.info("dispatch.tick", extra=result.log_fields())


@shared_task(name="sendfleet.send_batch", ignore_result=True)
def send_batch(account_id: int, recipient_ids: list[int]) -> None:
    result = send.send_batch(account_id, recipient_ids)
    if result.duplicates:
        log.info("send.duplicate", extra={"account_id": account_id, "count": result.duplicates})


@shared_task(name="sendfleet.send_message", ignore_result=True)
def send_message(recipient_id: int) -> None:
    result = send.send_one(recipient_id)
    if result.duplicates:
        log.info("send.duplicate", extra={"recipient_id": recipient_id})


@shared_task(name="sendfleet.recover", ignore_result=True)
def recover() -> None:
    result = recovery.run_recovery()
    if result.any():
        log.warning("recovery.done", extra=result.log_fields())


@shared_task(name="sendfleet.telegram", ignore_result=True)
def telegram(text: str, chat_id: str | None = None) -> None:
    from flask import current_app

    from worker.jobs.telegram import send_telegram

    send_telegram(current_app.extensions["settings"], text, chat_id)
