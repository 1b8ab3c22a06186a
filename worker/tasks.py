"""Task shims: ids in, one domain call, typed outcomes to log levels (STYLE R6). Retry timing
of sends lives in the domain (next_attempt_at), never in Celery autoretry; the one Celery
retry here is of a send task that could not reach the database at all: it is published
again (not acknowledged as done), so its queued rows go out when the database is back
instead of waiting QUEUED_STALE_SECONDS for recovery."""

from __future__ import annotations

import logging
import time

from celery import Task, shared_task
from sqlalchemy.exc import OperationalError

from app.metrics.counters import record_dispatch_tick, redis_of_app
from worker.jobs import count_compaction, guard_sweep, recovery, send
from worker.jobs import daily_summary as daily_summary_job
from worker.jobs import dispatch as dispatch_job
from worker.jobs import telegram as telegram_job
from worker.jobs.send_release import database_retry

log = logging.getLogger(__name__)


@shared_task(name="sendfleet.dispatch", ignore_result=True)
def dispatch() -> None:
    started = time.monotonic()
    result = dispatch_job.run_dispatch()
    if not result.skipped:  # another process held the dispatch lock: no tick of ours
        record_dispatch_tick(redis_of_app(), time.monotonic() - started, queued=result.queued)
    if result.queued or result.postponed or result.rebuilt or result.held:
        log.info("dispatch.tick", extra=result.log_fields())


@shared_task(name="sendfleet.send_batch", ignore_result=True, bind=True)
def send_batch(self: Task, account_id: int, recipient_ids: list[int]) -> None:
    try:
        result = send.send_batch(account_id, recipient_ids)
    except OperationalError as exc:
        retry = database_retry(account_id, self.request.retries)
        raise self.retry(exc=exc, **retry) from None
    if result.duplicates:
        log.info("send.duplicate", extra={"account_id": account_id, "count": result.duplicates})
    if result.late:
        log.info("send.placed_again", extra={"account_id": account_id, "count": result.late})


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


@shared_task(name="sendfleet.compact_counts", ignore_result=True)
def compact_counts() -> None:
    folded = count_compaction.run_compaction()
    if folded:
        log.info("counts.compacted", extra={"slots": folded})


@shared_task(name="sendfleet.health_checks", ignore_result=True)
def health_checks() -> None:
    from worker.jobs.health import run_health_checks

    log.info("health.checked", extra=run_health_checks().log_fields())


@shared_task(name="sendfleet.resume_checks", ignore_result=True)
def resume_checks() -> None:
    from worker.jobs.health import run_resume_checks

    result = run_resume_checks()
    if result.checked:
        log.info("health.resume_checked", extra=result.log_fields())


@shared_task(name="sendfleet.warmup_ramp", ignore_result=True)
def warmup_ramp() -> None:
    from worker.jobs.warmup import run_warmup_ramp

    log.info("warmup.ramp", extra=run_warmup_ramp().log_fields())


@shared_task(
    name="sendfleet.telegram",
    ignore_result=True,
    bind=True,
    time_limit=telegram_job.TASK_TIME_LIMIT_SECONDS,
)
def telegram(self: Task, text: str, chat_id: str | None = None) -> None:
    # Retry timing and giving up are the domain's (worker.jobs.telegram); Celery only waits.
    countdown = telegram_job.deliver_alert(text, chat_id, self.request.retries)
    if countdown is not None:
        raise self.retry(countdown=countdown, max_retries=None)


@shared_task(name="sendfleet.guards", ignore_result=True)
def guards() -> None:
    result = guard_sweep.run_guards()
    if result.any():
        log.warning("guards.done", extra=result.log_fields())


@shared_task(name="sendfleet.daily_summary", ignore_result=True)
def daily_summary() -> None:
    summaries = daily_summary_job.run_daily_summary()
    log.info("daily_summary.sent", extra={"clients": len(summaries)})


@shared_task(name="sendfleet.blacklist_check", ignore_result=True)
def blacklist_check() -> None:
    from worker.jobs.blacklist import run_blacklist_check

    result = run_blacklist_check()
    if result.newly_listed or result.delisted:
        log.warning("blacklist.changed", extra=result.log_fields())


@shared_task(name="sendfleet.sender_auth_check", ignore_result=True)
def sender_auth_check() -> None:
    from worker.jobs.domain_checks import run_sender_auth_check

    result = run_sender_auth_check()
    if result.failing:
        log.warning("sender_auth.failing", extra=result.log_fields())
