#!/usr/bin/env bash
# Rebuild crates/eocube/assets/land-10m.bin (the embedded land mask) from Natural Earth 1:10m land as shipped by
# the npm package world-atlas. Run by a developer, never by the build: the asset is committed.
# Usage: scripts/build-landmask.sh [scratch-dir]   (default /tmp/landmask-work)
set -euo pipefail
VERSION=2.0.2
EXPECTED_SHA256=9b9f584709c119d63fbadf484ce425260497697b7166be7a2fe360e8c0b171a8  # land-10m.json
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/landmask-work}"
mkdir -p "$work"
(cd "$work" && npm install --no-save --no-audit --no-fund "world-atlas@${VERSION}" >/dev/null)
src="$work/node_modules/world-atlas/land-10m.json"
echo "${EXPECTED_SHA256}  ${src}" | sha256sum -c -
python3 "$repo/scripts/build_landmask.py" "$src" "$repo/crates/eocube/assets/land-10m.bin"
sha256sum "$repo/crates/eocube/assets/land-10m.bin"
