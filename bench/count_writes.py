"""The write overhead of the recipient_counts triggers (migration 0013), for
bench/api_latency.py: the same writes with the triggers enabled and disabled, alternating
in one run so that table growth and the machine's load fall on both alike.

- the importer's INSERT ... SELECT (app.services.imports) of half the campaign's size, four
  times into fresh campaigns (off, on, on, off: the table grows with each, so the order
  cancels that drift), with the trigger's own time from EXPLAIN ANALYZE;
- the send path's per-row compare-and-set updates (queued -> sending, sending -> sent) and
  an update that changes no status (claimed_by), one commit each, in blocks of 50 rows;
- the dispatcher's 200-row batch update (MARK_QUEUED's shape).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

TRIGGERS = (
    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'recipients'::regclass "
    "AND NOT tgisinternal AND tgname LIKE 'recipient_counts%'"
)
STAGING = """
    CREATE UNLOGGED TABLE bench_staging AS
    SELECT g AS row_no, 'i' || g || '@co' || g %% 20000 || '.example' AS email,
           'co' || g %% 20000 || '.example' AS domain,
           jsonb_build_object('first_name', 'Ann', 'last_name', 'Smith',
                              'company', 'Firm ' || g %% 5000, 'city', 'Berlin') AS fields
    FROM generate_series(1, %s) g
"""
IMPORT = """
    EXPLAIN (ANALYZE, FORMAT JSON)
    INSERT INTO recipients (campaign_id, email, domain, fields, status)
    SELECT %s, email, domain, fields, 'pending' FROM bench_staging
    ON CONFLICT (campaign_id, email) DO NOTHING
