"""The new-campaign wizard's state between its steps: the uploaded file on disk
(WEB_UPLOAD_DIR) and the choices so far in Redis, both under a random token kept in the
user's session. The session cookie holds only the token (cookies stay small); a wizard
is forgotten a day after its last step, its file with it."""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app, session
from flask_login import current_user

SESSION_KEY = "campaign_wizard"
KEY = "sendfleet:web:wizard:{}"
TTL_SECONDS = 24 * 3600


@dataclass
class Wizard:
    token: str
    user_id: int
    client_id: int
    filename: str
    email_column: str | None = None
    report: dict[str, Any] | None = None  # the validation dry run's ImportReport.as_dict()
    fields: list[str] = field(default_factory=list)
    name: str = ""
    subject: str = ""
    body_text: str = ""
    body_html: str = ""
    from_name: str = ""
    senders: dict[str, Any] = field(default_factory=dict)  # account_tags / account_ids
    window: dict[str, Any] | None = None
    daily_cap: int | None = None

    @property
    def path(self) -> Path:
        return upload_dir() / f"{self.token}.csv"

    def save(self) -> None:
        redis = current_app.extensions["redis"]
        redis.set(KEY.format(self.token), json.dumps(asdict(self)), ex=TTL_SECONDS)
        session[SESSION_KEY] = self.token

    def discard(self) -> None:
        current_app.extensions["redis"].delete(KEY.format(self.token))
        self.path.unlink(missing_ok=True)
        self.path.with_suffix(".sample.csv").unlink(missing_ok=True)
        if session.get(SESSION_KEY) == self.token:
            session.pop(SESSION_KEY)


def upload_dir() -> Path:
    configured = current_app.extensions["settings"].web_upload_dir
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / "sendfleet-uploads"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def start(filename: str, client_id: int) -> Wizard:
    _forget_old_files()
    previous = current()
    if previous is not None:
        previous.discard()
    return Wizard(secrets.token_urlsafe(18), int(current_user.id), client_id, filename)


def current(client_id: int | None = None) -> Wizard | None:
    """The signed-in user's wizard in progress (for this client, when given)."""
    token = session.get(SESSION_KEY)
    if not token:
        return None
    raw = current_app.extensions["redis"].get(KEY.format(token))
    if raw is None:
        return None
    wizard = Wizard(**json.loads(raw))
    if wizard.user_id != int(current_user.id) or not wizard.path.exists():
        return None
    if client_id is not None and wizard.client_id != client_id:
        return None
    return wizard


def _forget_old_files() -> None:
    cutoff = time.time() - TTL_SECONDS
    for path in upload_dir().glob("*.csv"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass
