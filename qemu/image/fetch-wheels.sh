#!/usr/bin/env bash
# Fetch the guest's pinned pure-python wheels with the host's pip.
# Usage: fetch-wheels.sh REQUIREMENTS CACHE_DIR DEST_DIR
# Wheels are kept in CACHE_DIR across builds: pip is asked only for what is missing there,
# so a rebuild needs no index at all once every pinned wheel has been fetched.
set -euo pipefail
reqs=$1
cache=$2
dest=$3
mkdir -p "$cache" "$dest"

# "name==version" lines of the requirements, comments and blanks dropped.
pins() {
  while IFS= read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [ -z "$line" ] || echo "$line"
  done <"$reqs"
}

# The cached wheel for one pin; wheel names use '_' for '-' and any case.
cached_wheel() {
  local name=${1%%==*} version=${1#*==}
  find "$cache" -maxdepth 1 -iname "${name//-/_}-${version}-*.whl" | head -n1
}

missing=()
while IFS= read -r pin; do
  [ -n "$(cached_wheel "$pin")" ] || missing+=("$pin")
done < <(pins)

if ((${#missing[@]})); then
  # --only-binary + a target interpreter that is not the host's: pip picks wheels for the
  # guest's Debian python3.11; --no-deps because the requirements pin every dependency.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --platform manylinux2014_x86_64 \
    --dest "$cache" "${missing[@]}" 2>&1 | { grep -v 'is neither a file nor a directory' || true; } >&2
fi

while IFS= read -r pin; do
  wheel=$(cached_wheel "$pin")
  [ -n "$wheel" ] || { echo "fetch-wheels: no wheel for $pin in $cache" >&2; exit 1; }
  cp "$wheel" "$dest/"
done < <(pins)
