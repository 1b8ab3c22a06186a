"""UI users for Flask-Login (the web UI's screens build on this)."""

from __future__ import annotations

from app.extensions import db, login
from app.models import User


@login.user_loader
def load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    return db.session.get(User, int(user_id))
