#!/usr/bin/env bash
# The set-up half of `make run`, safe to repeat: creates .env (random keys) and the database
# when missing, migrates, and prints a working UI login and API key (var/first-login.txt).
# On a database that already exists (a second clone, `make clean && make run`) the data
# stays: the first user's password is reset (and said so) and a fresh API key is made.
#
# SECRET_KEY and CREDENTIALS_KEY are kept per database in
# ${XDG_CONFIG_HOME:-~/.config}/sendfleet/<database>.env, so a second clone's new .env takes
# the keys the database's account secrets were encrypted with.
#
# Overridable for tests: SENDFLEET_ENV_FILE, SENDFLEET_VAR_DIR, SENDFLEET_DEV_KEYS_DIR, and
# the URLs a new .env gets (SENDFLEET_DEV_DATABASE_URL, SENDFLEET_DEV_REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
ENV_FILE=${SENDFLEET_ENV_FILE:-.env}
VAR_DIR=${SENDFLEET_VAR_DIR:-var}
KEYS_DIR=${SENDFLEET_DEV_KEYS_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/sendfleet}
mkdir -p "$VAR_DIR/mail"

keys_file() {  # the saved keys of one database: host, port and name from its URL
  echo "$KEYS_DIR/$(echo "${1##*@}" | sed 's#[^A-Za-z0-9._-]#_#g').env"
}
read_key() { sed -n "s/^$1=//p" "$2" | head -n 1; }

if [ ! -f "$ENV_FILE" ]; then
  database_url=${SENDFLEET_DEV_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/sendfleet}
  saved=$(keys_file "$database_url")
  if [ -f "$saved" ]; then
    secret=$(read_key SECRET_KEY "$saved")
    fernet=$(read_key CREDENTIALS_KEY "$saved")
    echo "run: wrote $ENV_FILE with the keys this database was made with (from $saved)"
  else
    secret=$($VENV/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))')
    fernet=$($VENV/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
    echo "run: wrote $ENV_FILE with fresh SECRET_KEY and CREDENTIALS_KEY"
  fi
  (umask 077; cat > "$ENV_FILE" <<ENV
# Created by make run for local development. Never commit this file.
SENDFLEET_ENV=development
DATABASE_URL=$database_url
REDIS_URL=${SENDFLEET_DEV_REDIS_URL:-redis://127.0.0.1:6379/0}
SECRET_KEY=$secret
CREDENTIALS_KEY=$fernet
PUBLIC_BASE_URL=http://localhost:5000
COMPANY_ADDRESS="Example Ltd, 1 Example Street, 10115 Berlin"
SANDBOX_SMTP_URL=smtp://127.0.0.1:1025
LOG_FORMAT=text
# A mailbox you own and read, for the mailto part of List-Unsubscribe (unset: https only).
# UNSUBSCRIBE_MAILBOX=unsubscribe@example.com
# Defaults of the send core, shown so they are easy to find (README: Configuration).
# MAX_HANDBACKS=3
# DOMAIN_BACKOFF_SECONDS=60
# DOMAIN_BACKOFF_MAX_SECONDS=3600
# CONTENT_GUARD_ACCOUNTS=2
# CONTENT_GUARD_REFUSALS=5
# ACCOUNT_REFUSAL_WINDOW=10
# ACCOUNT_REFUSAL_THRESHOLD=8
# ACCOUNT_REFUSAL_DOMAINS=3
# HEARTBEAT_INTERVAL_SECONDS=5
# HEARTBEAT_TTL_SECONDS=15
# RECOVERY_INTERVAL_SECONDS=15
# SEND_LEASE_SECONDS=600
# IMPORT_MAX_BYTES=209715200
# TEMPLATE_MAX_OUTPUT_CHARS=2000000
# TEMPLATE_MAX_RENDER_SECONDS=1.0
ENV
  )
fi
set -a; . "$ENV_FILE"; set +a

saved=$(keys_file "$DATABASE_URL")
if [ ! -f "$saved" ]; then
  mkdir -p "$KEYS_DIR"
  (umask 077; printf 'DATABASE_URL=%s\nSECRET_KEY=%s\nCREDENTIALS_KEY=%s\n' \
    "$DATABASE_URL" "$SECRET_KEY" "$CREDENTIALS_KEY" > "$saved")
  echo "run: saved this database's keys in $saved (a second clone's .env reuses them)"
fi

db_name=${DATABASE_URL##*/}
if ! psql "${DATABASE_URL%/*}/postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
  # Sorted bytewise, as the deployment's clusters are made (docker-compose.yml).
  psql "${DATABASE_URL%/*}/postgres" -qc "CREATE DATABASE \"$db_name\" TEMPLATE template0 LC_COLLATE 'C'"
  echo "run: created database $db_name"
else
  echo "run: database $db_name exists: its data is kept"
fi
$VENV/bin/flask --app app db upgrade

echo "== first login (kept in $VAR_DIR/first-login.txt) =="
$VENV/bin/flask --app app dev first-login --file "$VAR_DIR/first-login.txt"
echo "== API:  http://localhost:5000/api/v1/health   (Authorization: Bearer <api key>)"
echo "== mail: every message is written to $VAR_DIR/mail/ (sandbox mode)"
