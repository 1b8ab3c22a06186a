#!/usr/bin/env bash
# Node 2's PostgreSQL entrypoint: on the first start (an empty PGDATA) it clones node 1 with
# pg_basebackup -R, which leaves standby.signal and primary_conninfo behind, so the server
# then starts as an asynchronous streaming replica; on every later start (still a replica,
# or promoted by ops/failover.sh) it changes nothing. Then it runs the server command given
# as arguments (compose/replica.yml: postgres -c config_file=...).
#
# Environment: PGDATA, PRIMARY_ADDR, REPLICATION_USER, REPLICATION_PASSWORD (required);
# PRIMARY_PORT (5432), REPLICATION_SLOT (node2; empty: no slot, then node 1 keeps only
# wal_keep_size of WAL for it), PRIMARY_WAIT_SECONDS (300).
set -euo pipefail
: "${PGDATA:?PGDATA is required}"
: "${PRIMARY_ADDR:?PRIMARY_ADDR (node 1 private address) is required}"
: "${REPLICATION_USER:?REPLICATION_USER is required}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD is required}"
primary_port="${PRIMARY_PORT:-5432}"
slot="${REPLICATION_SLOT-node2}"
wait_seconds="${PRIMARY_WAIT_SECONDS:-300}"

say() { echo "replica-init: $*" >&2; }

if [[ -s "${PGDATA}/PG_VERSION" ]]; then
  say "${PGDATA} already holds a cluster; starting it as it is"
  exec "$@"
fi

say "waiting for the primary at ${PRIMARY_ADDR}:${primary_port}"
deadline=$((SECONDS + wait_seconds))
until pg_isready -q -h "${PRIMARY_ADDR}" -p "${primary_port}" -t 5; do
  if ((SECONDS >= deadline)); then
    say "the primary did not answer within ${wait_seconds}s"
    exit 1
  fi
  sleep 2
done

# Cloned next to PGDATA and moved into place when complete: a clone cut short leaves no
# half a cluster that the next start would take for a finished one.
partial="${PGDATA%/}.partial"
rm -rf "${partial}"
basebackup=(pg_basebackup -h "${PRIMARY_ADDR}" -p "${primary_port}" -U "${REPLICATION_USER}"
  -D "${partial}" -R -X stream -c fast --no-password)
export PGPASSWORD="${REPLICATION_PASSWORD}"
if [[ -n "${slot}" ]]; then
  say "cloning the primary (slot ${slot})"
  if ! output=$("${basebackup[@]}" -C -S "${slot}" 2>&1); then
    if [[ "${output}" != *"already exists"* ]]; then
      say "pg_basebackup failed: ${output}"
      rm -rf "${partial}"
      exit 1
    fi
    # A replica rebuilt from scratch finds its slot still on node 1: reuse it.
    say "slot ${slot} exists on the primary; reusing it"
    rm -rf "${partial}"
    "${basebackup[@]}" -S "${slot}"
  fi
else
  say "cloning the primary (no slot)"
  "${basebackup[@]}"
fi
unset PGPASSWORD
chmod 700 "${partial}"
rm -rf "${PGDATA}"
mv "${partial}" "${PGDATA}"
say "clone complete; starting as a streaming replica of ${PRIMARY_ADDR}:${primary_port}"
exec "$@"
