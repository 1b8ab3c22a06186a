"""The forecast's simulation on its own: which limit binds and the finish day, for the
shapes a campaign takes (no database; app.services.forecast_model)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from app.services.forecast import sending_calendar
from app.services.forecast_model import (
    AccountInput,
    Cap,
    Competitor,
    DomainInput,
    ForecastInput,
    simulate,
)

START = date(2026, 12, 4)  # a Friday
OPEN_DAY = 480


def _account(id_: int = 1, cap: int | tuple[int, ...] = 1000, **kw) -> AccountInput:
    caps = cap if isinstance(cap, tuple) else (cap,)
    kw.setdefault("per_minute", None)
    return AccountInput(
        id=id_, name=f"a{id_}", sending_key=kw.pop("key", f"d{id_}"), caps=caps, **kw
    )


def _freemail(n: int, name: str = "gmail.com") -> DomainInput:
    return DomainInput(name, n, 1000, freemail=True)


def _input(accounts, domains, days: int = 30, minutes: int = OPEN_DAY, **kw) -> ForecastInput:
    return ForecastInput(
        start=START,
        minutes=kw.pop("calendar", (minutes,) * days),
        accounts=tuple(accounts),
        domains=tuple(domains),
        **kw,
    )


def test_a_weekday_window_skips_the_weekend():
    friday_10 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    window = {"timezone": "UTC", "days": [0, 1, 2, 3, 4], "start_hour": 9, "end_hour": 17}
    calendar = sending_calendar(window, friday_10, 10)
    assert calendar.minutes[:5] == (420, 0, 0, 480, 480)
    assert calendar.close_day0 == datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    result = simulate(_input([_account(cap=100)], [_freemail(250)], calendar=calendar.minutes))
    assert [(d.index, d.sends) for d in result.days] == [(0, 100), (3, 100), (4, 50)]
    assert result.finish_day == 4  # Tuesday
    assert result.days[0].binding.scope == "accounts"


def test_a_window_already_closed_today_sends_from_the_next_open_day():
    friday_18 = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
    window = {"timezone": "Europe/Berlin", "days": [0, 1, 2, 3, 4], "start_hour": 9, "end_hour": 17}
    calendar = sending_calendar(window, friday_18, 5)
    assert calendar.minutes[:4] == (0, 0, 0, 480)


def test_the_warm_up_ramp_binds_and_grows_each_day():
    ramp = _account(cap=(50, 100, 150, 200, 250, 300, 350, 400, 450, 500))
    result = simulate(_input([ramp], [_freemail(300)]))
    assert [d.sends for d in result.days] == [50, 100, 150]
    assert result.finish_day == 2
    assert result.days[0].binding.message == "the accounts' warm-up caps"


def test_a_recipient_domain_limit_spreads_its_recipients_over_days():
    acme = DomainInput("acme.com", 300, 20)
    result = simulate(_input([_account(cap=1000)], [acme, _freemail(100)], days=40))
    assert result.days[0].sends == 120  # gmail's 100 and acme's 20
    assert result.days[1].sends == 20
    assert result.days[1].binding.scope == "recipient_domain"
    assert result.days[1].binding.message == "acme.com is limited to 20 a day"
    assert result.finish_day == 14
    plan = next(p for p in result.domains if p.domain == "acme.com")
    assert (
        plan.message == "acme.com is limited to 20 a day: its 300 recipients take 15 sending days"
    )


def test_the_campaign_daily_cap_binds():
    result = simulate(_input([_account(cap=1000)], [_freemail(100)], campaign=Cap(per_day=30)))
    assert [d.sends for d in result.days] == [30, 30, 30, 10]
    assert {d.binding.scope for d in result.days[:3]} == {"campaign"}
    assert result.finish_day == 3


def test_the_system_per_minute_limit_binds_over_the_open_minutes():
    result = simulate(
        _input([_account(cap=1000)], [_freemail(300)], minutes=60, system=Cap(per_minute=2))
    )
    assert [d.sends for d in result.days] == [120, 120, 60]
    assert result.days[0].binding.scope == "system"


def test_today_counts_what_the_windows_hold_and_tomorrow_starts_full():
    account = _account(cap=100, used_day0=80)
    result = simulate(
        _input(
            [account],
            [DomainInput("acme.com", 200, 1000, used_day0=0)],
            campaign=Cap(150, None, 140),
        )
    )
    assert result.days[0].sends == 10  # the campaign's cap leaves 10 today
    assert result.days[0].binding.scope == "campaign"
    assert result.days[1].sends == 100


def test_sends_even_out_what_the_accounts_have_left():
    a, b = _account(1, cap=5), _account(2, cap=3)
    result = simulate(_input([a, b], [_freemail(6)]))
    assert result.days[0].by_account == {1: 4, 2: 2}
    result = simulate(_input([a, b], [_freemail(20)]))
    assert result.days[0].by_account == {1: 5, 2: 3}


def test_accounts_of_one_sending_domain_share_its_limit():
    a, b = _account(1, cap=100, key="shared.example"), _account(2, cap=100, key="shared.example")
    result = simulate(
        _input([a, b], [_freemail(500)], sending_domains={"shared.example": Cap(per_day=120)})
    )
    assert result.days[0].sends == 120
    assert result.days[0].binding.scope == "sending_domain"
    assert result.days[0].by_account == {1: 60, 2: 60}


def test_another_running_campaign_shares_the_account_by_priority():
    shared = _account(cap=100, shared_with=((7, 1.0),))
    other = Competitor(7, waiting=150, priority=1)
    result = simulate(_input([shared], [_freemail(200)], competitors=(other,)))
    # Half each while the other has recipients waiting (150: three days), then all.
    assert [d.sends for d in result.days[:4]] == [50, 50, 50, 50]
    assert result.finish_day == 3


def test_a_paused_account_sends_from_the_day_its_pause_ends():
    result = simulate(_input([_account(cap=10, available_from=2)], [_freemail(15)]))
    assert [(d.index, d.sends) for d in result.days] == [(0, 0), (2, 10), (3, 5)]


def test_beyond_the_horizon_says_how_many_are_left():
    result = simulate(_input([_account(cap=1)], [_freemail(1000)], days=400))
    assert result.finish_day is None
    assert result.left_after_horizon == 1000 - 365
    assert len(result.days) == 365


def test_no_account_sends_nothing_and_says_so():
    result = simulate(_input([], [_freemail(5)]))
    assert result.finish_day is None
    assert result.days[0].sends == 0
    assert result.days[0].binding.message == "no account can send this campaign"


def test_a_domain_under_a_back_off_waits_for_its_end():
    slow = DomainInput("slow.example", 10, 100, available_from=2)
    result = simulate(_input([_account(cap=100)], [slow, _freemail(5)]))
    assert [(d.index, d.by_domain) for d in result.days] == [
        (0, {"gmail.com": 5}),
        (2, {"slow.example": 10}),
    ]


def test_domains_are_served_oldest_rows_first_when_another_limit_binds():
    # Listed in the order of each domain's first recipient, as the dispatcher claims rows.
    first, second, third = (
        DomainInput("a.example", 10, 20),
        DomainInput("b.example", 10, 20),
        (DomainInput("c.example", 10, 20)),
    )
    result = simulate(_input([_account(cap=15)], [first, second, third]))
    assert [d.by_domain for d in result.days] == [
        {"a.example": 10, "b.example": 5},
        {"b.example": 5, "c.example": 10},
    ]
    assert result.days[0].binding.scope == "accounts"
