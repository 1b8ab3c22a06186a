"""The COMPOSE_CMD of the three-node deploy test: the subset of `docker compose` that
ops/deploy.sh uses, running each service as a native process on this host.

The compose files are read by the real docker-compose (`config` resolves interpolation,
env files, profiles' services); an "image" `repo:TAG` of Sendfleet is the folder
RELEASES/TAG (built from the Dockerfile's COPY lines by the test), and its processes are
started through that release's ops/entrypoint.sh with the service's command and
environment, as the container would. postgres and redis images become a native
PostgreSQL cluster and redis-server on the addresses the service publishes, their named
volumes folders under STATE. Other images (monitoring) are not supported.

    native_compose.py --state DIR --releases DIR [-p P] [--env-file F] -f FILE... COMMAND
    COMMAND: config | pull | up -d [--remove-orphans] | stop [SERVICE...] | down
             | exec -T SERVICE CMD... | ps | logs [--tail N] SERVICE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

Service = dict[str, Any]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="native_compose")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--releases", type=Path, required=True)
    parser.add_argument("-p", "--project-name", default="sendfleet")
    parser.add_argument("--env-file", default=".env")
    parser.add_argument("-f", "--file", action="append", default=[])
    parser.add_argument("command")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    runtime = Runtime(opts.state, opts.releases, opts.project_name, opts.env_file, opts.file)
    handler = getattr(runtime, "cmd_" + opts.command, None)
    if handler is None:
        print(f"native_compose: unsupported command {opts.command}", file=sys.stderr)
        return 64
    return int(handler(opts.args) or 0)


def _image_locale() -> dict[str, str]:
    """The postgres image's own locale (its Dockerfile: LANG en_US.utf8), which initdb
    takes for a new cluster unless POSTGRES_INITDB_ARGS say otherwise; where this host
    lacks it (`locale -a`), the host's own."""
    found = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    if "en_US.utf8" in found.stdout.split():
        return {"LANG": "en_US.utf8", "LC_ALL": ""}
    return {}


def grace_seconds(value: str | None) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value or "10s")
    assert match, value
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


