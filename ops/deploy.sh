#!/usr/bin/env bash
# Deploys one image tag to the nodes of an inventory over SSH: node 1 first (its migrate
# service runs the migrations), then the worker nodes one at a time, each drained first.
#
#   ops/deploy.sh --inventory FILE --tag TAG [--only NAME]... [--dry-run]
#
# Inventory: one node a line, `NAME ROLE SSH_TARGET ENV_FILE [EXTRA_COMPOSE_FILES]`
#   node1  node1   deploy@203.0.113.10  /secrets/node1.env
#   node2  worker  deploy@203.0.113.11  /secrets/node2.env  compose/replica.yml
#   node3  worker  deploy@203.0.113.12  /secrets/node3.env
# ROLE node1 runs compose/node1.yml (health: api, control); ROLE worker compose/worker.yml
# (health: worker). EXTRA_COMPOSE_FILES is a comma-separated list of more compose files.
# ENV_FILE is that node's settings and secrets (.env.example); SENDFLEET_IMAGE is added.
#
# Per node: the compose files, the ops/ files they mount and the env file go to
# DEPLOY_DIR/releases/<id> (the id is a digest of all of it), then `pull`, (workers: drain,
# stop), DEPLOY_DIR/live <- a copy of the new release, `up -d`, and a wait for health. A
# release that does not become healthy is replaced by the previous one, and the deploy stops
# there and says so. A node already running the same release, healthy, is left alone (a second run of the
# same deploy changes nothing).
#
# Settings (environment): IMAGE (default $CI_REGISTRY_IMAGE), COMPOSE_CMD (the container
# runtime on the nodes; "docker compose"), DEPLOY_DIR (/srv/sendfleet), HEALTH_TIMEOUT_SECONDS
# (180), KEEP_RELEASES (3), SSH_OPTS (extra ssh options, e.g. "-i key -p 2222").
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-${CI_REGISTRY_IMAGE:-}}
COMPOSE_CMD=${COMPOSE_CMD:-docker compose}
DEPLOY_DIR=${DEPLOY_DIR:-/srv/sendfleet}
HEALTH_TIMEOUT_SECONDS=${HEALTH_TIMEOUT_SECONDS:-180}
KEEP_RELEASES=${KEEP_RELEASES:-3}
SSH_OPTS=${SSH_OPTS:-}
PROJECT=sendfleet

say() { echo "deploy: $*"; }
die() {
  echo "deploy: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}

inventory="" tag="" dry_run=0
only=()
while (($#)); do
  case "$1" in
    --inventory) inventory=${2:?}; shift 2 ;;
    --tag) tag=${2:?}; shift 2 ;;
    --only) only+=("${2:?}"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "deploy: unknown argument $1" >&2; usage 64 ;;
  esac
done
[[ -n "$inventory" && -f "$inventory" ]] || die "--inventory FILE is required (see --help)"
[[ -n "$tag" ]] || die "--tag TAG is required"
[[ -n "$IMAGE" ]] || die "IMAGE (or CI_REGISTRY_IMAGE) names the image repository"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "not an image tag: $tag"

compose_files_of() { # ROLE EXTRA -> the node's compose files, repository paths
  local role=$1 extra=$2
  case "$role" in
    node1) echo compose/node1.yml ;;
    worker) echo compose/worker.yml ;;
    *) die "unknown role $role (node1 or worker)" ;;
  esac
  [[ -z "$extra" ]] || tr ',' '\n' <<<"$extra"
}

health_services_of() {
  case "$1" in
    node1) echo "api:api control:control" ;;
    worker) echo "worker:worker" ;;
  esac
}

# The ops/ files the compose files mount (../ops/... relative to compose/).
mounted_files_of() {
  local file
  for file in "$@"; do
    # ../ops/x, or ${SOMETHING:-../ops}/x (compose/replica.yml)
    grep -oE '\.\./ops\}?/[A-Za-z0-9_./-]+' "$file" | sed 's#^\.\./##; s#}##; s#/$##' || true
  done | sort -u | while read -r path; do
    [[ -e "$path" ]] && echo "$path"
  done
}

# Builds the release bundle of one node in a new folder; prints the folder.
build_bundle() { # ROLE EXTRA ENV_FILE
  local role=$1 extra=$2 env_file=$3 bundle file
  bundle=$(mktemp -d)
  mapfile -t files < <(compose_files_of "$role" "$extra")
  for file in "${files[@]}" $(mounted_files_of "${files[@]}"); do
    [[ -e "$file" ]] || die "missing $file"
    mkdir -p "$bundle/$(dirname "$file")"
    cp -R "$file" "$bundle/$file"
  done
  grep -v '^SENDFLEET_IMAGE=' "$env_file" >"$bundle/.env"
  echo "SENDFLEET_IMAGE=$IMAGE:$tag" >>"$bundle/.env"
  printf '%s\n' "${files[@]}" >"$bundle/COMPOSE_FILES"
  echo "$tag" >"$bundle/TAG"
  chmod 600 "$bundle/.env"
  echo "$bundle"
}

