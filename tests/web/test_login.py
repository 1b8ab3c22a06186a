"""Sign-in, sign-out, the login wall, CSRF and the wrong-password throttle, through the
Flask test client (the browser proofs are in test_browser_*.py)."""

from __future__ import annotations

import re

import pytest
from werkzeug.security import generate_password_hash

from tests.web.routes import is_built

PASSWORD = "correct horse battery"
PAGES = [
    "/", "/campaigns", "/campaigns/new", "/campaigns/1", "/accounts", "/accounts/new",
    "/accounts/1", "/suppressions", "/domains", "/campaigns/rows",
]  # fmt: skip


@pytest.fixture
def user(app):
    from app.db import unit_of_work
    from app.models import User
    from app.services.clients import add_member

    with app.app_context(), unit_of_work() as session:
        user = User(email="ops@example.com", password_hash=generate_password_hash(PASSWORD))
        session.add(user)
        add_member(session, user, None)
    return user


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def sign_in(client, email="ops@example.com", password=PASSWORD, **extra):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token, **extra}
    )


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_login_redirects_to_login(app, client, path):
    if not is_built(app, path):
        pytest.skip(f"{path} is not built yet")
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_sign_in_goes_back_to_the_page_asked_for(client, user):
    wall = client.get("/campaigns/new")
    assert "next=/campaigns/new" in wall.headers["Location"]
    response = sign_in(client, next="/campaigns/new")
    assert response.status_code == 302
    assert response.headers["Location"] == "/campaigns/new"
    assert client.get("/campaigns").status_code == 200


def test_sign_in_never_redirects_to_another_site(client, user):
    response = sign_in(client, next="//evil.example/x")
    assert response.headers["Location"] == "/campaigns"


def test_session_cookie_is_httponly_samesite_and_secure_outside_development(client, user):
    response = sign_in(client)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie  # SENDFLEET_ENV=test


