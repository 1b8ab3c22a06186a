"""`COMPOSE_CMD` of the ops tests: no Docker engine runs here, so `up -d --force-recreate
--no-deps api` starts the api natively, the way its container does (`ops/entrypoint.sh
api`: gunicorn 'app:create_app()'; the environment read from the node's env file), after
stopping the one it started before. Usage:

    native_compose.py --env-file F --state-dir D up -d [--force-recreate] [--no-deps] api

The api listens on 127.0.0.1:$API_PORT (from the env file). Each process is stopped by the
pid recorded in the state dir, never by name."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"api"}


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.removeprefix("export ").split("=", 1)
        values[name.strip()] = value.strip().strip("'\"")
    return values


def stop(pidfile: Path) -> None:
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    pidfile.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


def start_api(env_file: Path, state_dir: Path) -> None:
    values = read_env_file(env_file)
    stop(state_dir / "api.pid")
    log = open(state_dir / "api.log", "ab")  # noqa: SIM115 - the server's, kept open by it
    bind = f"127.0.0.1:{values['API_PORT']}"
    entrypoint = ROOT / "ops" / "entrypoint.sh"
    # The container's own command line where it exists; gunicorn as DESIGN names it else.
    command = (
        ["bash", str(entrypoint), "api"]
        if entrypoint.exists()
        else [sys.executable, "-m", "gunicorn", "--bind", bind, "app:create_app()"]
    )
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **values, "API_BIND": bind, "API_WORKERS": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    (state_dir / "api.pid").write_text(str(process.pid))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("-d", action="store_true")
    parser.add_argument("--force-recreate", action="store_true")
    parser.add_argument("--no-deps", action="store_true")
    parser.add_argument("services", nargs="*")
    args = parser.parse_intermixed_args(argv)
    unknown = set(args.services) - SERVICES
    if unknown:
        print(f"native_compose: no native stand-in for {sorted(unknown)}", file=sys.stderr)
        return 2
    for service in args.services or sorted(SERVICES):
        if args.command == "down":
            stop(args.state_dir / f"{service}.pid")
        else:
            start_api(args.env_file, args.state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
