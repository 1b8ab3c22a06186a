"""Where ops/backup.sh keeps its dumps and how long: a local folder and an S3-compatible
bucket (boto3; AWS, MinIO, Backblaze B2, Wasabi ...), with one retention rule for both.

A backup's name carries its time, `sendfleet-YYYYMMDDTHHMMSSZ.dump`, so retention reads
the name rather than a modification time that a copy or a sync would change. Other files
in the folder or bucket prefix are never touched.

    python3 ops/backup_store.py upload FILE
    python3 ops/backup_store.py download NAME|latest DEST
    python3 ops/backup_store.py list [--local DIR]
    python3 ops/backup_store.py prune [--local DIR] [--keep-days N] [--keep-files N]

S3 settings (environment): BACKUP_S3_BUCKET, BACKUP_S3_PREFIX (`sendfleet/`),
BACKUP_S3_ENDPOINT_URL (empty for AWS), BACKUP_S3_REGION, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (or any other boto3 credential source). Retention: BACKUP_KEEP_DAYS
(14) and BACKUP_KEEP_FILES (0: no count limit); the newest backup is always kept.

Standalone on purpose (no app import): it runs where pg_dump runs, with boto3 alone."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

NAME = re.compile(r"^sendfleet-(\d{8}T\d{6}Z)\.dump$")
STAMP = "%Y%m%dT%H%M%SZ"


def backup_name(at: datetime) -> str:
    return f"sendfleet-{at.astimezone(UTC).strftime(STAMP)}.dump"


def taken_at(name: str) -> datetime | None:
    """The time in a backup's name; None for anything that is not one of ours."""
    match = NAME.match(name)
    return datetime.strptime(match.group(1), STAMP).replace(tzinfo=UTC) if match else None


def expired(names: Iterable[str], now: datetime, keep_days: int, keep_files: int) -> list[str]:
    """The backups that retention deletes: older than `keep_days` (0: no age limit) or past
    the newest `keep_files` (0: no count limit). The newest one always stays, so a machine
    whose backups stopped for weeks still has its last one."""
    ours = sorted(
        ((at, name) for name in names if (at := taken_at(name)) is not None), reverse=True
    )
    doomed = []
    for position, (at, name) in enumerate(ours):
        if position == 0:
            continue
        too_old = keep_days > 0 and at < now - timedelta(days=keep_days)
        too_many = keep_files > 0 and position >= keep_files
        if too_old or too_many:
            doomed.append(name)
    return doomed


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str
    endpoint_url: str | None
    region: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Target | None:
        bucket = env.get("BACKUP_S3_BUCKET", "").strip()
        if not bucket:
            return None
        prefix = env.get("BACKUP_S3_PREFIX", "sendfleet/").strip().lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=env.get("BACKUP_S3_ENDPOINT_URL", "").strip() or None,
            region=env.get("BACKUP_S3_REGION", "").strip() or None,
        )

    def client(self) -> Any:
        import boto3  # only where S3 is used: a local-only backup needs no boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)

    def names(self) -> list[str]:
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=self.prefix)
        )
        keys = (item["Key"] for page in pages for item in page.get("Contents", []))
        return [key[len(self.prefix) :] for key in keys if "/" not in key[len(self.prefix) :]]

    def upload(self, path: Path) -> str:
        key = self.prefix + path.name
        # upload_file goes multipart past 8 MB and retries parts; the object appears whole
        # or not at all.
        self.client().upload_file(str(path), self.bucket, key)
        return key

    def download(self, name: str, dest: Path) -> None:
        self.client().download_file(self.bucket, self.prefix + name, str(dest))

    def delete(self, names: list[str]) -> None:
        client = self.client()
        for start in range(0, len(names), 1000):  # DeleteObjects takes 1000 keys at most
            chunk = names[start : start + 1000]
            client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self.prefix + n} for n in chunk], "Quiet": True},
            )


def local_names(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def latest(names: Iterable[str]) -> str | None:
    ours = [(at, n) for n in names if (at := taken_at(n)) is not None]
    return max(ours)[1] if ours else None


def _require_s3(env: Mapping[str, str]) -> S3Target:
    target = S3Target.from_env(env)
    if target is None:
        raise SystemExit("backup_store: BACKUP_S3_BUCKET is not set")
    return target


def _int_setting(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise SystemExit(f"backup_store: {name} must be a whole number of 0 or more, not {raw!r}")
    return int(raw)


def main(argv: list[str], env: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(prog="backup_store.py")
    commands = parser.add_subparsers(dest="command", required=True)
    upload = commands.add_parser("upload", help="copy a backup file to the bucket")
    upload.add_argument("file", type=Path)
    download = commands.add_parser("download", help="fetch a backup (a name or `latest`)")
    download.add_argument("name")
    download.add_argument("dest", type=Path)
    listing = commands.add_parser("list", help="the backups, newest first")
    listing.add_argument("--local", type=Path, help="a folder instead of the bucket")
    prune = commands.add_parser("prune", help="delete what retention no longer keeps")
    prune.add_argument("--local", type=Path, help="a folder instead of the bucket")
    prune.add_argument("--keep-days", type=int)
    prune.add_argument("--keep-files", type=int)
    args = parser.parse_args(argv)

    if args.command == "upload":
        key = _require_s3(env).upload(args.file)
        print(f"backup_store: uploaded {args.file.name} to s3://{_require_s3(env).bucket}/{key}")
    elif args.command == "download":
        s3 = _require_s3(env)
        name = latest(s3.names()) if args.name == "latest" else args.name
        if name is None:
            raise SystemExit(f"backup_store: no backup in s3://{s3.bucket}/{s3.prefix}")
        s3.download(name, args.dest)
        print(name)
    elif args.command == "list":
        names = local_names(args.local) if args.local else _require_s3(env).names()
        for name in sorted((n for n in names if taken_at(n)), reverse=True):
            print(name)
    else:
        keep_days = args.keep_days
        if keep_days is None:
            keep_days = _int_setting(env, "BACKUP_KEEP_DAYS", 14)
        keep_files = args.keep_files
        if keep_files is None:
            keep_files = _int_setting(env, "BACKUP_KEEP_FILES", 0)
        now = datetime.now(UTC)
        if args.local:
            doomed = expired(local_names(args.local), now, keep_days, keep_files)
            for name in doomed:
                (args.local / name).unlink()
            where = str(args.local)
        else:
            s3 = _require_s3(env)
            doomed = expired(s3.names(), now, keep_days, keep_files)
            s3.delete(doomed)
            where = f"s3://{s3.bucket}/{s3.prefix}"
        print(
            f"backup_store: retention (keep {keep_days} days, {keep_files or 'any number of'} "
            f"files) deleted {len(doomed)} from {where}: {' '.join(doomed) or '-'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
