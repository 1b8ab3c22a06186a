"""The sender pool, suppressions and domains pages through the Flask test client: what
they show from the real state, and what their forms change (or refuse, changing nothing).
The browser proofs are in test_browser_pool.py."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, BlacklistCheck, Event, SenderAuthCheck, Suppression
from tests.web.test_login import csrf_of, sign_in, user  # noqa: F401  (the fixture)


@pytest.fixture
def web(app, client, user):  # noqa: F811
    sign_in(client)
    # Signed in first: requests inside an app context share its `g`, where Flask-WTF keeps
    # the token of the session that signing in replaced.
    with app.app_context():
        yield client


def _post(web, path, data, **kwargs):
    page = web.get(kwargs.pop("form_page", path)).get_data(as_text=True)
    return web.post(path, data={"csrf_token": csrf_of(page), **data}, **kwargs)


def test_the_pool_shows_each_accounts_state(web, factory):
    factory.create_account(name="warming", daily_limit=500, warmup_enabled=True, warmup_day=3)
    factory.create_account(
        name="resting",
        status="paused",
        paused_reason="bounce rate 12 %",
        last_health_ok=False,
        last_health_check_at=datetime.now(UTC),
    )
    html = web.get("/accounts").get_data(as_text=True)
    assert "warming" in html and "day 3" in html
    assert "0 / 150" in html  # sent today / cap today on day 3 of a 50 + 50 ramp
    assert "bounce rate 12 %" in html and "failed" in html
    assert html.count("not checked yet") >= 4  # blacklists and sender auth of both
    assert "<svg" in html  # the ramp chart of the warming one


def test_blacklist_and_sender_auth_show_their_latest_check(web, factory):
    account = factory.create_account(email="ann@brand.example")
    db.session.add(
        BlacklistCheck(target="brand.example", target_kind="domain", listed=True,
                       lists_hit=["dbl.spamhaus.org"], status="listed")
    )  # fmt: skip
    spf = {
        "status": "fail",
        "found": "v=spf1 -all",
        "problem": "does not include the provider",
        "fix": "v=spf1 include:_spf.google.com ~all",
    }
    db.session.add(
        SenderAuthCheck(
            domain="brand.example", spf="fail", dkim="pass", dmarc="pass", mx="pass",
            results={"spf": spf},
        )
    )  # fmt: skip
    db.session.commit()
    pool = web.get("/accounts").get_data(as_text=True)
    assert "dbl.spamhaus.org" in pool and "SPF" in pool
    page = web.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert "listed" in page and "failing" in page
    domains = web.get("/domains").get_data(as_text=True)
    assert "v=spf1 include:_spf.google.com ~all" in domains
    assert "does not include the provider" in domains


def test_a_domain_never_checked_says_so(web, factory):
    factory.create_account(email="bob@fresh.example")
    html = web.get("/domains").get_data(as_text=True)
    assert "fresh.example" in html and "Not checked yet." in html


def test_adding_an_account_from_a_preset_fills_the_server(web, app):
    response = _post(
        web,
        "/accounts/new",
        {"provider": "gmail", "name": "ann", "email": "ann@brand.example",
         "password": "app-password", "warmup": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    account = db.session.execute(select(Account)).scalar_one()
    assert (account.host, account.port, account.security) == ("smtp.gmail.com", 587, "starttls")
    assert account.daily_limit == 500 and account.username == "ann@brand.example"
    page = web.get(response.headers["Location"]).get_data(as_text=True)
    assert "app-password" not in page
    assert 'name="password" type="password" value=""' in page


def test_a_bad_account_form_shows_the_error_by_the_field_and_adds_nothing(web):
    response = _post(
        web, "/accounts/new", {"provider": "gmail", "name": "x", "email": "not-an-address"}
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'class="field-error"' in html and "f-email" in html
    assert db.session.scalar(select(func.count()).select_from(Account)) == 0


def test_editing_keeps_the_stored_password_when_left_empty(web, factory):
    account = factory.create_account(password="secret-1", name="old")
    path = f"/accounts/{account.id}"
    response = _post(
        web, path, {"name": "new", "email": account.email, "host": "127.0.0.1", "port": "2525",
                    "security": "none", "daily_limit": "700", "password": ""},
    )  # fmt: skip
    assert response.status_code == 302
    db.session.expire_all()
    changed = db.session.get(Account, account.id)
    assert changed.name == "new" and changed.daily_limit == 700
    assert changed.secret_encrypted == account.secret_encrypted


def test_pause_and_resume(web, factory):
    account = factory.create_account()
    path = f"/accounts/{account.id}"
    assert _post(web, f"{path}/pause", {}, form_page=path).status_code == 302
    db.session.expire_all()
    assert db.session.get(Account, account.id).status == "paused"
    assert "paused by operator" in web.get(path).get_data(as_text=True)
    assert _post(web, f"{path}/resume", {}, form_page=path).status_code == 302
    db.session.expire_all()
    assert db.session.get(Account, account.id).status == "active"


def test_another_clients_account_is_a_404(web, factory):
    other = factory.create_client(name="bravo")
    theirs = factory.create_account(client_id=other.id)
    assert web.get(f"/accounts/{theirs.id}").status_code == 404
    assert web.get("/accounts/999999").status_code == 404


def test_suppress_an_address_and_a_domain_then_search(web):
    assert _post(web, "/suppressions", {"kind": "email", "value": "Ann@People.example"},
                 form_page="/suppressions").status_code == 302  # fmt: skip
    assert _post(web, "/suppressions", {"kind": "domain", "value": "spam.example"},
                 form_page="/suppressions").status_code == 302  # fmt: skip
    values = set(db.session.scalars(select(Suppression.value)))
    assert values == {"ann@people.example", "spam.example"}
    web.get("/suppressions")  # shows the flashed messages
    found = web.get("/suppressions?q=people").get_data(as_text=True)
    assert "ann@people.example" in found and "spam.example" not in found


def test_an_address_that_is_not_one_is_refused_by_the_field(web):
    response = _post(web, "/suppressions", {"kind": "email", "value": "nobody"})
    assert response.status_code == 422
    assert "field-error" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_removing_an_unsubscribe_needs_the_confirmation(web, factory):
    factory.suppress("left@people.example", reason="unsubscribed", client_id=1)
    remove = "/suppressions/remove?value=left@people.example"
    page = web.get(remove).get_data(as_text=True)
    assert "their own opt-out" not in page and "own opt-out" in page
    refused = web.post("/suppressions/remove", data={
        "csrf_token": csrf_of(page), "value": "left@people.example"})  # fmt: skip
    assert refused.status_code == 409
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 1
    done = web.post("/suppressions/remove", data={
        "csrf_token": csrf_of(page), "value": "left@people.example", "confirm": "on"})  # fmt: skip
    assert done.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0
    event = db.session.scalars(select(Event).where(Event.type == "suppression_deleted")).one()
    assert event.data["who"]["user_email"] == "ops@example.com"


def test_a_global_bounce_cannot_be_removed_by_a_client_user(web, factory):
    factory.suppress("gone@people.example", reason="bounced")
    page = web.get("/suppressions/remove?value=gone@people.example").get_data(as_text=True)
    response = web.post("/suppressions/remove", data={
        "csrf_token": csrf_of(page), "value": "gone@people.example"})  # fmt: skip
    assert response.status_code == 409
    assert "admin" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 1


def test_import_a_csv_reports_rows_and_export_neutralises_formulas(web):
    data = "Email;Name\nann@people.example;Ann\nnot an address;X\n=cmd@evil.example;Eve\n"
    page = web.get("/suppressions").get_data(as_text=True)
    response = web.post(
        "/suppressions/import",
        data={"csrf_token": csrf_of(page), "file": (io.BytesIO(data.encode()), "list.csv")},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Import report" in html and "not an address" in html
    values = set(db.session.scalars(select(Suppression.value)))
    assert values == {"ann@people.example", "=cmd@evil.example"}
    export = web.get("/suppressions/export.csv")
    assert export.mimetype == "text/csv"
    lines = export.get_data(as_text=True).splitlines()
    assert lines[0] == "value,kind,reason,source,scope,created_at"
    assert any(line.startswith("'=cmd@evil.example,") for line in lines)


def test_a_file_that_is_not_a_csv_is_refused(web):
    page = web.get("/suppressions").get_data(as_text=True)
    response = web.post(
        "/suppressions/import",
        data={"csrf_token": csrf_of(page), "file": (io.BytesIO(b"\x89PNG"), "photo.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "photo.png is not a CSV file" in response.get_data(as_text=True)
