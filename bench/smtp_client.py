"""SmtpPool.send over one reused connection into Postfix's smtp-sink, against a bare smtplib
loop sending the same message in the same run.

- bare: smtplib.sendmail in a loop (MAIL, RCPT, DATA, payload: four round trips a message);
- pool: SmtpPool.send into a sink that offers PIPELINING (MAIL, RCPT and DATA in one write
  where the server allows it);
- pool, ahead: the same with each call given the next message (`then`), as the send path
  does within a claimed group: each message's data and the next envelope in one write;
- pool, no PIPELINING: the same into a sink started with -p, the one-command-at-a-time
  dialogue.

Each figure is the median of --repeat rounds; the rounds interleave so that load from
other processes on the machine falls on all four alike.

Usage: .venv/bin/python bench/smtp_client.py [--messages 20000] [--repeat 5]
Needs smtp-sink (Debian package postfix).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import free_port  # noqa: E402
from bench.send import baseline, sample_message, start_sink  # noqa: E402
from rotator.providers.base import Security  # noqa: E402
from rotator.transport import NextMessage, SmtpEndpoint, SmtpPool  # noqa: E402

FROM = "bench@bench.example"


def pool_rate(port: int, count: int, *, ahead: bool = False) -> float:
    """msgs/s of SmtpPool.send over one reused connection (opened before the clock);
    `ahead`: each call given the next message."""
    data = sample_message()
    pool = SmtpPool(max_messages_per_connection=count + 1)
    endpoint = SmtpEndpoint(
        "127.0.0.1", port, Security.NONE, timeout=10.0, local_hostname="bench.example"
    )
    first = pool.send("bench", endpoint, FROM, "p@gmail.com", data)
    assert first.code == 250, first
    started = time.perf_counter()
    for i in range(count):
        then = NextMessage(FROM, f"p{i + 1}@gmail.com", data) if ahead and i + 1 < count else None
        reply = pool.send("bench", endpoint, FROM, f"p{i}@gmail.com", data, then=then)
        if reply.code != 250:
            sys.exit(f"message {i}: {reply}")
    elapsed = time.perf_counter() - started
    pool.close_all()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    pipelining_port, plain_port = free_port(), free_port()
    sinks = [start_sink(pipelining_port), start_sink(plain_port, "-p")]
    rates: dict[str, list[float]] = {"bare": [], "pool": [], "ahead": [], "plain": []}
    try:
        for _ in range(args.repeat):
            rates["bare"].append(baseline(pipelining_port, args.messages))
            rates["pool"].append(pool_rate(pipelining_port, args.messages))
            rates["ahead"].append(pool_rate(pipelining_port, args.messages, ahead=True))
            rates["plain"].append(pool_rate(plain_port, args.messages))
    finally:
        for sink in sinks:
            sink.terminate()
            sink.wait()

    bare, pool, ahead, plain = (
        statistics.median(rates[k]) for k in ("bare", "pool", "ahead", "plain")
    )
    print(f"{args.messages} messages of {len(sample_message())} bytes, median of {args.repeat}")
    print(f"bare smtplib loop          {bare:9,.0f} msgs/s")
    print(f"SmtpPool.send              {pool:9,.0f} msgs/s  {pool / bare:5.2f}x bare")
    print(f"SmtpPool.send, next ahead  {ahead:9,.0f} msgs/s  {ahead / bare:5.2f}x bare")
    print(f"SmtpPool.send, no PIPELINING {plain:7,.0f} msgs/s  {plain / bare:5.2f}x bare")
    for name, values in rates.items():
        print(f"  {name:6} rounds: " + ", ".join(f"{v:,.0f}" for v in values))


if __name__ == "__main__":
    main()
