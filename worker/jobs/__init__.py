"""The pipeline's domain functions; Celery tasks (worker/tasks.py) are shims over these."""
