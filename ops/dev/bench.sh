#!/usr/bin/env bash
# `make bench`: every benchmark, each printing a ratio against a raw baseline of the same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v smtp-sink >/dev/null && [ ! -x /usr/sbin/smtp-sink ]; then
  echo "bench: installing postfix for smtp-sink" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
for bench in limiter limiter_rebuild message smtp_client import import_floor import_partition_route send dispatch metrics api_latency footprint; do
  echo "== bench/$bench.py"
  .venv/bin/python "bench/$bench.py"
done
# The import figures again on a server configured as the deployment ships it.
for bench in import import_floor; do
  echo "== bench/$bench.py on ops/postgres/primary.conf"
  .venv/bin/python bench/shipped_postgres.py "bench/$bench.py"
done
