"""How many accounts a dispatcher round uses (worker.jobs.assignment): a large pool gives
each account it uses a run of a campaign's recipients, so a send task carries many over one
SMTP session; a small pass still spreads over accounts; a paced account is counted for
what it can send within the horizon, so none is offered rows the limiter would refuse."""

from __future__ import annotations

from collections import Counter

import pytest

from app.metrics.counters import limiter_refusals
from tests.pipeline import dispatch
from worker.jobs.assignment import MIN_RUN, ROUND_ACCOUNTS


def _emails(n: int) -> list[str]:
    # One domain each: no recipient-domain limit gets in the way.
    return [f"r{i}@d{i}.example" for i in range(n)]


def _accounts(factory, n: int, **limits) -> set[int]:
    limits.setdefault("per_minute_limit", 10_000)
    return {factory.create_account(daily_limit=10_000, **limits).id for _ in range(n)}


@pytest.fixture(autouse=True)
def _system_limit_lifted(app, settings, monkeypatch):
    """The system's 100 a minute would otherwise end every pass here at 100."""
    lifted = settings.model_copy(update={"limit_system_per_minute": 100_000})
    monkeypatch.setitem(app.extensions, "settings", lifted)
    return lifted


def _per_account(result) -> Counter[int]:
    return Counter({b.account_id: len(b.ids) for b in result.batches})


def test_a_large_pool_gives_each_account_it_uses_a_send_tasks_worth(app, factory, settings):
    pool = _accounts(factory, 60)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(500))
    result = dispatch(app)
    assert result.queued == 500
    used = _per_account(result)
    # 500 over ROUND_ACCOUNTS is 50, one send task's SEND_GROUP_SIZE: ten accounts of 60.
    assert settings.send_group_size == 50 and ROUND_ACCOUNTS == 10
    assert sorted(used.values()) == [50] * 10 and set(used) <= pool
    assert len(result.batches) == 10


def test_runs_never_exceed_a_send_task(app, factory, _system_limit_lifted, monkeypatch):
    smaller = _system_limit_lifted.model_copy(update={"send_group_size": 20})
    monkeypatch.setitem(app.extensions, "settings", smaller)
    _accounts(factory, 60)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(500))
    result = dispatch(app)
    assert result.queued == 500
    assert sorted(_per_account(result).values()) == [20] * 25


def test_a_small_pass_still_spreads_over_accounts(app, factory):
    _accounts(factory, 60)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(30))
    result = dispatch(app)
    assert sorted(_per_account(result).values()) == [MIN_RUN] * (30 // MIN_RUN)


@pytest.fixture
def paced(app, _system_limit_lifted, monkeypatch):
    live = _system_limit_lifted.model_copy(
        update={"send_pacing": True, "dispatch_horizon_seconds": 30.0}
    )
    monkeypatch.setitem(app.extensions, "settings", live)
    return live


def test_paced_accounts_are_counted_for_what_they_take_within_the_horizon(
    app, factory, paced, redis_client
):
    # 6 a minute, paced: one every 10 s, so 30 s ahead holds moments 0, 10, 20 and 30.
    _accounts(factory, 30, per_minute_limit=6)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(100))
    result = dispatch(app)
    assert (result.queued, result.postponed) == (100, 0)
    slots = Counter(_per_account_slots(result))
    assert sorted(slots.values()) == [4] * 25
    assert limiter_refusals(redis_client) == {}


def _per_account_slots(result) -> list[int]:
    """One entry per queued row, its account (paced tasks hold one row each)."""
    return [b.account_id for b in result.batches for _ in b.ids]