class Runtime:
    def __init__(self, state: Path, releases: Path, project: str, env_file: str, files: list[str]):
        self.state = state
        self.releases = releases
        self.config = self._config(state, project, env_file, files)
        profiles = set(
            filter(None, self._env_file(env_file).get("COMPOSE_PROFILES", "").split(","))
        )
        self.services: dict[str, Service] = {
            name: spec
            for name, spec in self.config["services"].items()
            if not spec.get("profiles") or profiles & set(spec["profiles"])
        }
        (state / "logs").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _config(state: Path, project: str, env_file: str, files: list[str]) -> dict[str, Any]:
        # Kept per input: every health check of a deploy reads the same files.
        key = hashlib.sha256(f"{os.getcwd()}\0{project}".encode())
        for path in [env_file, *files]:
            key.update(Path(path).read_bytes())
        cached = state / "config-cache" / f"{key.hexdigest()[:24]}.json"
        if cached.exists():
            return json.loads(cached.read_text())  # type: ignore[no-any-return]
        args = ["docker-compose", "-p", project, "--env-file", env_file]
        for file in files:
            args += ["-f", file]
        out = subprocess.run([*args, "config"], check=True, capture_output=True, text=True)
        config: dict[str, Any] = yaml.safe_load(out.stdout)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(config))
        return config

    @staticmethod
    def _env_file(path: str) -> dict[str, str]:
        values = {}
        for line in Path(path).read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.lstrip().startswith("#"):
                values[name.strip()] = value
        return values

    # --- state of one service: STATE/<name>.json -----------------------------------------

    def _record(self, name: str) -> dict[str, Any] | None:
        path = self.state / f"{name}.json"
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        try:
            os.kill(record["pid"], 0)
        except ProcessLookupError:
            return None
        return record

    def _event(self, text: str) -> None:
        with (self.state / "events.log").open("a") as out:
            out.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    @staticmethod
    def _digest(spec: Service) -> str:
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _kind(self, spec: Service) -> str:
        image = spec["image"]
        if image.startswith("postgres:"):
            return "postgres"
        if image.startswith("redis:"):
            return "redis"
        if "sendfleet" in image.rsplit(":", 1)[0]:
            return "app"
        raise SystemExit(f"native_compose: image {image} has no native stand-in")

    def _release(self, spec: Service) -> Path:
        return self.releases / spec["image"].rsplit(":", 1)[1]

    def _published(self, spec: Service) -> tuple[str, int]:
        # "10.0.0.1:5432:5432/tcp" or a long-form port: the host address and port.
        port = spec["ports"][0]
        if isinstance(port, dict):
            return port.get("host_ip", "0.0.0.0"), int(port["published"])
        host, published = str(port).split("/")[0].split(":")[:2]
        return host, int(published)

    def _order(self) -> list[str]:
        done: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            for dep in self.services[name].get("depends_on", {}):
                visit(dep)
            done.append(name)

        for name in self.services:
            visit(name)
        return done

    # --- commands ---------------------------------------------------------------------------

    def cmd_config(self, args: list[str]) -> int:
        print(yaml.safe_dump(self.config))
        return 0

    def cmd_pull(self, args: list[str]) -> int:
        for name, spec in self.services.items():
            if self._kind(spec) == "app" and not (self._release(spec) / "ops").is_dir():
                print(f"{name}: manifest for {spec['image']} not found", file=sys.stderr)
                return 1
        return 0

    def cmd_up(self, args: list[str]) -> int:
        if "--remove-orphans" in args:
            for path in self.state.glob("*.json"):
                if path.stem not in self.services and self._record(path.stem):
                    self._stop(path.stem, 10)
        for name in self._order():
            spec = self.services[name]
            for dep, condition in spec.get("depends_on", {}).items():
                if condition.get("condition") == "service_healthy" and not self._wait(dep):
                    print(f"dependency {dep} is not healthy", file=sys.stderr)
                    return 1
            record = self._record(name)
            if record and record["digest"] == self._digest(spec):
                continue
            if record:
                self._stop(name, grace_seconds(spec.get("stop_grace_period")))
            if spec.get("restart") == "no":
                code = self._start(name, spec, wait=True)
                if code != 0:
                    print(
                        f"service {name} didn't complete successfully: exit {code}", file=sys.stderr
                    )
                    return 1
            else:
                self._start(name, spec, wait=False)
        return 0

    def cmd_stop(self, args: list[str]) -> int:
        for name in args or list(self.services):
            if self._record(name):
                self._stop(name, grace_seconds(self.services[name].get("stop_grace_period")))
        return 0

    def cmd_down(self, args: list[str]) -> int:
        for path in self.state.glob("*.json"):
            if self._record(path.stem):
                self._stop(path.stem, 30)
        return 0

    def cmd_exec(self, args: list[str]) -> int:
        args = [a for a in args if a != "-T"]
        name, command = args[0], args[1:]
        record = self._record(name)
        if record is None:
            print(f"service {name} is not running", file=sys.stderr)
            return 1
        spec = self.services[name]
        return subprocess.run(command, cwd=self._release(spec), env=self._app_env(spec)).returncode

    def cmd_ps(self, args: list[str]) -> int:
        for name in self.services:
            record = self._record(name)
            print(f"{name}\t{'running ' + str(record['pid']) if record else 'exited'}")
        return 0

    def cmd_logs(self, args: list[str]) -> int:
        lines = int(args[args.index("--tail") + 1]) if "--tail" in args else 50
        path = self.state / "logs" / f"{args[-1]}.log"
        if path.exists():
            print("".join(path.read_text().splitlines(keepends=True)[-lines:]), end="")
        return 0

    # --- processes ------------------------------------------------------------------------

    def _app_env(self, spec: Service) -> dict[str, str]:
        env = {k: str(v) for k, v in (spec.get("environment") or {}).items() if v is not None}
        env.update(
            PATH=os.environ["PATH"],
            HOME=os.environ.get("HOME", "/tmp"),
            PYTHONPATH=str(self._release(spec)),
        )
        return env

    def _start(self, name: str, spec: Service, wait: bool) -> int:
        kind = self._kind(spec)
        if kind == "postgres":
            argv, env = self._postgres(spec)
        elif kind == "redis":
            argv, env = self._redis(spec)
        else:
            argv = [str(self._release(spec) / "ops/entrypoint.sh"), *spec.get("command", [])]
            env = self._app_env(spec)
        log = (self.state / "logs" / f"{name}.log").open("a")
        process = subprocess.Popen(
            argv,
            cwd=self._release(spec) if kind == "app" else self.state,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        record = {"pid": process.pid, "digest": self._digest(spec), "image": spec["image"]}
        (self.state / f"{name}.json").write_text(json.dumps(record))
        self._event(f"started {name} pid {process.pid} image {spec['image']}")
        if not wait:
            return 0
        code = process.wait()
        self._event(f"{name} exited with {code}")
        return code

    def _stop(self, name: str, grace: float) -> None:
        record = self._record(name)
        if record is None:
            return
        pid = record["pid"]
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._record(name):
            time.sleep(0.2)
        if self._record(name):
            os.killpg(pid, signal.SIGKILL)
            self._event(f"{name} pid {pid} killed after {grace:g}s (SIGKILL)")
        else:
            self._event(f"{name} pid {pid} stopped by SIGTERM within {grace:g}s")
        while self._record(name):
            time.sleep(0.1)

    def _volume(self, spec: Service) -> Path:
        named = [str(v).split(":")[0] for v in spec.get("volumes", []) if isinstance(v, str)]
        named += [v["source"] for v in spec.get("volumes", []) if isinstance(v, dict)]
        path = self.state / "volumes" / named[0].split("/")[-1]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _postgres(self, spec: Service) -> tuple[list[str], dict[str, str]]:
        # The official image's first start: initdb with a password, the database, then the
        # /docker-entrypoint-initdb.d scripts the service mounts.
        env = {k: str(v) for k, v in spec["environment"].items()}
        env.update(PATH=os.environ["PATH"], HOME=os.environ.get("HOME", "/tmp"))
        data = self._volume(spec) / "pgdata"
        host, port = self._published(spec)
        socket_dir = self.state / "pgsocket"
        socket_dir.mkdir(exist_ok=True)
        settings = ["-c", f"listen_addresses={host}", "-p", str(port), "-k", str(socket_dir)]
        if not (data / "PG_VERSION").exists():
            pwfile = self.state / "pgpass.tmp"
            pwfile.write_text(env["POSTGRES_PASSWORD"])
            subprocess.run(
                [
                    "initdb",
                    "-D",
                    str(data),
                    "-U",
                    env["POSTGRES_USER"],
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    # The entrypoint appends these, word-split by the shell.
                    *shlex.split(env.get("POSTGRES_INITDB_ARGS", "")),
                ],
                check=True,
                capture_output=True,
                env={**env, **_image_locale()},
            )
            pwfile.unlink()
            with (data / "pg_hba.conf").open("a") as hba:  # as the image: any host, password
                hba.write("host all all all scram-sha-256\n")
            # pg_ctl's postmaster keeps its stdout: a captured pipe would never close.
            subprocess.run(
                [
                    "pg_ctl",
                    "-D",
                    str(data),
                    "-w",
                    "-l",
                    str(self.state / "logs" / "initdb.log"),
                    "-o",
                    " ".join(settings),
                    "start",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            local = {**env, "PGHOST": str(socket_dir), "PGPORT": str(port)}
            subprocess.run(
                ["createdb", "-U", env["POSTGRES_USER"], env["POSTGRES_DB"]], check=True, env=local
            )
            for volume in spec.get("volumes", []):
                source, _, target = str(
                    volume.get("source", "") if isinstance(volume, dict) else volume
                ).partition(":")
                target = volume.get("target", "") if isinstance(volume, dict) else target
                if target.startswith("/docker-entrypoint-initdb.d/"):
                    subprocess.run(["bash", source], check=True, env=local)
            subprocess.run(
                ["pg_ctl", "-D", str(data), "-w", "stop"], check=True, capture_output=True
            )
        return ["postgres", "-D", str(data), *settings], env

    def _redis(self, spec: Service) -> tuple[list[str], dict[str, str]]:
        # The service's own command line, on the published address, its data in the volume.
        env = {k: str(v) for k, v in spec["environment"].items()}
        env["PATH"] = os.environ["PATH"]
        host, port = self._published(spec)
        command = list(spec["command"])
        script = command[-1].replace("$$", "$")
        command[-1] = f"{script} --bind {host} --port {port} --dir {self._volume(spec)}"
        return command, env

    def _wait(self, name: str, timeout: float = 60) -> bool:
        spec = self.services[name]
        host, port = self._published(spec)
        env = {**os.environ, **{k: str(v) for k, v in spec.get("environment", {}).items()}}
        probe = (
            ["pg_isready", "-q", "-h", host, "-p", str(port)]
            if self._kind(spec) == "postgres"
            else ["redis-cli", "-h", host, "-p", str(port), "ping"]
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = subprocess.run(probe, env=env, capture_output=True, text=True)
            if (
                done.returncode == 0
                and "NOAUTH" not in done.stdout
                and "LOADING" not in done.stdout
            ):
                return True
            time.sleep(0.5)
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