bundle_digest() { # a digest of every file's path and content: the release id
  (cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do
    echo "$f"
    sha256sum <"$f"
  done) | sha256sum | cut -c1-12
}

# --- What runs on a node (sent over SSH with its functions) -----------------------------

remote() { # TARGET FUNCTION ARGS...: runs a function below on the node
  local target=$1 fn=$2
  shift 2
  local args="" a
  for a in "$@"; do args+=" $(printf '%q' "$a")"; done
  local script
  script="set -euo pipefail
DEPLOY_DIR=$(printf '%q' "$DEPLOY_DIR")
COMPOSE_CMD=$(printf '%q' "$COMPOSE_CMD")
HEALTH_TIMEOUT_SECONDS=$(printf '%q' "$HEALTH_TIMEOUT_SECONDS")
KEEP_RELEASES=$(printf '%q' "$KEEP_RELEASES")
PROJECT=$PROJECT
$(declare -f node_compose node_current node_health node_wait_healthy node_switch \
    node_drain node_prune)
$fn$args"
  # shellcheck disable=SC2086  # SSH_OPTS is a list of options
  ssh -o BatchMode=yes $SSH_OPTS "$target" bash -s <<<"$script"
}

node_compose() { # PLACE ARGS...: the runtime's compose in `live` or in releases/PLACE
  local place=$1 dir file
  shift
  dir="$DEPLOY_DIR/releases/$place"
  [[ "$place" == live ]] && dir="$DEPLOY_DIR/live"
  local -a runtime files=()
  read -ra runtime <<<"$COMPOSE_CMD"
  while read -r file; do files+=(-f "$file"); done <"$dir/COMPOSE_FILES"
  (cd "$dir" && "${runtime[@]}" -p "$PROJECT" --env-file .env "${files[@]}" "$@")
}

node_current() { # prints "RELEASE TAG" of what runs now, or "none none"
  local live="$DEPLOY_DIR/live"
  if [[ -f "$live/RELEASE" ]]; then
    echo "$(cat "$live/RELEASE") $(cat "$live/TAG")"
  else
    echo "none none"
  fi
}

node_health() { # SERVICE:ROLE...: every one of the live release answers its health check
  local pair
  for pair in "$@"; do
    node_compose live exec -T "${pair%%:*}" ops/entrypoint.sh health "${pair##*:}" \
      >/dev/null 2>&1 || return 1
  done
}

node_wait_healthy() { # SERVICE:ROLE...
  local deadline=$((SECONDS + HEALTH_TIMEOUT_SECONDS))
  until node_health "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 2
  done
}

# The live release is a copy at one fixed path, so the files the services mount keep their
# paths from release to release: Compose recreates only the services whose image or
# settings changed (PostgreSQL and Redis stay up through an app deploy).
node_switch() { # RELEASE: live <- a copy of it, then up -d
  local release=$1
  rm -rf "$DEPLOY_DIR/live.new" "$DEPLOY_DIR/live.old"
  cp -a "$DEPLOY_DIR/releases/$release" "$DEPLOY_DIR/live.new"
  echo "$release" >"$DEPLOY_DIR/live.new/RELEASE"
  if [[ -d "$DEPLOY_DIR/live" ]]; then mv "$DEPLOY_DIR/live" "$DEPLOY_DIR/live.old"; fi
  mv "$DEPLOY_DIR/live.new" "$DEPLOY_DIR/live"
  rm -rf "$DEPLOY_DIR/live.old"
  node_compose live up -d --remove-orphans
}

node_drain() { # the live send worker takes no new task, finishes its own, stops (warm)
  node_compose live exec -T worker ops/entrypoint.sh drain worker ||
    echo "drain: the worker did not answer; stopping it (SIGTERM, warm shutdown) anyway"
  node_compose live stop worker
}

node_prune() { # keeps the live release and the KEEP_RELEASES newest others
  local current
  current=$(cat "$DEPLOY_DIR/live/RELEASE")
  cd "$DEPLOY_DIR/releases"
  find . -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\n' | sort -rn | cut -d' ' -f2 |
    { grep -vx "$current" || true; } | tail -n +"$((KEEP_RELEASES + 1))" | xargs -r rm -rf --
}