"""
PER_ROW = {
    "claim": "UPDATE recipients SET status = 'sending', sending_since = now(), "
    "attempts = attempts + 1 WHERE id = %s AND status = 'queued'",
    "finish": "UPDATE recipients SET status = 'sent', sent_at = now(), sending_since = NULL, "
    "last_smtp_code = 250 WHERE id = %s AND status = 'sending'",
    "no_status": "UPDATE recipients SET claimed_by = 'bench' WHERE id = %s",
}
BATCH = (
    "UPDATE recipients SET status = 'queued', queued_at = now() "
    "WHERE id = ANY(%s) AND status = 'pending'"
)
BLOCK = 50
FIRST_CAMPAIGN = 1001


def write_overhead(cur: Any, rows: int, per_row: int) -> dict[str, Any]:
    """Medians per mode (`<what>_on`, `<what>_off`); {} when the schema has no triggers.
    `cur` is an autocommit cursor of a throwaway database."""
    cur.execute(TRIGGERS)
    triggers = [name for (name,) in cur.fetchall()]
    if not triggers:
        return {}

    def toggle(enabled: bool) -> str:
        verb = "ENABLE" if enabled else "DISABLE"
        for name in triggers:
            cur.execute(f'ALTER TABLE recipients {verb} TRIGGER "{name}"')
        return "on" if enabled else "off"

    samples: dict[str, list[float]] = {}
    cur.execute(STAGING, (rows,))
    cur.execute("VACUUM ANALYZE bench_staging")
    for index, enabled in enumerate((False, True, True, False)):  # ABBA: growth cancels
        campaign_id = FIRST_CAMPAIGN + index
        cur.execute(
            "INSERT INTO campaigns (id, client_id, name, subject, body_text) "
            "VALUES (%s, 1, 'import', 's', 'b')",
            (campaign_id,),
        )
        mode = toggle(enabled)
        started = time.perf_counter()
        cur.execute(IMPORT, (campaign_id,))
        samples.setdefault(f"import_{mode}", []).append(time.perf_counter() - started)
        samples.setdefault("import_runs", []).append(time.perf_counter() - started)
        plan = cur.fetchone()[0][0]
        for trigger in plan.get("Triggers", []):
            if trigger["Trigger Name"] in triggers:
                samples.setdefault("import_trigger", []).append(trigger["Time"] / 1000)
                share = trigger["Time"] / plan["Execution Time"]
                samples.setdefault("import_trigger_share", []).append(share)

    cur.execute(
        "SELECT id FROM recipients WHERE campaign_id = %s ORDER BY id LIMIT %s",
        (FIRST_CAMPAIGN, 2 * per_row),
    )
    ids = [i for (i,) in cur.fetchall()]
    cur.execute("UPDATE recipients SET status = 'queued' WHERE id = ANY(%s)", (ids,))
    for index in range(0, len(ids), BLOCK):
        mode = toggle(index // BLOCK % 2 == 1)
        block = ids[index : index + BLOCK]
        for name, statement in PER_ROW.items():
            started = time.perf_counter()
            for recipient_id in block:
                cur.execute(statement, (recipient_id,))
            samples.setdefault(f"{name}_{mode}", []).append(
                (time.perf_counter() - started) / len(block)
            )

    # The server's side of one per-row statement: its execution and the trigger's share.
    cur.execute(
        "UPDATE recipients SET status = 'queued' WHERE id IN (SELECT id FROM recipients "
        "WHERE campaign_id = %s AND status = 'pending' ORDER BY id LIMIT %s) RETURNING id",
        (FIRST_CAMPAIGN + 2, BLOCK),
    )
    for (recipient_id,) in cur.fetchall():
        for name, statement in PER_ROW.items():
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, (recipient_id,))
            plan = cur.fetchone()[0][0]
            own = sum(t["Time"] for t in plan.get("Triggers", []) if t["Trigger Name"] in triggers)
            samples.setdefault(f"{name}_server", []).append(plan["Execution Time"] / 1000)
            samples.setdefault(f"{name}_trigger", []).append(own / 1000)

    cur.execute(
        "SELECT id FROM recipients WHERE campaign_id = %s AND status = 'pending' "
        "ORDER BY id LIMIT 4000",
        (FIRST_CAMPAIGN + 1,),
    )
    batch_ids = [i for (i,) in cur.fetchall()]
    for index in range(0, len(batch_ids), 200):
        mode = toggle(index // 200 % 2 == 1)
        started = time.perf_counter()
        cur.execute(BATCH, (batch_ids[index : index + 200],))
        samples.setdefault(f"batch_{mode}", []).append(time.perf_counter() - started)
    toggle(True)
    runs = samples.pop("import_runs")
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {"triggers": triggers, "import_runs": runs, **medians}


def report(out: dict[str, Any], rows: int) -> None:
    if not out:
        print("write overhead: no counter triggers in this schema")
        return
    print(f"-- write overhead of the counter triggers ({', '.join(out['triggers'])})")
    on, off = out["import_on"], out["import_off"]
    print(
        f"import INSERT ... SELECT of {rows:,} (median of 2 each): off {off:.2f} s, "
        f"on {on:.2f} s, ratio {on / off:.3f}; the trigger itself {out['import_trigger']:.2f} s"
    )
    print(
        "  each run (off, on, on, off): "
        + ", ".join(f"{s:.2f} s" for s in out["import_runs"])
        + f"; the trigger's share of a run with it {out['import_trigger_share']:.1%}"
        " (the wall-clock ratio moves with the shared machine's load; this does not)"
    )
    for name, what in (
        ("claim", "per-row claim queued -> sending"),
        ("finish", "per-row outcome sending -> sent"),
        ("no_status", "per-row update of claimed_by only"),
    ):
        on, off = out[f"{name}_on"] * 1e6, out[f"{name}_off"] * 1e6
        server, own = out[f"{name}_server"] * 1e6, out[f"{name}_trigger"] * 1e6
        print(
            f"{what:34} off {off:6.0f} µs  on {on:6.0f} µs  ratio {on / off:.3f} (commit each);"
            f" in the server {server:.0f} µs, the trigger's share {own:.0f} µs"
        )
    on, off = out["batch_on"] * 1e3, out["batch_off"] * 1e3
    print(
        f"{'200-row dispatcher batch':34} off {off:6.2f} ms  on {on:6.2f} ms  ratio {on / off:.3f}"
    )
