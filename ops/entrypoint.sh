#!/usr/bin/env bash
# The one place that holds each Sendfleet process's command line. The image's ENTRYPOINT,
# every Compose service and the native tests (tests/deploy/) all start processes through it,
# so what a container runs is what the tests run.
#
#   ops/entrypoint.sh migrate   flask --app app db upgrade (one-shot; then the first login
#                               when FIRST_LOGIN_FILE is set: the one-host Compose path)
#   ops/entrypoint.sh api       gunicorn 'app:create_app()' on API_BIND
#   ops/entrypoint.sh worker    celery worker on the send queue
#   ops/entrypoint.sh control   celery worker on the dispatch queue: dispatch, recovery,
#                               alerts, scheduled checks; one process
#   ops/entrypoint.sh beat      celery beat, from worker/beat_app.py: settings and the schedule
#                               only, no Flask app (beat only enqueues, by task name)
#   ops/entrypoint.sh health ROLE   exit 0 when that process answers (HEALTHCHECK, deploy)
#   ops/entrypoint.sh drain ROLE    a worker stops taking tasks and finishes what it holds
#
# Settings come from the environment (app/settings.py); the few read here are:
#   API_BIND (0.0.0.0:8000), API_WORKERS (2), API_THREADS (4: requests at once per worker),
#   API_GRACEFUL_TIMEOUT (120: on SIGTERM, how long requests in flight, an upload or import,
#   may take to finish before their worker is killed; Compose's stop_grace_period is longer),
#   LOG_LEVEL (INFO),
#   BEAT_SCHEDULE_FILE (/tmp/sendfleet-celerybeat-schedule), DRAIN_TIMEOUT_SECONDS (1860: a
#   send task's soft limit SEND_TASK_TIME_LIMIT_SECONDS, 1800, plus its hard minute).
set -euo pipefail

cd "$(dirname "$0")/.."
# Natively (tests, make run) the project's virtualenv; in the image it is already on PATH.
if [[ -d .venv/bin ]]; then
  PATH="$PWD/.venv/bin:$PATH"
fi

API_BIND=${API_BIND:-0.0.0.0:8000}
API_WORKERS=${API_WORKERS:-2}
API_THREADS=${API_THREADS:-4}
API_GRACEFUL_TIMEOUT=${API_GRACEFUL_TIMEOUT:-120}
LOG_LEVEL=${LOG_LEVEL:-INFO}
BEAT_SCHEDULE_FILE=${BEAT_SCHEDULE_FILE:-/tmp/sendfleet-celerybeat-schedule}
DRAIN_TIMEOUT_SECONDS=${DRAIN_TIMEOUT_SECONDS:-1860}

# Two workers on one host must not share a Celery node name: control commands address them.
node_name() {
  case "$1" in
    worker) echo "send@$(hostname)" ;;
    control) echo "control@$(hostname)" ;;
    *) echo "entrypoint: $1 is not a worker role" >&2; exit 64 ;;
  esac
}

queue_of() {
  case "$1" in
    worker) echo "sendfleet.send" ;;
    control) echo "sendfleet.dispatch" ;;
  esac
}

# Remote control (ping, cancel_consumer, inspect) needs only the broker, not the app:
# without -A no Flask app is built, which saves seconds on every check.
remote_control() {
  celery -b "${CELERY_BROKER_URL:-${REDIS_URL:-redis://127.0.0.1:6379/0}}" "$@"
}

health() {
  case "$1" in
    api)
      # The port API_BIND listens on, asked on loopback (the image has no curl).
      python - "http://127.0.0.1:${API_BIND##*:}/api/v1/health" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as reply:
    sys.exit(0 if json.load(reply).get("status") == "ok" else 1)
PY
      ;;
    worker | control)
      remote_control inspect ping --destination "$(node_name "$1")" --timeout 5 >/dev/null
      ;;
    *) echo "entrypoint: no health check for '$1' (api, worker, control)" >&2; exit 64 ;;
  esac
}

# Stop consuming, then wait until no task is active: the warm shutdown that follows (SIGTERM)
# has nothing left to finish. Tasks still reserved go back to the broker on shutdown
# (acks_late); rows a lost process held are the recovery job's (DESIGN "Recovery").
drain() {
  local node queue started deadline active held=""
  node=$(node_name "$1")
  queue=$(queue_of "$1")
  remote_control control cancel_consumer "$queue" --destination "$node" --timeout 5 >/dev/null
  started=$SECONDS
  deadline=$((SECONDS + DRAIN_TIMEOUT_SECONDS))
  while :; do
    active=$(remote_control inspect active --destination "$node" --timeout 5 --json 2>/dev/null |
      python -c 'import json,sys; print(sum(len(v or []) for v in json.load(sys.stdin).values()))') ||
      active="?"
    held=${held:-$active}
    if [[ "$active" == 0 && "$held" == 0 ]]; then
      echo "drain: $node takes no new tasks and has none in flight"
      return 0
    elif [[ "$active" == 0 ]]; then
      echo "drain: $node takes no new tasks; its $held task(s) in flight finished after $((SECONDS - started))s"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      echo "drain: $node still has $active task(s) after ${DRAIN_TIMEOUT_SECONDS}s; stopping anyway" >&2
      return 0
    fi
    sleep 1
  done
}

role=${1:-}
shift || true
case "$role" in
  migrate)
    flask --app app db upgrade
    if [[ -n "${FIRST_LOGIN_FILE:-}" ]]; then
      flask --app app dev first-login --file "$FIRST_LOGIN_FILE"
    fi
    ;;
  api)
    # Threaded workers: a request may take longer than the worker timeout (a CSV upload over
    # a slow link through a proxy that streams it, Caddy's default) without the worker being
    # killed mid-request, and a slow upload leaves the other threads answering; a sync worker
    # is one request at a time and is killed when one takes 30 s. Imports still take turns
    # within a worker (app/services/import_slots.py). On SIGTERM (a deploy) gunicorn serves
    # no new request and gives those in flight API_GRACEFUL_TIMEOUT to finish: an upload or
    # import under way is completed, not cut off and rolled back.
    exec gunicorn 'app:create_app()' --bind "$API_BIND" --workers "$API_WORKERS" \
      --worker-class gthread --threads "$API_THREADS" --graceful-timeout "$API_GRACEFUL_TIMEOUT" \
      --preload --no-control-socket --access-logfile - "$@"
    ;;
  worker)
    exec celery -A worker worker -Q sendfleet.send --hostname "$(node_name worker)" \
      --loglevel "$LOG_LEVEL" "$@"
    ;;
  control)
    exec celery -A worker worker -Q sendfleet.dispatch --concurrency 1 \
      --hostname "$(node_name control)" --loglevel "$LOG_LEVEL" "$@"
    ;;
  beat)
    exec celery -A worker.beat_app beat --schedule "$BEAT_SCHEDULE_FILE" --loglevel "$LOG_LEVEL" "$@"
    ;;
  health) health "${1:-}" ;;
  drain) drain "${1:-}" ;;
  *)
    echo "usage: ops/entrypoint.sh migrate|api|worker|control|beat|health ROLE|drain ROLE" >&2
    exit 64
    ;;
esac
