"""A prototype of the changes bench/limiter_rebuild.py suggests for
worker.jobs.windows_rebuild.rebuild_windows and rotator.limiter.Limiter.restore, run there
with --prototype on the same data and checked by the same checks. Not the app's code: it
reaches into app.services.limits._windows where LimitTable would grow a seam.
"""

from __future__ import annotations

import gc
import os
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select, text

from app.models import Account, Campaign
from app.services.limits import _windows, load_limits, recipient_domain_key
from app.services.sends import DAY, SENDS_SINCE
from rotator.limiter import Scope

PREFIX = "sf:lim"  # Limiter's default prefix: the prototype writes the windows it reads
PROTO_BATCH = 20_000  # members per Lua call (a few ms of Redis time each)
# SENDS_SINCE as it is, each send also as the entry the restore writes ("<score> <member>",
# the score in integer microseconds): no datetime per row, no formatting per window.
PROTO_SENDS = """
    SELECT us || ' ' || member AS entry, us, account_id, campaign_id, domain
    FROM (SELECT s.*, (extract(epoch FROM s.at) * 1000000)::bigint AS us
          FROM ({sends}) AS s) AS t
"""
# Many windows per call, their members as one string: the per-command cost of 300,000
# small windows (two commands each through redis-py) was most of the write.
PROTO_LUA = """
-- KEYS: windows; ARGV[1] their spans in ms, ARGV[2] members per key (comma-separated);
-- ARGV[3] "score member score member ...", key after key (members hold no spaces)
local tokens, n = {}, 0
for x in string.gmatch(ARGV[3], "%S+") do n = n + 1; tokens[n] = x end
local spans, counts = {}, {}
for x in string.gmatch(ARGV[1], "%d+") do spans[#spans + 1] = x end
for x in string.gmatch(ARGV[2], "%d+") do counts[#counts + 1] = tonumber(x) end
local at = 1
for i = 1, #KEYS do
  local last = at + 2 * counts[i] - 1
  for from = at, last, 7000 do  -- below Lua's C stack limit for unpack
    redis.call("ZADD", KEYS[i], unpack(tokens, from, math.min(from + 6999, last)))
  end
  redis.call("PEXPIRE", KEYS[i], spans[i])
  at = last + 1
end
return (at - 1) / 2
"""


def proto_rebuild(session: Any, redis: Any, settings: Any, *, now: datetime) -> dict[str, Any]:
    """rebuild_windows with: a plan for all rows (a cursor is planned for its first 10 %);
    each window's list resolved once per account, per (client, recipient domain) and per
    campaign instead of once per (account, campaign, domain), ~650,000 of them at 1M; the
    cyclic GC paused while millions of objects are made that hold no cycle; the entries
    built once per send; the write batched through Lua."""
    started = time.perf_counter()
    enabled = gc.isenabled()
    gc.disable()
    try:
        session.execute(text("SET LOCAL cursor_tuple_fraction = 1"))
        table = load_limits(session, settings)
        accounts = {a.id: a for a in session.execute(select(Account)).scalars()}
        caps = session.execute(
            select(Campaign.id, Campaign.daily_cap).where(Campaign.daily_cap.is_not(None))
        ).all()
        windows: dict[Any, list[str]] = {}

        def slots(ws: list[Any]) -> tuple[tuple[list[str], int], ...]:
            return tuple(
                (windows.setdefault((w.scope, w.key, w.seconds), []), w.seconds * 1_000_000)
                for w in ws
            )

        # LimitTable.windows() is these three parts; a seam there would give them apart.
        own = {
            a.id: (
                a.client_id,
                slots(
                    [
                        w
                        for w in table.windows(account=a, recipient_domain="")
                        if w.scope is not Scope.RECIPIENT_DOMAIN
                    ]
                ),
            )
            for a in accounts.values()
        }
        anyone = next(iter(accounts.values()))
        by_campaign = {
            campaign_id: slots(
                [
                    w
                    for w in table.windows(
                        account=anyone,
                        recipient_domain="",
                        campaign_id=campaign_id,
                        campaign_daily_cap=cap,
                    )
                    if w.scope is Scope.CAMPAIGN
                ]
            )
            for campaign_id, cap in caps
        }
        by_domain: dict[tuple[int, str], tuple[tuple[list[str], int], ...]] = {}
        now_us = round(now.timestamp() * 1_000_000)
        rows = session.execute(
            text(PROTO_SENDS.format(sends=SENDS_SINCE.text)).execution_options(
                stream_results=True, yield_per=PROTO_BATCH
            ),
            {"since": now - DAY, "now": now},
        )
        read, sends, none = 0.0, 0, ()
        mapping_started = time.perf_counter()
        while True:
            fetch_started = time.perf_counter()
            chunk = rows.fetchmany(PROTO_BATCH)
            read += time.perf_counter() - fetch_started
            if not chunk:
                break
            for entry, us, account_id, campaign_id, domain in chunk:
                held = own.get(account_id)
                if held is None:
                    continue
                client_id, account_slots = held
                domain_slots = by_domain.get((client_id, domain))
                if domain_slots is None:
                    limit = table.recipient_domain(domain, client_id)
                    key = recipient_domain_key(client_id, domain)
                    domain_slots = by_domain[(client_id, domain)] = slots(
                        _windows(Scope.RECIPIENT_DOMAIN, key, limit)
                    )
                sends += 1
                age = now_us - us
                for part in (account_slots, domain_slots, by_campaign.get(campaign_id, none)):
                    for members, span in part:
                        if age < span:
                            members.append(entry)
        write_started = time.perf_counter()
        written = proto_restore(redis, windows, epoch=os.urandom(8).hex())
    finally:
        if enabled:
            gc.enable()
    done = time.perf_counter()
    return {
        "sends": sends,
        "members": written,
        "windows": sum(1 for m in windows.values() if m),
        "split": {
            "total": done - started,
            "setup": mapping_started - started,
            "read": read,
            "mapping": write_started - mapping_started - read,
            "write": done - write_started,
        },
    }


def proto_restore(redis: Any, windows: dict[Any, list[str]], *, epoch: str) -> int:
    """Limiter.restore's contract (stale windows gone, the epoch written last), with many
    windows per round trip."""
    stale = list(redis.scan_iter(match=f"{PREFIX}:*", count=1000))
    for start in range(0, len(stale), 1000):
        redis.unlink(*stale[start : start + 1000])
    script = redis.register_script(PROTO_LUA)
    keys: list[str] = []
    spans: list[str] = []
    counts: list[str] = []
    batch: list[str] = []
    written = 0
    for (scope, key, seconds), members in windows.items():
        name = f"{PREFIX}:{scope.value}:{key}:{seconds}"
        for start in range(0, len(members), PROTO_BATCH):
            part = members[start : start + PROTO_BATCH]
            keys.append(name)
            spans.append(str(seconds * 1000))
            counts.append(str(len(part)))
            batch.extend(part)
            if len(batch) >= PROTO_BATCH:
                written += script(
                    keys=keys, args=[",".join(spans), ",".join(counts), " ".join(batch)]
                )
                keys, spans, counts, batch = [], [], [], []
    if keys:
        written += script(keys=keys, args=[",".join(spans), ",".join(counts), " ".join(batch)])
    redis.set(f"{PREFIX}:epoch", epoch)
    return written
