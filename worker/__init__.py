"""`celery -A worker worker` and `celery -A worker beat` find `worker.celery` here.

The Flask app is built on first access, not at import, so tests and tools can import
worker.jobs without a configured environment."""

from __future__ import annotations

from typing import Any

_celery: Any = None


def __getattr__(name: str) -> Any:
    global _celery
    if name != "celery":
        raise AttributeError(name)
    if _celery is None:
        from app import create_app
        from worker.celery_app import celery_init_app

        _celery = celery_init_app(create_app())
    return _celery
