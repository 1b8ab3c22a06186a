#!/usr/bin/env bash
# Failover to node 2's replica when node 1's database is lost: promote the replica, wait
# until it accepts writes, point DATABASE_URL in the env file at it and recreate the app
# services so they read the new value. Refuses a target that is not a replica, and an old
# primary that still answers as a primary (two primaries = split brain).
#
#   ops/failover.sh --replica 10.0.0.2:5432 --env-file /srv/sendfleet/.env [--dry-run]
#   ops/failover.sh --replica 10.0.0.2:5432 --env-file /srv/sendfleet/.env --repoint-only
#       (another node's env file, after the promotion: repoint and restart, no promotion)
#
# Options:
#   --replica HOST[:PORT]  the replica (PORT 5432 when left out)
#   --env-file PATH        the env file whose DATABASE_URL the app services read
#   --database-url URL     the new DATABASE_URL as a whole (default: the old one with its
#                          host:port replaced by --replica)
#   --address-var NAME     the env file names the database host in NAME, from which the
#                          compose file builds DATABASE_URL (compose/worker.yml: NODE1_ADDR):
#                          set NAME to the replica's host instead; the login is libpq's
#                          (PGUSER, PGPASSWORD or ~/.pgpass; PGDATABASE) or FAILOVER_ADMIN_URL
#   --repoint-only         the target must already be a primary; no promotion
#   --force                promote even though the old primary still answers (it is fenced
#                          some other way, e.g. its clients are cut off)
#   --dry-run              check and print the plan, change nothing
# Settings (environment):
#   COMPOSE_CMD               how to run compose on this node ("docker compose"); the
#                             services are recreated with: $COMPOSE_CMD up -d
#                             --force-recreate --no-deps $APP_SERVICES
#   APP_SERVICES              the services to recreate ("api worker control beat")
#   FAILOVER_ADMIN_URL        the URL to promote with (default: the new DATABASE_URL; its
#                             role must be a superuser or have EXECUTE on pg_promote)
#   FAILOVER_TIMEOUT_SECONDS  how long to wait for the promotion and for health (60)
#   FAILOVER_HEALTH_URL       when set, wait until it answers 2xx after the restart
set -euo pipefail

COMPOSE_CMD="${COMPOSE_CMD:-docker compose}"
APP_SERVICES="${APP_SERVICES:-api worker control beat}"
TIMEOUT="${FAILOVER_TIMEOUT_SECONDS:-60}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"

say() { echo "failover: $*"; }
die() {
  echo "failover: $*" >&2
  exit 1
}
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}

replica="" env_file="" new_url="" address_var="" repoint_only=0 force=0 dry_run=0
while (($#)); do
  case "$1" in
    --replica) replica="${2:?--replica needs HOST[:PORT]}"; shift 2 ;;
    --env-file) env_file="${2:?--env-file needs a path}"; shift 2 ;;
    --database-url) new_url="${2:?--database-url needs a URL}"; shift 2 ;;
    --address-var) address_var="${2:?--address-var needs a variable name}"; shift 2 ;;
    --repoint-only) repoint_only=1; shift ;;
    --force) force=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "failover: unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done
[[ -n "${replica}" || -n "${new_url}" ]] || die "--replica HOST[:PORT] (or --database-url) is required"
[[ -n "${env_file}" ]] || die "--env-file is required"
[[ -f "${env_file}" ]] || die "env file ${env_file} does not exist"

# The password never reaches the output.
masked() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
# psql speaks libpq URLs, not SQLAlchemy's driver suffix.
libpq_url() { sed -E 's#^postgres(ql)?(\+[a-z0-9_]+)?://#postgresql://#' <<<"$1"; }
# A one-value query; empty output and a non-zero status when the server does not answer.
query() { psql "$(libpq_url "$1")" -X -q -At -v ON_ERROR_STOP=1 -c "$2" 2>&1; }

