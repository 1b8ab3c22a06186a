"""Browser tests of the web UI: the real app served on a free port (werkzeug in a thread),
a real Celery worker and beat (tests/e2e/conftest.py's Stack) for the tests that send, and
Debian's Chromium driven by playwright.

Fixtures for page tests:
    live_server   the base URL of the running app ("http://127.0.0.1:PORT")
    web_user      a UI user (member of the default client); password WEB_PASSWORD
    signed_in     a playwright Page already signed in as web_user, 1280 px wide
    browser_page  a fresh Page, not signed in
    shoot(page, name)  full-page screenshots at 1280 and 390 px into var/screenshots/
    web_stack     worker + beat, started once per module (only the tests that send)
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from tests.e2e.conftest import Stack, make_stack

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("SENDFLEET_SCREENSHOTS", ROOT / "var" / "screenshots"))
CHROMIUM = os.environ.get("SENDFLEET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
WIDE, NARROW = (1280, 900), (390, 844)
WEB_EMAIL = "operator@example.com"
WEB_PASSWORD = "a long enough password"


@pytest.fixture(autouse=True)
def _uploads_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's wizard uploads go to its own folder (the live server shares it)."""
    from app.web import wizard_state

    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setattr(wizard_state, "upload_dir", lambda: folder)


@pytest.fixture(scope="session")
def live_server(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: `make debs` installs Debian's chromium")
    if not (ROOT / "app/web/static/vendor/htmx.min.js").exists():
        pytest.skip("the web UI's vendor files are missing: run `make vendor`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def browser_page(browser: Any, live_server: str) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live_server, viewport={"width": WIDE[0], "height": WIDE[1]}, accept_downloads=True
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Console errors include Content-Security-Policy refusals and failed loads; an HTTP
    # error status the test asked for (a 404 page, a refused form) is not one of them.
    page.on(
        "console",
        lambda msg: (
            msg.type == "error" and "status of 4" not in msg.text and errors.append(msg.text)
        ),
    )
    yield page
    context.close()
    assert not errors, f"errors in the browser console: {errors}"


@pytest.fixture
def web_user(app: Any) -> Any:
    from app.db import unit_of_work
    from app.models import User
    from app.services.clients import add_member

    with app.app_context(), unit_of_work() as session:
        user = User(email=WEB_EMAIL, password_hash=generate_password_hash(WEB_PASSWORD))
        session.add(user)
        add_member(session, user, None)
    return user


def sign_in(page: Any, email: str = WEB_EMAIL, password: str = WEB_PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(browser_page: Any, web_user: Any) -> Any:
    sign_in(browser_page)
    browser_page.wait_for_url("**/campaigns")
    return browser_page


@pytest.fixture(scope="session")
def shoot() -> Callable[[Any, str], list[Path]]:
    """Full-page screenshots of the page as it is now, at both widths (the page is reloaded
    at each width so the layout is the one a phone would get, then left at 1280 px)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> list[Path]:
        paths = []
        for width, height in (WIDE, NARROW):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(150)
            path = SCREENSHOTS / f"{name}-{width}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
        page.set_viewport_size({"width": WIDE[0], "height": WIDE[1]})
        return paths

    return take


@pytest.fixture(scope="module")
def web_stack(settings_env: dict[str, str], app: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    running = make_stack(settings_env, tmp_path_factory.mktemp("web-stack"))
    running.start_worker()
    running.start_beat()
    yield running
    running.stop()
