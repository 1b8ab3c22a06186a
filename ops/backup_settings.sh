# shellcheck shell=bash
# Settings of ops/backup.sh and ops/restore.sh: each from the environment, or else from the
# env file given with --env-file (the node's .env, read line by line, never sourced: its
# values are not shell syntax). Sourced by both scripts.

BACKUP_SETTINGS=(DATABASE_URL BACKUP_DATABASE_URL BACKUP_DIR BACKUP_KEEP_DAYS BACKUP_KEEP_FILES
  BACKUP_S3_BUCKET BACKUP_S3_PREFIX BACKUP_S3_ENDPOINT_URL BACKUP_S3_REGION
  AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY BACKUP_PYTHON)

# load_settings FILE: export each setting the environment lacks and FILE has.
load_settings() {
  local file="$1" name value
  [[ -n "${file}" ]] || return 0
  [[ -r "${file}" ]] || { echo "${0##*/}: cannot read env file ${file}" >&2; exit 1; }
  for name in "${BACKUP_SETTINGS[@]}"; do
    [[ -z "${!name:-}" ]] || continue
    value=$(sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?${name}=//p" "${file}" | tail -n 1)
    value="${value%\"}" value="${value#\"}" value="${value%\'}" value="${value#\'}"
    [[ -z "${value}" ]] || export "${name}=${value}"
  done
}

# pg_dump and psql speak libpq URLs, not SQLAlchemy's driver suffix.
libpq_url() { sed -E 's#^postgres(ql)?(\+[a-z0-9_]+)?://#postgresql://#' <<<"$1"; }
# The password never reaches the output.
masked() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
