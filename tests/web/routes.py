"""Which UI paths exist yet (pages still being built are skipped, not failed)."""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import NotFound


def is_built(app: Any, path: str) -> bool:
    try:
        app.url_map.bind("localhost").match(path)
    except NotFound:
        return False
    return True
