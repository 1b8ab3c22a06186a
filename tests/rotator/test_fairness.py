"""Fair shares of the dispatcher's batch: clients first, then campaigns."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rotator.fairness import interleave, quotas


def test_each_client_gets_an_equal_share_whatever_its_campaigns():
    # Client 1 has three campaigns, client 2 one: client 2 is not a quarter of the batch.
    shares = quotas({1: [10, 11, 12], 2: [20]}, 100)
    assert shares[20] == 50
    assert sorted(shares[c] for c in (10, 11, 12)) == [16, 17, 17]


def test_more_campaigns_than_rows_are_served_in_turn():
    served = [set(quotas({1: list(range(10))}, 3, rotation=tick)) for tick in range(4)]
    assert served[0] == {0, 1, 2} and served[1] == {1, 2, 3}
    assert set().union(*(quotas({1: list(range(10))}, 3, rotation=t) for t in range(10))) == set(
        range(10)
    )


def test_no_budget_claims_nothing():
    assert quotas({1: [1]}, 0) == {}
    assert quotas({}, 10) == {}


@given(
    st.dictionaries(
        st.integers(1, 20),
        st.lists(st.integers(1, 10_000), min_size=1, max_size=8, unique=True),
        max_size=12,
    ),
    st.integers(0, 1000),
    st.integers(0, 100),
)
def test_quotas_never_exceed_the_budget_and_shares_differ_by_at_most_one(clients, budget, tick):
    # Campaign ids unique across clients, as in the database.
    seen: set[int] = set()
    clients = {c: [i for i in ids if not (i in seen or seen.add(i))] for c, ids in clients.items()}
    clients = {c: ids for c, ids in clients.items() if ids}
    shares = quotas(clients, budget, rotation=tick)
    # The whole budget is handed out when anyone is waiting, never more.
    assert sum(shares.values()) == (budget if clients else 0)
    assert all(q > 0 for q in shares.values())
    per_client = [sum(shares.get(i, 0) for i in ids) for ids in clients.values()]
    if clients:
        assert max(per_client) - min(per_client) <= 1


def test_interleave_alternates_clients_then_campaigns_keeping_each_campaigns_order():
    rows = [(1, 10, n) for n in range(4)] + [(1, 11, n) for n in range(2)] + [(2, 20, 0)]
    order = interleave(rows, client_of=lambda r: r[0], campaign_of=lambda r: r[1])
    assert order[:2] == [(1, 10, 0), (2, 20, 0)]
    assert [r for r in order if r[1] == 10] == [(1, 10, n) for n in range(4)]
    assert sorted(order) == sorted(rows)


def test_a_campaigns_priority_weighs_its_share_within_its_client_only():
    shares = quotas({1: [10, 11], 2: [20]}, 90, priority={10: 2, 11: 1, 20: 5})
    assert (shares[10], shares[11]) == (30, 15)  # 2 : 1 of client 1's half
    assert shares[20] == 45  # a priority does not take from another client


def test_interleave_gives_a_higher_priority_more_places_per_round():
    rows = [(1, 10, n) for n in range(4)] + [(1, 11, n) for n in range(4)]
    order = interleave(
        rows,
        client_of=lambda r: r[0],
        campaign_of=lambda r: r[1],
        priority=lambda r: 3 if r[1] == 10 else 1,
    )
    assert [r[1] for r in order[:4]] == [10, 10, 10, 11]
    assert sorted(order) == sorted(rows)


@given(st.integers(0, 500), st.lists(st.integers(1, 100), min_size=1, max_size=10))
def test_weighted_shares_add_up_and_follow_the_weights(total, weights):
    campaigns = list(range(len(weights)))
    shares = quotas({1: campaigns}, total, priority=dict(zip(campaigns, weights, strict=True)))
    assert sum(shares.values()) == total
    whole = sum(weights)
    for campaign, weight in zip(campaigns, weights, strict=True):
        assert abs(shares.get(campaign, 0) - total * weight / whole) < 1
