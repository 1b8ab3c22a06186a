from __future__ import annotations

from rotator.selection import Candidate, order_candidates, provider_for_mx


def c(account_id: int, remaining: int, provider: str = "smtp") -> Candidate:
    return Candidate(account_id, provider, "example.com", remaining)


def ids(candidates: list[Candidate]) -> list[int]:
    return [x.account_id for x in candidates]


def test_accounts_without_capacity_are_left_out() -> None:
    assert ids(order_candidates([c(1, 0), c(2, 5), c(3, -2)], cursor=0)) == [2]
    assert order_candidates([], cursor=3) == []


def test_most_remaining_capacity_first() -> None:
    assert ids(order_candidates([c(1, 10), c(2, 300), c(3, 40)], cursor=0)) == [2, 3, 1]


def test_equal_accounts_take_turns_as_the_cursor_advances() -> None:
    pool = [c(3, 50), c(1, 50), c(2, 50), c(9, 10)]
    firsts = [order_candidates(pool, cursor=n)[0].account_id for n in range(6)]
    assert firsts == [1, 2, 3, 1, 2, 3]
    assert ids(order_candidates(pool, cursor=1)) == [2, 3, 1, 9]


def test_preferred_provider_comes_first_then_capacity() -> None:
    pool = [c(1, 400, "sendgrid"), c(2, 20, "gmail"), c(3, 90, "gmail"), c(4, 0, "gmail")]
    assert ids(order_candidates(pool, cursor=0, prefer_provider="gmail")) == [3, 2, 1]
    assert ids(order_candidates(pool, cursor=0, prefer_provider="yahoo")) == [1, 3, 2]


def test_order_does_not_depend_on_input_order() -> None:
    pool = [c(1, 5), c(2, 5), c(3, 7)]
    assert order_candidates(pool, cursor=4) == order_candidates(pool[::-1], cursor=4)


def test_provider_for_mx() -> None:
    assert provider_for_mx(["ASPMX.L.GOOGLE.COM.", "alt1.aspmx.l.google.com"]) == "gmail"
    assert provider_for_mx(["smtp.google.com"]) == "gmail"
    assert provider_for_mx(["mx.example.org", "gmail-smtp-in.l.googlemail.com"]) == "gmail"
    assert provider_for_mx(["example-org.mail.protection.outlook.com"]) is None
    assert provider_for_mx(["notgoogle.com"]) is None
    assert provider_for_mx([]) is None
