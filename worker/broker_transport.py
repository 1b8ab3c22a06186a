"""kombu's Redis transport, with one fault removed: a worker that lost Redis must reconnect,
not exit.

After a lost broker connection Celery 5.7 collects the connection (which detaches the
transport from it) and then closes it again. When Redis went away while two channels had a
BRPOP in flight and a task was running unacknowledged, the first close stops at the first
channel's failed read, so the default channel is still open when the transport is detached;
the second close then requeues the running task's message through a new Redis client, whose
parameters come from the detached (None) connection: AttributeError. That is no connection
error, so Celery's error guard lets it through and the worker shuts down (seen in the Redis
restart drill). The running task's acknowledgement takes the same path. Here a detached
channel raises Redis's ConnectionError instead: both places expect it, log it, and the
consumer reconnects. The unacknowledged message stays in Redis for the visibility timeout
(and the send path's recovery does not depend on it: DESIGN "Recipient life cycle")."""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

# Set as Celery's `broker_transport` for these URL schemes; another broker keeps its own.
SCHEMES = ("redis", "rediss")
TRANSPORT_PATH = "worker.broker_transport:Transport"


class DetachedChannelError(RedisConnectionError):
    """The channel's connection was already closed: nothing can reach Redis through it."""


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise DetachedChannelError("the broker connection of this channel was closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
