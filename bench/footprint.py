"""Idle memory of Sendfleet's processes, counted as PSS, against raw baselines of the same run.

Started natively with the commands of ops/entrypoint.sh (the one holder of each process's
command line), against a throwaway database and the bench's Redis, left idle (beat ticking,
the control worker running empty dispatcher passes, each API worker having answered
/api/v1/health), then measured from /proc over every process of each tree:

- PSS (psutil memory_full_info().pss, i.e. /proc/<pid>/smaps_rollup): a page shared by N
  processes counts 1/N in each, so the pages that forked children share with their parent
  (gunicorn --preload, Celery prefork) count once in a sum;
- RSS beside it (every shared page counted in every process);
- "own": the physical pages the set maps, each once (/proc/<pid>/pagemap, as root): PSS also
  splits pages the set shares with unrelated processes of this machine (the interpreter, the
  virtualenv's libraries mapped by other Python processes), so it reads a little low on a
  busy machine; "own" is what the set would take on a host of its own.

Sets:
- stack: what `make run` and Compose start: api (gunicorn, 2 workers), send worker
  (concurrency 2), control worker (concurrency 1), beat;
- issue 15: api + one worker (concurrency 2) + beat (the send worker stands for it).
Target (issue 15 section 6): the issue's set under 400 MB PSS.

Baselines, started in the same run: a bare `python -c "import time; time.sleep(...)"`, and a
bare Celery worker (no app, no tasks, prefork, concurrency 2) on the same Redis; each
Sendfleet process is shown as a multiple of the bare interpreter, each worker tree beside
the bare worker.

Usage: .venv/bin/python bench/footprint.py [--settle 20]
Needs PostgreSQL on 127.0.0.1 (user postgres, trust) and Redis at SENDFLEET_BENCH_REDIS
(default redis://127.0.0.1:6379/10; that DB and the next one are flushed).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PG_ADMIN, admin, free_port  # noqa: E402

REDIS_URL = os.environ.get("SENDFLEET_BENCH_REDIS", "redis://127.0.0.1:6379/10")
TARGET_MB = 400
MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
STACK = ("api", "worker", "control", "beat")
ISSUE_SET = ("api", "worker", "beat")






def broker_url() -> str:
    base, number = REDIS_URL.rsplit("/", 1)
    return f"{base}/{int(number) + 1}"


def stack_env(database_url: str, workdir: Path, api_port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "SENDFLEET_ENV": "production",  # https PUBLIC_BASE_URL below
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": broker_url(),
        "SECRET_KEY": uuid.uuid4().hex,
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "COMPANY_ADDRESS": "Bench Ltd, 1 Bench Street, Berlin",
        "PUBLIC_BASE_URL": "https://sendfleet.test",
        "LOG_LEVEL": "WARNING",
        "API_BIND": f"127.0.0.1:{api_port}",
        "API_WORKERS": "2",
        "BEAT_SCHEDULE_FILE": str(workdir / "beat-schedule"),
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
    }
    for name in ("SENTRY_DSN", "SENDFLEET_TEST_PG", "FIRST_LOGIN_FILE"):
        env.pop(name, None)
    return env


@dataclass
class Started:
    role: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start(role: str, argv: list[str], env: dict[str, str], workdir: Path) -> Started:
    log = workdir / f"{role}.log"
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Started(role, process, log)


def wait_for(what: str, check: Callable[[], object], started: Started, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        if started.process.poll() is not None:
            break
        time.sleep(0.25)
    sys.exit(f"footprint: {what} did not come up:\n{started.text()[-3000:]}")


def api_health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def answering(nodes: set[str]) -> set[str]:
    from celery import Celery

    replies = Celery(broker=broker_url(), set_as_current=False).control.ping(timeout=1)
    return {name for reply in replies for name in reply} & nodes


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Sample:
    pid: int
    name: str
    pss: int
    rss: int
    uss: int


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def label(process: psutil.Process) -> str:
    cmd = process.cmdline()
    text = " ".join(Path(cmd[0]).name if i == 0 else part for i, part in enumerate(cmd))
    return text if len(text) <= 60 else text[:57] + "..."


def sample(pid: int) -> list[Sample]:
    found = []
    for process in tree(pid):
        info = process.memory_full_info()
        found.append(Sample(process.pid, label(process), info.pss, info.rss, info.uss))
    return found


def frames(pid: int) -> set[int]:
    """Physical frame numbers of the pages `pid` has resident (needs root for the PFNs)."""
    present: set[int] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            span = line.split()[0]
            if line.rstrip().endswith("[vsyscall]"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            pagemap.seek(start // PAGE * 8)
            raw = pagemap.read((end - start) // PAGE * 8)
            for (entry,) in struct.iter_unpack("<Q", raw):
                if entry >> 63 & 1 and entry & ((1 << 55) - 1):
                    present.add(entry & ((1 << 55) - 1))
    return present


def own_mb(pids: list[int]) -> float | None:
    pages: set[int] = set()
    try:
        for pid in pids:
            for process in tree(pid):
                pages |= frames(process.pid)
    except PermissionError:
        return None
    if not pages:  # not root: the kernel hides the frame numbers
        return None
    return len(pages) * PAGE / MB


def settled(pids: dict[str, int], settle: float) -> dict[str, list[Sample]]:
    """Samples once the sum stopped moving (within 1 MB over 3 s), after `settle` seconds."""
    time.sleep(settle)
    last = {role: sample(pid) for role, pid in pids.items()}
    for _ in range(10):
        time.sleep(3)
        now = {role: sample(pid) for role, pid in pids.items()}
        moved = abs(total(now, "pss") - total(last, "pss"))
        last = now
        if moved < MB:
            break
    return last


def total(samples: dict[str, list[Sample]], field: str, roles: tuple[str, ...] = ()) -> int:
    return sum(
        getattr(s, field) for role, group in samples.items() if not roles or role in roles
        for s in group
    )  # fmt: skip


# --- the run --------------------------------------------------------------------------------


def run_baselines(workdir: Path) -> dict[str, list[Sample]]:
    env = {**os.environ}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    bare = start("bare-python", [sys.executable, "-c", "import time; time.sleep(600)"], env,
                 workdir)  # fmt: skip
    celery = start(
        "bare-celery",
        [
            *(sys.executable, "-m", "celery", "-b", broker_url(), "worker"),
            *("--pool", "prefork", "--concurrency", "2", "-Q", "footprint.bare"),
            *("-n", f"bare-{os.getpid()}@%h", "--loglevel", "WARNING"),
        ],
        env,
        workdir,
    )
    try:
        wait_for("bare celery", lambda: len(tree(celery.process.pid)) >= 3, celery)
        return settled({"bare-python": bare.process.pid, "bare-celery": celery.process.pid}, 5)
    finally:
        stop([bare, celery])


def run_stack(workdir: Path, settle: float) -> tuple[dict[str, list[Sample]], dict[str, float]]:
    db_name = f"sendfleet_bench_footprint_{os.getpid()}"
    database_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{db_name}"
    admin(f'CREATE DATABASE "{db_name}"')
    (workdir / "prometheus").mkdir()
    api_port = free_port()
    env = stack_env(database_url, workdir, api_port)
    for url in (REDIS_URL, broker_url()):
        redis.Redis.from_url(url).flushdb()
    running: list[Started] = []
    try:
        subprocess.run(["bash", "ops/entrypoint.sh", "migrate"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        entry = ["bash", "ops/entrypoint.sh"]
        api = start("api", [*entry, "api"], env, workdir)
        worker = start("worker", [*entry, "worker", "--concurrency", "2"], env, workdir)
        control = start("control", [*entry, "control"], env, workdir)
        beat = start("beat", [*entry, "beat"], env, workdir)
        running += [api, worker, control, beat]
        wait_for("api", lambda: api_health(api_port), api)
        for _ in range(20):  # new connections: both workers answer one at least
            api_health(api_port)
        nodes = {f"send@{socket.gethostname()}", f"control@{socket.gethostname()}"}
        wait_for("the workers", lambda: answering(nodes) == nodes, worker)
        broker = redis.Redis.from_url(broker_url())
        wait_for("beat", lambda: broker.exists("sf:beat::lock"), beat)
        pids = {s.role: s.process.pid for s in running}
        samples = settled(pids, settle)
        own = {
            "stack": own_mb([pids[r] for r in STACK]),
            "issue": own_mb([pids[r] for r in ISSUE_SET]),
        }
        for started in running:
            if started.process.poll() is not None:
                sys.exit(f"footprint: {started.role} exited:\n{started.text()[-3000:]}")
        return samples, {k: v for k, v in own.items() if v is not None}
    finally:
        stop(running)
        admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{db_name}' AND pid <> pg_backend_pid()"
        )
        admin(f'DROP DATABASE IF EXISTS "{db_name}"')


def stop(running: list[Started]) -> None:
    for started in running:
        if started.process.poll() is None:
            os.killpg(started.process.pid, signal.SIGTERM)
    for started in running:
        try:
            started.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(started.process.pid, signal.SIGKILL)
            started.process.wait(5)


def report(
    samples: dict[str, list[Sample]], baselines: dict[str, list[Sample]], own: dict[str, float]
) -> bool:
    bare = baselines["bare-python"][0].pss
    bare_celery = sum(s.pss for s in baselines["bare-celery"])
    print(f"{'process':<64} {'PSS MB':>8} {'RSS MB':>8} {'USS MB':>8} {'x bare':>7}")
    for role, group in [*baselines.items(), *samples.items()]:
        print(f"[{role}]")
        for s in group:
            print(f"  {s.name:<62} {s.pss / MB:8.1f} {s.rss / MB:8.1f} {s.uss / MB:8.1f} "
                  f"{s.pss / bare:7.1f}")  # fmt: skip
        pss, rss = sum(s.pss for s in group), sum(s.rss for s in group)
        print(f"  {'tree':<62} {pss / MB:8.1f} {rss / MB:8.1f}")
    print(f"bare interpreter {bare / MB:.1f} MB PSS; bare Celery worker (c=2, 3 processes) "
          f"{bare_celery / MB:.1f} MB PSS")  # fmt: skip
    for role in ("worker", "control"):
        tree_pss = sum(s.pss for s in samples[role])
        print(f"{role} tree: {tree_pss / MB:.1f} MB PSS = {tree_pss / bare_celery:.2f} x the "
              "bare Celery worker")  # fmt: skip
    ok = True
    for name, roles in (("stack (make run, Compose)", STACK), ("issue 15 set", ISSUE_SET)):
        pss, rss = total(samples, "pss", roles), total(samples, "rss", roles)
        processes = sum(len(samples[r]) for r in roles)
        key = "stack" if roles == STACK else "issue"
        own_text = f", own pages {own[key]:.1f} MB" if key in own else ""
        print(f"{name}: {' + '.join(roles)}, {processes} processes: {pss / MB:.1f} MB PSS, "
              f"{rss / MB:.1f} MB RSS{own_text}; {pss / (processes * bare):.1f} x "
              f"{processes} bare interpreters")  # fmt: skip
        if roles == ISSUE_SET:
            ok = pss < TARGET_MB * MB
            print(f"target: issue 15 set under {TARGET_MB} MB PSS: {'met' if ok else 'MISSED'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds idle before measuring")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sendfleet-footprint-") as tmp:
        workdir = Path(tmp)
        baselines = run_baselines(workdir)
        samples, own = run_stack(workdir, args.settle)
        if not report(samples, baselines, own):
            sys.exit(1)


if __name__ == "__main__":
    main()
