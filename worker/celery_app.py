"""Celery built from the Flask app (Flask's documented pattern): every task runs inside an
app context; pool resources are re-created in each forked worker process."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from celery.signals import (
    worker_before_create_process,
    worker_process_init,
    worker_process_shutdown,
)
from kombu import Exchange, Queue

from app.settings import Settings
from worker import broker_transport as transport
from worker.schedule import beat_schedule

if TYPE_CHECKING:
    from flask import Flask

DISPATCH_QUEUE = "sendfleet.dispatch"
SEND_QUEUE = "sendfleet.send"


def celery_config(settings: Settings) -> dict[str, Any]:
    broker_url = settings.celery_broker_url or settings.redis_url
    return {
        "broker_url": broker_url,
        "broker_transport": broker_transport(broker_url),
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # A task is acknowledged after it ran; a duplicate delivery is harmless because
        # every step is a conditional UPDATE (DESIGN "Recipient life cycle").
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "worker_prefetch_multiplier": 1,
        # Checked after each task; the replacement is forked from the parent's frozen,
        # shared pages (_freeze_before_fork). Celery counts KiB.
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_mb * 1024 or None,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        # Each queue its own exchange and routing key: with one shared binding every task
        # would be delivered to both queues, i.e. twice.
        "task_queues": [
            Queue(DISPATCH_QUEUE, Exchange(DISPATCH_QUEUE), routing_key=DISPATCH_QUEUE),
            Queue(SEND_QUEUE, Exchange(SEND_QUEUE), routing_key=SEND_QUEUE),
        ],
        "task_default_queue": DISPATCH_QUEUE,
        "task_default_exchange": DISPATCH_QUEUE,
        "task_default_routing_key": DISPATCH_QUEUE,
        "task_routes": {"sendfleet.send_batch": {"queue": SEND_QUEUE}},
        # A send task that runs past its soft limit stops between messages' steps (the send
        # path gives its rows up to recovery's rules, as on any exception); the hard limit
        # kills a process stuck beyond that. SMTP steps have their own timeouts.
        "task_annotations": {
            "sendfleet.send_batch": {
                "soft_time_limit": settings.send_task_time_limit_seconds,
                "time_limit": settings.send_task_time_limit_seconds + 60,
            }
        },
        "beat_schedule": beat_schedule(settings),
        # celery-redbeat (worker/beat.py): schedule and lock in Redis, one scheduler at a time.
        "beat_scheduler": "worker.beat:SendfleetScheduler",
        "redbeat_redis_url": settings.celery_broker_url or settings.redis_url,
        "redbeat_redis_options": {},
        "redbeat_key_prefix": "sf:beat:",
        "redbeat_lock_timeout": settings.beat_lock_timeout_seconds,
        # The lock is renewed every tick: a tick must come well before it expires.
        "beat_max_loop_interval": max(1, min(30, settings.beat_lock_timeout_seconds // 4)),
        "broker_transport_options": {"visibility_timeout": settings.send_lease_seconds * 4},
    }


def broker_transport(broker_url: str) -> str | None:
    """Ours for Redis (worker/broker_transport.py: a lost Redis must not stop a worker);
    None lets kombu pick the transport of any other URL."""
    scheme = broker_url.split("://", 1)[0].lower()
    return transport.TRANSPORT_PATH if scheme in transport.SCHEMES else None


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(celery_config(app.extensions["settings"]))
    celery.set_default()
    app.extensions["celery"] = celery

    import worker.tasks  # noqa: F401  (registers the tasks on this app)

    @worker_before_create_process.connect(weak=False)
    def _freeze_before_fork(**_: object) -> None:
        # A prefork child shares the parent's pages until it writes to them, and a garbage
        # collection in the child writes to every object it walks (its GC header): one full
        # collection copied about 40 MB per child. Frozen objects are never walked again.
        gc.collect()
        gc.freeze()

    @worker_process_init.connect(weak=False)
    def _fresh_resources(**_: object) -> None:
        # The engine's pool was created before fork; a child must not share its sockets.
        from app.extensions import db

        with app.app_context():
            db.engine.dispose(close=False)
        # The heartbeat thread beats from the start, whatever the tasks do (worker/jobs/
        # heartbeat.py); the send path would also start it on its first claim.
        from worker.jobs.heartbeat import ensure_beating

        ensure_beating(app.extensions["settings"])

    @worker_process_shutdown.connect(weak=False)
    def _close_connections(**_: object) -> None:
        from worker.jobs.heartbeat import stop_beating
        from worker.jobs.smtp import smtp_pool

        with app.app_context():  # the pool is found through the app's settings
            smtp_pool().close_all()
        stop_beating()  # a clean exit holds nothing: no need to wait for the TTL

    return celery
