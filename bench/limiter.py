"""Limiter throughput against a raw PING baseline, measured in the same run.

    .venv/bin/python bench/limiter.py [redis://127.0.0.1:6379/14]

Uses (and flushes) the given Redis DB. Each decision reserves 8 windows: the four
DESIGN scopes (system, account, sending domain, recipient domain), each with a
per-minute and a per-day window, over 20 accounts, 5 sending domains and 300
recipient domains, with limits high enough that nearly every request is allowed.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from rotator.limiter import Limiter, Scope, Window

BIG = 10**9


def windows_for(rng: random.Random) -> list[Window]:
    account = str(rng.randrange(20))
    sending = f"send{rng.randrange(5)}.example"
    recipient = f"rcpt{rng.randrange(300)}.example"
    return [
        Window(Scope.SYSTEM, "", 60, BIG),
        Window(Scope.SYSTEM, "", 86400, BIG),
        Window(Scope.ACCOUNT, account, 60, BIG),
        Window(Scope.ACCOUNT, account, 86400, BIG),
        Window(Scope.SENDING_DOMAIN, sending, 60, BIG),
        Window(Scope.SENDING_DOMAIN, sending, 86400, BIG),
        Window(Scope.RECIPIENT_DOMAIN, recipient, 60, BIG),
        Window(Scope.RECIPIENT_DOMAIN, recipient, 86400, BIG),
    ]


def rate(fn: Callable[[], int], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/14"
    client = redis.Redis.from_url(url)
    client.flushdb()
    limiter = Limiter(client, prefix="bench:lim")
    rng = random.Random(7)
    requests = [windows_for(rng) for _ in range(5000)]
    batches = [requests[i : i + 100] for i in range(0, len(requests), 100)]
    it_single = iter(range(10**12))
    it_batch = iter(range(10**12))

    def ping() -> int:
        client.ping()
        return 1

    def single() -> int:
        limiter.reserve(requests[next(it_single) % len(requests)])
        return 1

    def many() -> int:
        return len(limiter.reserve_many(batches[next(it_batch) % len(batches)]))

    limiter.reserve_many(batches[0])  # load the script, warm the keys
    ping_rate = rate(ping, 2.0)
    single_rate = rate(single, 2.0)
    many_rate = rate(many, 3.0)
    ping_after = rate(ping, 2.0)
    baseline = (ping_rate + ping_after) / 2
    client.flushdb()
    print(f"PING round trips/s            {baseline:10.0f}")
    print(f"reserve() decisions/s         {single_rate:10.0f}  ratio {single_rate / baseline:.2f}")
    print(f"reserve_many() decisions/s    {many_rate:10.0f}  ratio {many_rate / baseline:.2f}")
    print("(8 windows per decision; reserve_many in batches of 100)")


if __name__ == "__main__":
    main()
