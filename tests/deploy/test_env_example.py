""".env.example lists every setting app/settings.py reads, each under a comment, and names
nothing else but the deployment variables the compose files and ops/entrypoint.sh read."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=")


def example_names() -> dict[str, int]:
    names = {}
    for number, line in enumerate((ROOT / ".env.example").read_text().splitlines()):
        match = LINE.match(line)
        if match:
            names.setdefault(match.group(1), number)
    return names


def test_every_setting_is_in_env_example() -> None:
    missing = {name.upper() for name in Settings.model_fields} - set(example_names())
    assert not missing, f"add to .env.example, with a comment: {sorted(missing)}"


def test_every_name_in_env_example_is_read_somewhere() -> None:
    readers = "".join(
        path.read_text()
        for path in [
            ROOT / "docker-compose.yml",
            ROOT / "ops" / "entrypoint.sh",
            *(ROOT / "compose").glob("*.yml"),
        ]
    )
    settings = {name.upper() for name in Settings.model_fields}
    # Read by Compose itself (profiles of the monitoring services on node 1).
    compose_own = {"COMPOSE_PROFILES"}
    unknown = {
        name
        for name in example_names()
        if name not in settings
        and name not in compose_own
        and not re.search(rf"\b{name}\b", readers)
    }
    assert not unknown, f"names nothing reads: {sorted(unknown)}"


def test_each_entry_has_a_comment_above_it() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for name, number in example_names().items():
        above = lines[number - 1] if number else ""
        assert above.startswith("#"), f"{name}: no comment above it"


def test_secrets_are_left_empty() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "SECRET_KEY", "CREDENTIALS_KEY",
                 "GRAFANA_ADMIN_PASSWORD"):  # fmt: skip
        assert f"{name}=" in lines, name