# The last NAME=value line of the env file, unquoted.
env_value() {
  local value
  value=$(sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?$1=//p" "${env_file}" | tail -n 1)
  value="${value%\"}" value="${value#\"}" value="${value%\'}" value="${value#\'}"
  echo "${value}"
}
# URL with its host[:port] replaced: scheme://[user[:password]@]host[:port][/db?params].
with_host() {
  [[ "$1" =~ ^([^:/]+://)([^@/]*@)?([^/?]*)(.*)$ ]] ||
    die "cannot read $(masked "$1") as scheme://user:password@host:port/db"
  echo "${BASH_REMATCH[1]}${BASH_REMATCH[2]}$2${BASH_REMATCH[4]}"
}

[[ -z "${replica}" || "${replica}" == *:* ]] || replica="${replica}:5432"
if [[ -n "${address_var}" ]]; then
  [[ "${address_var}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--address-var: ${address_var} is not a variable name"
  [[ -n "${replica}" ]] || die "--address-var needs --replica HOST[:PORT]"
  set_var="${address_var}" set_value="${replica%:*}"
  new_url="postgresql://${replica}/${PGDATABASE:-postgres}"
  old_host=$(env_value "${address_var}")
  old_url=""
  [[ -z "${old_host}" ]] || old_url="postgresql://${old_host}:${replica##*:}/${PGDATABASE:-postgres}"
else
  old_url=$(env_value DATABASE_URL)
  if [[ -z "${new_url}" ]]; then
    [[ -n "${old_url}" ]] || die "${env_file} has no DATABASE_URL to derive the new one from; pass --database-url"
    new_url=$(with_host "${old_url}" "${replica}")
  fi
  set_var="DATABASE_URL" set_value="${new_url}"
fi
admin_url="${FAILOVER_ADMIN_URL:-${new_url}}"
target=$(masked "${new_url}")

say "target ${target}"
if ! state=$(query "${admin_url}" "SELECT pg_is_in_recovery()"); then
  die "cannot reach the target ${target}: ${state}"
fi
if ((repoint_only)); then
  [[ "${state}" == "f" ]] ||
    die "refusing: ${target} is still a replica (in recovery); promote it first (run without --repoint-only)"
  say "${target} is a primary; repointing only"
else
  if [[ "${state}" != "t" ]]; then
    die "refusing: ${target} is not a replica (pg_is_in_recovery() is false, it already accepts writes); to point the app at it without promoting, use --repoint-only"
  fi
  say "${target} is a replica (in recovery)"
  if [[ -n "${old_url}" && "${old_url}" != "${new_url}" ]]; then
    if old_state=$(query "${old_url}" "SELECT pg_is_in_recovery()") && [[ "${old_state}" == "f" ]]; then
      if ((force)); then
        say "WARNING: the old primary $(masked "${old_url}") still answers as a primary; promoting anyway (--force)"
      else
        die "refusing: the old primary $(masked "${old_url}") still answers as a primary; stop it first (two primaries would both take writes), or pass --force if it is fenced"
      fi
    else
      say "the old primary $(masked "${old_url}") does not answer as a primary"
    fi
  fi
fi

read -r -a compose <<<"${COMPOSE_CMD}"
read -r -a services <<<"${APP_SERVICES}"
restart=("${compose[@]}" up -d --force-recreate --no-deps "${services[@]}")

if ((dry_run)); then
  say "dry run, nothing changed. The plan:"
  ((repoint_only)) || say "  1. promote ${target} (pg_promote) and wait up to ${TIMEOUT}s until it accepts writes"
  say "  2. set ${set_var}=$(masked "${set_value}") in ${env_file} (the old file kept beside it)"
  say "  3. run: ${restart[*]}"
  [[ -z "${FAILOVER_HEALTH_URL:-}" ]] || say "  4. wait until ${FAILOVER_HEALTH_URL} answers"
  exit 0
fi

if ((!repoint_only)); then
  say "promoting ${target}"
  if ! promoted=$(query "${admin_url}" "SELECT pg_promote(true, ${TIMEOUT})"); then
    die "pg_promote failed on ${target}: ${promoted} (FAILOVER_ADMIN_URL names a superuser if the app's role may not promote)"
  fi
  [[ "${promoted}" == "t" ]] || die "${target} did not finish promotion within ${TIMEOUT}s; nothing repointed"
fi
# Out of recovery is not yet writable to every session; a transaction id is only handed
# out by a server that takes writes.
deadline=$((SECONDS + TIMEOUT))
until query "${admin_url}" "SELECT pg_current_xact_id()" >/dev/null; do
  ((SECONDS < deadline)) || die "${target} does not accept writes after ${TIMEOUT}s; nothing repointed"
  sleep 1
done
say "${target} is the primary and accepts writes"

backup="${env_file}.before-failover-$(date -u +%Y%m%dT%H%M%SZ)"
cp -p "${env_file}" "${backup}"
# Written beside the original and moved over it: the app never reads half a file.
tmp=$(mktemp "${env_file}.XXXXXX")
trap 'rm -f "${tmp}"' EXIT
SET_VAR="${set_var}" SET_VALUE="${set_value}" awk '
  BEGIN { line = ENVIRON["SET_VAR"] "=" ENVIRON["SET_VALUE"]; pattern = "^[[:space:]]*(export[[:space:]]+)?" ENVIRON["SET_VAR"] "=" }
  $0 ~ pattern { if (!done) print line; done = 1; next }
  { print }
  END { if (!done) print line }
' "${env_file}" >"${tmp}"
chmod --reference="${env_file}" "${tmp}"
chown --reference="${env_file}" "${tmp}" 2>/dev/null || true
mv "${tmp}" "${env_file}"
trap - EXIT
say "${set_var} in ${env_file} now $(masked "${set_value}") (previous file: ${backup})"

say "recreating ${services[*]}: ${restart[*]}"
"${restart[@]}" || die "the restart failed; ${set_var} already points at ${target}; rerun: ${restart[*]}"

if [[ -n "${FAILOVER_HEALTH_URL:-}" ]]; then
  deadline=$((SECONDS + TIMEOUT))
  until curl -fsS -o /dev/null --max-time 5 "${FAILOVER_HEALTH_URL}" 2>/dev/null; do
    ((SECONDS < deadline)) || die "${FAILOVER_HEALTH_URL} did not answer within ${TIMEOUT}s after the restart"
    sleep 1
  done
  say "${FAILOVER_HEALTH_URL} answers"
fi

say "done: the app runs on ${target}"
((repoint_only)) || say "next: keep node 1's old database stopped (it must not come back as a primary), repoint the other nodes with --repoint-only, and build a new replica from this primary"
