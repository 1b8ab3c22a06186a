#!/usr/bin/env bash
# `make run`: Sendfleet on this machine in sandbox mode. Creates .env (random keys) and the
# database on first run, migrates, prints a first login and API key, then runs the mail sink,
# the API (gunicorn), a worker and beat until Ctrl-C. Every message lands in var/mail/.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv
mkdir -p var/mail

if [ ! -f .env ]; then
  secret=$($VENV/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))')
  fernet=$($VENV/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
  cat > .env <<ENV
# Created by make run for local development. Never commit this file.
SENDFLEET_ENV=development
DATABASE_URL=postgresql://postgres@127.0.0.1:5432/sendfleet
REDIS_URL=redis://127.0.0.1:6379/0
SECRET_KEY=$secret
CREDENTIALS_KEY=$fernet
PUBLIC_BASE_URL=http://localhost:5000
COMPANY_ADDRESS="Example Ltd, 1 Example Street, 10115 Berlin"
SANDBOX_SMTP_URL=smtp://127.0.0.1:1025
LOG_FORMAT=text
ENV
  echo "run: wrote .env with fresh SECRET_KEY and CREDENTIALS_KEY"
fi
set -a; . ./.env; set +a

db_name=${DATABASE_URL##*/}
if ! psql "${DATABASE_URL%/*}/postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
  psql "${DATABASE_URL%/*}/postgres" -qc "CREATE DATABASE \"$db_name\""
  echo "run: created database $db_name"
fi
$VENV/bin/flask --app app db upgrade

if [ ! -f var/first-login.txt ]; then
  password=$($VENV/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')
  $VENV/bin/flask --app app users create admin@example.com --password "$password" >/dev/null
  key=$($VENV/bin/flask --app app keys create first-key 2>/dev/null | tail -n 1)
  umask 077
  printf 'login: admin@example.com\npassword: %s\napi key: %s\n' "$password" "$key" > var/first-login.txt
fi
echo "== first login (kept in var/first-login.txt) =="
cat var/first-login.txt
echo "== API:  http://localhost:5000/api/v1/health   (Authorization: Bearer <api key>)"
echo "== mail: every message is written to var/mail/ (sandbox mode)"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$VENV/bin/python ops/dev/mailsink.py --port 1025 --folder var/mail & pids+=($!)
$VENV/bin/gunicorn 'app:create_app()' --bind 127.0.0.1:5000 --workers 2 & pids+=($!)
$VENV/bin/celery -A worker worker --loglevel INFO & pids+=($!)
$VENV/bin/celery -A worker beat --loglevel INFO --schedule var/celerybeat-schedule & pids+=($!)
wait -n "${pids[@]}"
