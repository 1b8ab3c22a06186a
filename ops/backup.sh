#!/usr/bin/env bash
# Nightly backup: pg_dump -Fc of the database into BACKUP_DIR and, when BACKUP_S3_BUCKET is
# set, to S3-compatible storage (ops/backup_store.py, boto3); then retention in both.
#
#   ops/backup.sh [--env-file /srv/sendfleet/.env]
#   cron: 17 3 * * *  /srv/sendfleet/ops/backup.sh --env-file /srv/sendfleet/.env
#
# Settings (environment, or else the env file):
#   BACKUP_DATABASE_URL   what to dump (default DATABASE_URL)
#   BACKUP_DIR            local folder (/var/backups/sendfleet)
#   BACKUP_KEEP_DAYS      delete backups older than this many days (14; 0: no age limit)
#   BACKUP_KEEP_FILES     keep at most this many (0: no count limit); the newest always stays
#   BACKUP_S3_BUCKET      bucket (empty: local only); BACKUP_S3_PREFIX (sendfleet/),
#   BACKUP_S3_ENDPOINT_URL (empty for AWS), BACKUP_S3_REGION, AWS_ACCESS_KEY_ID,
#   AWS_SECRET_ACCESS_KEY
#   BACKUP_PYTHON         the Python with boto3 (python3)
# Exits non-zero when any step fails, so cron (MAILTO) or the scheduler reports it; a dump
# that fails leaves no file behind, and retention runs only after a good dump.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=backup_settings.sh source-path=SCRIPTDIR
source "${here}/backup_settings.sh"

env_file=""
while (($#)); do
  case "$1" in
    --env-file) env_file="${2:?--env-file needs a path}"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "backup: unknown argument: $1" >&2; exit 2 ;;
  esac
done
load_settings "${env_file}"
source_url="${BACKUP_DATABASE_URL:-${DATABASE_URL:-}}"
[[ -n "${source_url}" ]] || { echo "backup: DATABASE_URL (or BACKUP_DATABASE_URL) is required" >&2; exit 1; }
dir="${BACKUP_DIR:-/var/backups/sendfleet}"
python="${BACKUP_PYTHON:-python3}"
store=("${python}" "${here}/backup_store.py")

umask 077
mkdir -p "${dir}"
name="sendfleet-$(date -u +%Y%m%dT%H%M%SZ).dump"
partial="${dir}/.${name}.partial"
trap 'rm -f "${partial}"' EXIT
started=${SECONDS}
echo "backup: dumping $(masked "${source_url}")"
# An import's staging table (app/services/staging.py) is scratch of one import: left out,
# so the dump neither holds nor locks it (a lock the import's DROP would wait on).
pg_dump --format=custom --exclude-table='import_staging_*' --file="${partial}" \
  "$(libpq_url "${source_url}")"
# A dump is kept only if pg_restore can read its table of contents back.
entries=$(pg_restore --list "${partial}" | grep -c ' TABLE DATA ' || true)
mv "${partial}" "${dir}/${name}"
trap - EXIT
size=$(stat -c %s "${dir}/${name}")
echo "backup: wrote ${dir}/${name} (${size} bytes, ${entries} tables) in $((SECONDS - started))s"

if [[ -n "${BACKUP_S3_BUCKET:-}" ]]; then
  "${store[@]}" upload "${dir}/${name}"
  "${store[@]}" prune
fi
"${store[@]}" prune --local "${dir}"
echo "backup: done"
