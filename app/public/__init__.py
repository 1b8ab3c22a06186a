"""Public endpoints that need no login: unsubscribe (/u/<token>), later tracking and webhooks."""

from __future__ import annotations

from flask import Blueprint

public = Blueprint("public", __name__, template_folder="templates")


from app.public import unsubscribe  # noqa: E402,F401  (registers the routes)
