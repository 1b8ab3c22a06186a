#!/usr/bin/env bash
# Restores a backup made by ops/backup.sh into a fresh database (created when missing), from
# a local file or from the S3 bucket. Refuses a database that already holds tables unless
# --force, and then replaces its contents in one transaction: it ends as the backup or as
# it was, never half of each.
#
#   ops/restore.sh --database-url postgresql://u:p@host/sendfleet_restored --file FILE
#   ops/restore.sh --database-url URL --from-s3 latest|sendfleet-20261201T031700Z.dump
#
# Options: --env-file PATH (settings as ops/backup.sh reads them: the S3 ones, BACKUP_PYTHON);
#   --force (restore over a database that is not empty)
# The role in the URL creates the database when it is missing (CREATEDB), and owns what
# the restore makes (owners and grants in the dump are not replayed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=backup_settings.sh source-path=SCRIPTDIR
source "${here}/backup_settings.sh"

die() {
  echo "restore: $*" >&2
  exit 1
}

env_file="" target="" file="" s3_name="" force=0
while (($#)); do
  case "$1" in
    --env-file) env_file="${2:?--env-file needs a path}"; shift 2 ;;
    --database-url) target="${2:?--database-url needs a URL}"; shift 2 ;;
    --file) file="${2:?--file needs a path}"; shift 2 ;;
    --from-s3) s3_name="${2:?--from-s3 needs a name or latest}"; shift 2 ;;
    --force) force=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
load_settings "${env_file}"
[[ -n "${target}" ]] || die "--database-url is required (the database to restore into)"
[[ -n "${file}" || -n "${s3_name}" ]] || die "give --file PATH or --from-s3 NAME|latest"
[[ -z "${file}" || -z "${s3_name}" ]] || die "give --file or --from-s3, not both"

url=$(libpq_url "${target}")
# scheme://[userinfo@]host[:port]/dbname[?params]
[[ "${url}" =~ ^(postgresql://[^/]*)/([^/?]+)(\?.*)?$ ]] || die "cannot find the database name in $(masked "${target}")"
server="${BASH_REMATCH[1]}" dbname="${BASH_REMATCH[2]}" params="${BASH_REMATCH[3]:-}"
maintenance="${server}/postgres${params}"

label="${file##*/}"
workdir=$(mktemp -d)
trap 'rm -rf "${workdir}"' EXIT
if [[ -n "${s3_name}" ]]; then
  [[ -n "${BACKUP_S3_BUCKET:-}" ]] || die "--from-s3 needs BACKUP_S3_BUCKET"
  file="${workdir}/backup.dump"
  picked=$("${BACKUP_PYTHON:-python3}" "${here}/backup_store.py" download "${s3_name}" "${file}")
  label="${picked}"
  echo "restore: fetched ${picked} from s3://${BACKUP_S3_BUCKET}/${BACKUP_S3_PREFIX:-sendfleet/}"
fi
[[ -r "${file}" ]] || die "cannot read ${file}"
pg_restore --list "${file}" >/dev/null 2>&1 || die "${file} is not a pg_dump -Fc archive"

# The name goes in as a psql variable (:'name' and :"name" quote it), never pasted into SQL.
psql_q() { psql "$1" -X -q -At -v ON_ERROR_STOP=1 -v name="${dbname}"; }
exists=$(psql_q "${maintenance}" <<<"SELECT count(*) FROM pg_database WHERE datname = :'name'") ||
  die "cannot reach $(masked "${maintenance}")"
clean=()
if [[ "${exists}" == "0" ]]; then
  # Sorted bytewise whatever the cluster's default (README, Database collation): restoring
  # into a new database is also how an older en_US.utf8 database moves to "C".
  psql_q "${maintenance}" <<<$'CREATE DATABASE :"name" TEMPLATE template0 LC_COLLATE \'C\'' >/dev/null
  echo "restore: created database ${dbname} (collation C)"
else
  objects=$(psql_q "${url}" <<'SQL'
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
SQL
  )
  if [[ "${objects}" != "0" ]]; then
    ((force)) || die "refusing: database ${dbname} is not empty (${objects} tables, sequences or views); restore into a fresh database, or pass --force to replace its contents"
    echo "restore: database ${dbname} holds ${objects} objects; replacing them (--force)"
    clean=(--clean --if-exists)
  fi
fi

started=${SECONDS}
pg_restore --dbname="${url}" --no-owner --no-acl --exit-on-error --single-transaction \
  "${clean[@]}" "${file}" ||
  die "pg_restore failed; nothing of the backup was kept in ${dbname} (one transaction)"
tables=$(psql_q "${url}" <<<"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
echo "restore: restored ${label} into ${dbname} (${tables} tables) in $((SECONDS - started))s"
