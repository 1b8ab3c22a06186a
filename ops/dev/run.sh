#!/usr/bin/env bash
# `make run`: Sendfleet on this machine in sandbox mode. ops/dev/bootstrap.sh creates .env
# and the database when missing, migrates and prints a working login and API key; then the
# mail sink, the API (gunicorn), a send worker, a control worker (dispatch, recovery, alerts
# and the scheduled checks on their own queue, so long sends never delay them) and beat run
# until Ctrl-C, each with its command in ops/entrypoint.sh (gunicorn --preload; beat without
# the Flask app), as in Compose. Every message lands in var/mail/.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv
bash ops/dev/bootstrap.sh
set -a
# shellcheck source=/dev/null
. "${SENDFLEET_ENV_FILE:-.env}"
set +a

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$VENV/bin/python ops/dev/mailsink.py --port 1025 --folder var/mail & pids+=($!)
API_BIND=127.0.0.1:5000 bash ops/entrypoint.sh api & pids+=($!)
echo "run: web UI at http://localhost:5000/ (sign in with the login above; also in var/first-login.txt)"
bash ops/entrypoint.sh worker & pids+=($!)
bash ops/entrypoint.sh control & pids+=($!)
BEAT_SCHEDULE_FILE=var/celerybeat-schedule bash ops/entrypoint.sh beat & pids+=($!)
wait -n "${pids[@]}"
