"""The broker transport (worker/broker_transport.py) against a real Redis that goes away
while a worker's connection is in the state that stopped a worker in the Redis restart
drill: two channels with a BRPOP in flight and a message delivered, not yet acknowledged."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.common import ignore_errors

from tests.e2e.private_stores import PrivateRedis
from worker.broker_transport import TRANSPORT_PATH, DetachedChannelError, Transport
from worker.celery_app import broker_transport, celery_config


@pytest.fixture
def private_redis(tmp_path: Any) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name), routing_key=name)


def _lost_mid_task(server: PrivateRedis) -> tuple[Connection, Any, list[Any]]:
    """A connection whose default channel holds one unacknowledged delivery, both channels
    waiting in BRPOP, and then Redis gone."""
    connection = Connection(server.url(1), transport=TRANSPORT_PATH)
    channel = connection.default_channel
    Producer(channel).publish({"n": 1}, exchange=_queue("jobs").exchange, routing_key="jobs",
                              declare=[_queue("jobs")])  # fmt: skip
    delivered: list[Any] = []
    Consumer(channel, [_queue("jobs")], callbacks=[lambda _b, m: delivered.append(m)],
             accept=["json"]).consume()  # fmt: skip
    connection.drain_events(timeout=5)
    assert len(delivered) == 1
    other = connection.channel()
    Consumer(other, [_queue("control")], callbacks=[lambda _b, _m: None],
             accept=["json"]).consume()  # fmt: skip
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=0.3)  # both channels now have a BRPOP outstanding
    assert channel._in_poll and other._in_poll
    server.stop()
    return connection, channel, delivered


def test_a_connection_lost_mid_task_closes_with_connection_errors_only(private_redis):
    connection, channel, delivered = _lost_mid_task(private_redis)
    # Celery 5.7's consumer after a lost connection (on_connection_error_after_connected):
    connection.collect(socket_timeout=1)
    assert not channel.closed, "the case in question: collect left the default channel open"
    ignore_errors(connection, connection.close)  # raised AttributeError with kombu's own
    assert channel.closed

    # The running task's acknowledgement afterwards: a connection error, logged by Celery.
    with pytest.raises(DetachedChannelError) as raised:
        delivered[0].ack()
    assert isinstance(raised.value, Transport.connection_errors)
    delivered[0].ack_log_error(logging.getLogger("test"), Transport.connection_errors)


def test_a_new_connection_after_the_restart_consumes_again(private_redis):
    connection, _channel, _delivered = _lost_mid_task(private_redis)
    connection.collect(socket_timeout=1)
    ignore_errors(connection, connection.close)
    private_redis.start()
    with Connection(private_redis.url(1), transport=TRANSPORT_PATH) as fresh:
        channel = fresh.default_channel
        Producer(channel).publish({"n": 2}, exchange=_queue("jobs").exchange,
                                  routing_key="jobs", declare=[_queue("jobs")])  # fmt: skip
        bodies: list[Any] = []
        Consumer(channel, [_queue("jobs")], callbacks=[lambda b, m: (bodies.append(b), m.ack())],
                 accept=["json"]).consume()  # fmt: skip
        fresh.drain_events(timeout=5)
    assert bodies == [{"n": 2}]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/1", TRANSPORT_PATH),
        ("rediss://:secret@redis.example:6380/0", TRANSPORT_PATH),
        ("REDIS://127.0.0.1/0", TRANSPORT_PATH),
        ("amqp://guest@127.0.0.1//", None),
        ("sentinel://127.0.0.1:26379", None),
    ],
)
def test_the_broker_transport_is_ours_for_redis_urls_only(url, expected):
    assert broker_transport(url) == expected


def test_the_worker_configuration_uses_it(settings):
    config = celery_config(settings)
    assert config["broker_transport"] == TRANSPORT_PATH
    celery = Celery("test", set_as_current=False)
    celery.config_from_object(config)
    with celery.connection_for_write() as connection:
        assert type(connection.transport) is Transport
