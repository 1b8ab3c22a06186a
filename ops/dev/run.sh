#!/usr/bin/env bash
# `make run`: Sendfleet on this machine in sandbox mode. ops/dev/bootstrap.sh creates .env
# and the database when missing, migrates and prints a working login and API key; then the
# mail sink, the API (gunicorn), a worker and beat run until Ctrl-C. Every message lands in
# var/mail/.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv
bash ops/dev/bootstrap.sh
set -a; . "${SENDFLEET_ENV_FILE:-.env}"; set +a

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$VENV/bin/python ops/dev/mailsink.py --port 1025 --folder var/mail & pids+=($!)
$VENV/bin/gunicorn 'app:create_app()' --bind 127.0.0.1:5000 --workers 2 & pids+=($!)
$VENV/bin/celery -A worker worker --loglevel INFO & pids+=($!)
$VENV/bin/celery -A worker beat --loglevel INFO --schedule var/celerybeat-schedule & pids+=($!)
wait -n "${pids[@]}"