# --- One node ------------------------------------------------------------------------------

deploy_node() { # NAME ROLE TARGET ENV_FILE EXTRA
  local name=$1 role=$2 target=$3 env_file=$4 extra=$5
  local bundle release current current_tag
  local -a checks
  read -ra checks <<<"$(health_services_of "$role")"
  [[ -f "$env_file" ]] || die "$name: env file $env_file not found"
  bundle=$(build_bundle "$role" "$extra" "$env_file")
  release=$(bundle_digest "$bundle")

  if ((dry_run)); then
    say "$name ($target, $role): release $release = $IMAGE:$tag"
    say "  copy to $DEPLOY_DIR/releases/$release: $(cd "$bundle" && find . -type f ! -name TAG ! -name COMPOSE_FILES | sed 's#^\./##' | LC_ALL=C sort | tr '\n' ' ')"
    say "  $COMPOSE_CMD pull"
    [[ "$role" == worker ]] && say "  drain the running worker (stop consuming, finish in-flight sends), stop it (SIGTERM: warm shutdown)"
    say "  make it the live release ($DEPLOY_DIR/live), $COMPOSE_CMD up -d --remove-orphans"
    say "  wait up to ${HEALTH_TIMEOUT_SECONDS}s for health: ${checks[*]%%:*}; on failure go back to the previous release"
    rm -rf "$bundle"
    return 0
  fi

  local state
  state=$(remote "$target" node_current) || die "$name: cannot reach $target over SSH"
  read -r current current_tag <<<"$state"
  if [[ "$current" == "$release" ]] && remote "$target" node_health "${checks[@]}"; then
    say "$name: already runs release $release ($IMAGE:$tag) and is healthy: nothing to do"
    rm -rf "$bundle"
    return 0
  fi

  say "$name: release $release ($IMAGE:$tag), now running: $current ($current_tag)"
  # shellcheck disable=SC2086  # SSH_OPTS is a list of options
  tar -C "$bundle" -cf - . | ssh -o BatchMode=yes $SSH_OPTS "$target" \
    "mkdir -p $(printf '%q' "$DEPLOY_DIR/releases/$release") && tar -xf - -C $(printf '%q' "$DEPLOY_DIR/releases/$release")"
  rm -rf "$bundle"

  if ! remote "$target" node_compose "$release" pull; then
    die "$name: could not pull $IMAGE:$tag; nothing on $name was changed"
  fi
  if [[ "$role" == worker && "$current" != none && "$current" != "$release" ]]; then
    say "$name: draining the worker of release $current"
    remote "$target" node_drain
  fi
  say "$name: starting it; waiting up to ${HEALTH_TIMEOUT_SECONDS}s for ${checks[*]%%:*}"
  if remote "$target" node_switch "$release" &&
    remote "$target" node_wait_healthy "${checks[@]}"; then
    remote "$target" node_prune
    say "$name: healthy on $IMAGE:$tag"
    return 0
  fi

  if [[ "$current" == none || "$current" == "$release" ]]; then
    die "$name: $IMAGE:$tag did not come up healthy and there is no previous release to go back to"
  fi
  say "$name: $IMAGE:$tag did NOT come up healthy: rolling back to $current_tag (release $current)"
  if [[ "$role" == worker ]]; then
    remote "$target" node_compose live stop worker || true
  fi
  if remote "$target" node_switch "$current" &&
    remote "$target" node_wait_healthy "${checks[@]}"; then
    die "$name: rolled back to $current_tag, which is healthy; the deploy of $tag stopped here"
  fi
  die "$name: rolled back to $current_tag, which is NOT healthy either: look at the node now"
}

# --- The inventory, node 1 first ------------------------------------------------------------

declare -a lines=()
while read -r name role target env_file extra; do
  [[ -z "${name:-}" || "$name" == \#* ]] && continue
  if ((${#only[@]})) && [[ ! " ${only[*]} " == *" $name "* ]]; then
    continue
  fi
  lines+=("$name $role $target $env_file ${extra:-}")
done <"$inventory"
((${#lines[@]})) || die "no node to deploy (inventory $inventory, --only ${only[*]:-})"

((dry_run)) && say "dry run: nothing is changed"
for order in node1 worker; do
  for line in "${lines[@]}"; do
    read -r name role target env_file extra <<<"$line"
    [[ "$role" == "$order" ]] && deploy_node "$name" "$role" "$target" "$env_file" "${extra:-}"
  done
done
((dry_run)) || say "done: every node runs $IMAGE:$tag"
