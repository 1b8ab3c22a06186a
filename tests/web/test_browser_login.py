"""In Chromium: the login wall, a wrong password, signing in and out, the 404 page."""

from __future__ import annotations

import pytest

from tests.web.conftest import WEB_EMAIL, sign_in
from tests.web.routes import is_built

PAGES = ["/", "/campaigns", "/campaigns/new", "/campaigns/1", "/accounts", "/accounts/new",
         "/accounts/1", "/suppressions", "/domains"]  # fmt: skip


def test_every_page_without_login_lands_on_the_sign_in_page(app, browser_page, live_server):
    for path in [p for p in PAGES if is_built(app, p)]:
        browser_page.goto(path)
        assert browser_page.url.startswith(f"{live_server}/login"), path
        assert browser_page.get_by_role("heading", name="Sign in").is_visible()


def test_a_wrong_password_says_so_and_a_right_one_signs_in(browser_page, web_user, shoot):
    browser_page.goto("/login")
    shoot(browser_page, "login")
    sign_in(browser_page, password="not the password")
    assert browser_page.get_by_role("alert").inner_text() == "Wrong email or password."
    assert "/login" in browser_page.url
    shoot(browser_page, "login-wrong-password")
    sign_in(browser_page)
    browser_page.wait_for_url("**/campaigns")
    assert browser_page.get_by_text(WEB_EMAIL).is_visible()
    shoot(browser_page, "campaigns-empty")


def test_sign_out_returns_to_the_sign_in_page(signed_in):
    signed_in.get_by_role("button", name="Sign out").click()
    signed_in.wait_for_url("**/login")
    assert signed_in.get_by_text("You are signed out.").is_visible()
    signed_in.goto("/campaigns")
    assert "/login" in signed_in.url


@pytest.mark.parametrize("width", [390])
def test_the_menu_opens_on_a_phone(signed_in, width):
    signed_in.set_viewport_size({"width": width, "height": 844})
    menu = signed_in.get_by_role("button", name="Menu")
    assert menu.is_visible()
    assert not signed_in.get_by_role("link", name="Accounts").is_visible()
    menu.click()
    assert signed_in.get_by_role("link", name="Accounts").is_visible()


def test_a_missing_page_is_the_styled_404(signed_in, shoot):
    response = signed_in.goto("/campaigns/424242")
    assert response.status == 404
    assert signed_in.get_by_role("heading", name="Page not found").is_visible()
    shoot(signed_in, "error-404")
