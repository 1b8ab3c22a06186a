"""`celery -A worker.beat_app beat` (ops/entrypoint.sh beat): beat's own Celery app, built from
the settings alone.

Beat only enqueues, by task name (worker/schedule.py), so it needs neither the Flask app nor
SQLAlchemy, the models, the API or the jobs; built through create_app() (`celery -A worker
beat`, which still works) it carried all of them, about 95 MB idle against about 35 MB here
(bench/footprint.py). What beat does is unchanged: the same celery_config() as the workers'
(broker, queues, routes, the schedule table, the redbeat scheduler of worker/beat.py with its
one-scheduler lock), the same logging and Sentry set-up. An entry's task is published by
name (Celery's send_task) to the queue the routes give it, as a registered task would be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from app.settings import Settings

_celery: Any = None


def build_beat_app(settings: Settings | None = None) -> Celery:
    from celery import Celery

    from app.logs import configure_logging
    from app.observability import init_sentry
    from app.settings import load_settings
    from worker.celery_app import celery_config

    settings = settings or load_settings()
    configure_logging(settings)
    init_sentry(settings)
    celery = Celery("sendfleet", set_as_current=True)
    celery.config_from_object(celery_config(settings))
    return celery


def __getattr__(name: str) -> Any:
    # Built on first access, not at import (worker/__init__.py does the same for the workers).
    global _celery
    if name != "celery":
        raise AttributeError(name)
    if _celery is None:
        _celery = build_beat_app()
    return _celery
