"""The Redis databases the tests use, on one server named by SENDFLEET_TEST_REDIS_SERVER
(default the machine's Redis on 6379). Two test runs at once each point it at their own
redis-server, since every test flushes its databases."""

from __future__ import annotations

import os

SERVER = os.environ.get("SENDFLEET_TEST_REDIS_SERVER", "redis://127.0.0.1:6379").rstrip("/")
BROKER_URL = f"{SERVER}/12"  # Celery broker of the end-to-end tests
APP_URL = os.environ.get("SENDFLEET_TEST_REDIS", f"{SERVER}/13")  # the app's REDIS_URL
ROTATOR_URL = f"{SERVER}/14"  # rotator tests (limiter)
