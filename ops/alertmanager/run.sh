#!/bin/sh
# Alertmanager with the on-call Telegram chat of the node's env file: the same
# TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID and TELEGRAM_API_BASE the app reads. Alertmanager
# takes no environment variables, so this renders alertmanager.yml (the template beside
# it) into a file of its own, readable by this process alone, then execs Alertmanager with
# it. The compose files' alertmanager service runs it (the image's busybox sh); so do the
# tests, with Debian's binary.
#
#   run.sh [alertmanager options]     render, then exec Alertmanager
#   run.sh --render-only FILE         render into FILE and stop (checks, tests)
#
# ALERTMANAGER_TEMPLATE (/etc/alertmanager/alertmanager.yml), ALERTMANAGER_BIN
# (/bin/alertmanager) and ALERTMANAGER_RUN_DIR (/tmp/alertmanager) say where things are.
set -eu

die() {
  echo "alertmanager: $*" >&2
  exit 78 # EX_CONFIG
}

template=${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}
api_base=${TELEGRAM_API_BASE:-https://api.telegram.org}
if [ -z "${TELEGRAM_BOT_TOKEN:-}" ] || [ -z "${TELEGRAM_CHAT_ID:-}" ]; then
  die "set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID in the env file: every alert goes to that chat"
fi
# Checked before they go into sed and YAML: a chat id is an integer (a group's is negative),
# a token is "<bot id>:<secret>" of letters, digits, - and _.
case "$TELEGRAM_CHAT_ID" in
  -* ) chat_digits=${TELEGRAM_CHAT_ID#-} ;;
  * ) chat_digits=$TELEGRAM_CHAT_ID ;;
esac
case "$chat_digits" in
  '' | *[!0-9]*) die "TELEGRAM_CHAT_ID must be a number (a group's starts with -)" ;;
esac
bot_id=${TELEGRAM_BOT_TOKEN%%:*}
bot_secret=${TELEGRAM_BOT_TOKEN#*:}
case "$bot_id:$bot_secret" in
  "$TELEGRAM_BOT_TOKEN") ;;
  *) bot_secret= ;; # no colon at all
esac
case "$bot_id" in '' | *[!0-9]*) bot_secret= ;; esac
case "$bot_secret" in
  '' | *[!A-Za-z0-9_-]*) die "TELEGRAM_BOT_TOKEN does not look like a bot token (<bot id>:<secret>)" ;;
esac
case "$api_base" in
  http://?* | https://?*) ;;
  *) die "TELEGRAM_API_BASE must be an http(s) URL" ;;
esac
case "$api_base" in
  *[!A-Za-z0-9:/._~%-]*) die "TELEGRAM_API_BASE must be an http(s) URL" ;;
esac
[ -r "$template" ] || die "cannot read $template"

render() { # FILE
  (
    umask 077
    sed -e "s|__TELEGRAM_CHAT_ID__|${TELEGRAM_CHAT_ID}|" \
      -e "s|__TELEGRAM_BOT_TOKEN__|${TELEGRAM_BOT_TOKEN}|" \
      -e "s|__TELEGRAM_API_BASE__|${api_base}|" "$template" >"$1.tmp"
    mv "$1.tmp" "$1"
  )
}

if [ "${1:-}" = "--render-only" ]; then
  [ -n "${2:-}" ] || die "usage: run.sh --render-only FILE"
  render "$2"
  exit 0
fi
dir=${ALERTMANAGER_RUN_DIR:-/tmp/alertmanager}
mkdir -p "$dir"
chmod 700 "$dir"
render "$dir/alertmanager.yml"
echo "alertmanager: alerts go to Telegram chat ${TELEGRAM_CHAT_ID} through ${api_base}" >&2
exec "${ALERTMANAGER_BIN:-/bin/alertmanager}" --config.file="$dir/alertmanager.yml" "$@"