def test_wrong_password_shows_a_message_and_signs_nobody_in(client, user):
    response = sign_in(client, password="wrong password")
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/campaigns").status_code == 302


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(client, user):
    response = client.post("/login", data={"email": "ops@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert "without a valid security token" in response.get_data(as_text=True)
    assert client.get("/campaigns").status_code == 302


def test_sign_out_needs_a_post_and_ends_the_session(client, user):
    sign_in(client)
    page = client.get("/logout")
    assert page.status_code == 200
    assert client.get("/campaigns").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert response.headers["Location"] == "/login"
    assert client.get("/campaigns").status_code == 302


def test_repeated_wrong_passwords_lock_the_account_for_a_growing_time(
    app, client, user, redis_client
):
    free = 5  # LOGIN_FREE_FAILURES_PER_ACCOUNT
    for _ in range(free):
        assert "Try again" not in sign_in(client, password="nope nope").get_data(as_text=True)
    locked = sign_in(client, password="nope nope").get_data(as_text=True)
    assert "Try again in 2 seconds" in locked
    # While locked, even the right password is refused without being checked.
    refused = sign_in(client)
    assert refused.status_code == 401
    assert "Too many wrong passwords" in refused.get_data(as_text=True)
    lock_keys = [k for k in redis_client.keys("sendfleet:web:login:account:*:lock")]
    assert len(lock_keys) == 1
    redis_client.delete(*lock_keys)
    assert "Try again in 4 seconds" in sign_in(client, password="nope").get_data(as_text=True)
    redis_client.delete(*redis_client.keys("sendfleet:web:login:account:*:lock"))
    assert sign_in(client).status_code == 302
    # The right password cleared the account's count.
    other = app.test_client()
    assert "Try again" not in sign_in(other, password="nope").get_data(as_text=True)


def test_wrong_passwords_from_one_address_lock_it_for_every_account(client, user):
    for n in range(21):  # one past LOGIN_FREE_FAILURES_PER_ADDRESS, over many emails
        sign_in(client, email=f"guess{n}@example.com", password="nope nope")
    response = sign_in(client)
    assert response.status_code == 401
    assert "Too many wrong passwords" in response.get_data(as_text=True)


def test_unknown_pages_get_the_styled_404_and_api_keeps_json(client, user):
    sign_in(client)
    page = client.get("/campaigns/999999")
    assert page.status_code == 404
    assert "Page not found" in page.get_data(as_text=True)
    assert client.get("/nothing-here").status_code == 404
    api = client.get("/api/v1/nothing")
    assert api.status_code in (401, 404)
    assert api.is_json


def test_an_unexpected_error_is_the_styled_500_page_without_a_traceback(
    app, client, user, monkeypatch
):
    from app.web import campaigns

    def broken() -> None:
        raise RuntimeError("secret detail of the failure")

    sign_in(client)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    monkeypatch.setattr(campaigns, "_campaign_rows", broken)
    response = client.get("/campaigns")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong on our side" in body
    assert "secret detail" not in body and "Traceback" not in body
    assert 'href="/campaigns"' in body  # the layout's navigation


def test_pages_carry_a_content_security_policy(client, user):
    sign_in(client)
    response = client.get("/campaigns")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


PROXY = "172.18.0.1"  # what the API sees of every request that comes through the proxy


@pytest.fixture
def proxied_app(app, settings):
    """The app as the compose files run it: one proxy in front (TRUSTED_PROXIES=1)."""
    from app import create_app
    from app.extensions import db

    proxied = create_app(settings.model_copy(update={"trusted_proxies": 1}))
    yield proxied
    with proxied.app_context():
        db.engine.dispose()


def client_from(app, forwarded_for: str | None, remote: str = PROXY):
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = remote
    if forwarded_for is not None:
        browser.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return browser


def lock_out(app, forwarded_for: str | None, *, rotate_forged: bool = False) -> None:
    """One past LOGIN_FREE_FAILURES_PER_ADDRESS wrong passwords from one client."""
    for n in range(21):
        header = f"10.9.8.{n}, {forwarded_for}" if rotate_forged else forwarded_for
        sign_in(client_from(app, header), email=f"guess{n}@example.com", password="nope nope")


def test_behind_a_trusted_proxy_one_clients_guesses_lock_that_client_only(proxied_app, user):
    lock_out(proxied_app, "203.0.113.7")
    refused = sign_in(client_from(proxied_app, "203.0.113.7"))
    assert refused.status_code == 401
    assert "Too many wrong passwords" in refused.get_data(as_text=True)
    # Another client through the same proxy is not the attacker.
    assert sign_in(client_from(proxied_app, "198.51.100.2")).status_code == 302


def test_a_forged_forwarded_for_before_the_proxys_own_entry_changes_nothing(proxied_app, user):
    # The client writes its own X-Forwarded-For; the proxy appends the address it saw, and
    # only that last entry is believed.
    lock_out(proxied_app, "203.0.113.7", rotate_forged=True)
    assert sign_in(client_from(proxied_app, "10.9.8.99, 203.0.113.7")).status_code == 401
    assert sign_in(client_from(proxied_app, "198.51.100.2")).status_code == 302


def test_without_a_trusted_proxy_the_forwarded_for_header_is_not_believed(app, user):
    # TRUSTED_PROXIES=0 (the default): a client that names a new address each time is still
    # the one address it connects from, and is locked.
    for n in range(21):
        sign_in(
            client_from(app, f"192.0.2.{n}", remote="203.0.113.9"),
            email=f"guess{n}@example.com",
            password="nope nope",
        )
    assert sign_in(client_from(app, "192.0.2.200", remote="203.0.113.9")).status_code == 401
    assert sign_in(client_from(app, None, remote="198.51.100.3")).status_code == 302


def test_behind_a_proxy_that_rewrites_host_a_sign_in_still_passes_csrf(proxied_app, user):
    # nginx's default: Host becomes the upstream's, X-Forwarded-Proto says https. Only the
    # address is believed, so the request is not "secure" and Flask-WTF's strict Referer
    # check (which would compare the public name with the upstream's) stays off.
    browser = client_from(proxied_app, "198.51.100.2")
    browser.environ_base.update(
        HTTP_HOST="127.0.0.1:8000",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_REFERER="https://sendfleet.example.com/login",
    )
    assert sign_in(browser).status_code == 302
