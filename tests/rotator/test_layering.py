"""rotator/ is a library: no framework, no app or worker imports (STYLE R1)."""

from __future__ import annotations

import ast
from pathlib import Path

ROTATOR = Path(__file__).resolve().parents[2] / "rotator"
FORBIDDEN = {"flask", "celery", "sqlalchemy", "app", "worker"}


def imported_roots(source: str) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_imported_roots_sees_every_form_of_import() -> None:
    source = (
        "import flask\nimport celery.app as c\nfrom sqlalchemy.orm import Session\n"
        "from . import sibling\nimport importlib\nimportlib.import_module('worker.tasks')\n"
        "def f():\n    from app.models import Account\n"
    )
    assert imported_roots(source) == {"flask", "celery", "sqlalchemy", "importlib", "worker", "app"}


def test_rotator_imports_no_framework_app_or_worker() -> None:
    files = sorted(ROTATOR.rglob("*.py"))
    assert len(files) >= 10, "rotator/ not found where expected"
    offenders = {
        str(path.relative_to(ROTATOR.parent)): sorted(bad)
        for path in files
        if (bad := imported_roots(path.read_text(encoding="utf-8")) & FORBIDDEN)
    }
    assert offenders == {}
