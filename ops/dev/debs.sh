#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing (`make test` on a fresh
# machine). ops/dev/debs.txt lists one "command package" pair per line: the package is
# installed only when its command is not found, so a machine that has them is not touched.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
while read -r command package; do
  [[ -z "${command}" || "${command}" == \#* ]] && continue
  command -v "${command}" >/dev/null 2>&1 || [[ -x "${command}" ]] || missing+=("${package}")
done < debs.txt
((${#missing[@]} == 0)) && exit 0
echo "debs: installing ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
  echo "debs: not root; install these packages first: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
