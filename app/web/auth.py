"""Sign-in and sign-out. Passwords are checked with werkzeug's hashes (users from
`flask --app app users create`); wrong ones are throttled (app/web/login_throttle.py)."""

from __future__ import annotations

import logging

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import func, select, update
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from app.db import unit_of_work
from app.models import User
from app.web import safe_next, web
from app.web.login_throttle import LoginThrottle

log = logging.getLogger(__name__)
# Checked when no such user exists, so a wrong email costs the same time as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password of anyone")
MAX_EMAIL = 320
MAX_PASSWORD = 1024


def _throttle() -> LoginThrottle:
    return LoginThrottle(current_app.extensions["redis"], current_app.extensions["settings"])


def _client_address() -> str:
    # Behind TRUSTED_PROXIES proxies, ProxyFix (create_app) has made this the client's.
    return request.remote_addr or "unknown"


@web.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    next_path = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_path or url_for("web.campaigns"))
    if request.method == "GET":
        return render_template("web/login.html", next_path=next_path, email="", error=None)

    email = request.form.get("email", "").strip().lower()[:MAX_EMAIL]
    password = request.form.get("password", "")[:MAX_PASSWORD]
    address = _client_address()
    throttle = _throttle()
    error = None
    if not email or not password:
        error = "Enter your email and password."
    elif lock := throttle.locked(email, address):
        error = lock.message()
    else:
        with unit_of_work() as db_session:
            user = db_session.execute(select(User).where(User.email == email)).scalar_one_or_none()
            good = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
            if user is not None and good:
                db_session.execute(
                    update(User).where(User.id == user.id).values(last_login_at=func.now())
                )
        if user is not None and good:
            throttle.succeeded(email)
            session.clear()  # a fresh session: nothing from before the sign-in carries over
            login_user(user)
            log.info("web.login", extra={"user_id": user.id})
            return redirect(next_path or url_for("web.campaigns"))
        lock = throttle.failed(email, address)
        log.warning("web.login_failed", extra={"locked_seconds": lock.seconds if lock else 0})
        error = "Wrong email or password." + (f" {lock.message()}" if lock else "")
    return render_template("web/login.html", next_path=next_path, email=email, error=error), 401


@web.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    # Signing out changes state, so it is a POST with its CSRF token (the navigation's
    # button); a bookmarked GET /logout asks first.
    if request.method == "GET":
        return render_template("web/logout.html")
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("web.login"))
