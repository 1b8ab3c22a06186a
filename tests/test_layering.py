"""Imports point one way (DESIGN "Layout"): worker -> app, rotator; app -> rotator.
rotator/'s own rule lives in tests/rotator/test_layering.py."""

from __future__ import annotations

from pathlib import Path

from tests.rotator.test_layering import imported_roots

ROOT = Path(__file__).resolve().parents[1]


def _offenders(package: str, forbidden: set[str]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}: {sorted(imported_roots(path.read_text()) & forbidden)}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported_roots(path.read_text()) & forbidden
    ]


def test_app_never_imports_the_worker():
    assert _offenders("app", {"worker", "celery"}) == []


def test_worker_tasks_are_thin_shims():
    source = (ROOT / "worker" / "tasks.py").read_text()
    bodies = source.split("@shared_task")[1:]
    assert bodies, "no tasks found"
    for body in bodies:
        assert len([line for line in body.splitlines() if line.strip()]) <= 12, body[:80]
