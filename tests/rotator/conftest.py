from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from rotator.transport import SmtpPool
from tests import redis_urls
from tests.smtp_server import ScriptedSMTPServer

REDIS_URL = redis_urls.ROTATOR_URL  # the DB the redis_client fixture flushes


@pytest.fixture
def smtp_server() -> Iterator[ScriptedSMTPServer]:
    with ScriptedSMTPServer() as server:
        yield server


@pytest.fixture
def pool() -> Iterator[SmtpPool]:
    p = SmtpPool()
    yield p
    p.close_all()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
