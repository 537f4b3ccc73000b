#!/usr/bin/env bash
# Tile latency of `eocube serve` (issue 11): p50 / p95 per tile for a 20-tile viewport (5 x 4
# tiles around the cube's centre), first (a fresh server: cold chunk cache) and repeated (the same
# viewport again), with and without a pyramid, on a cube whose chunk is full size (1200 x 1200).
#
#   scripts/bench-tiles.sh [CUBE]      # default: builds target/eocube-bench/tiles/cube.zarr
#
# The cube: one 1200 x 1200 chunk-month at 1/3600 degree from the synthetic archive (1098 px
# scenes, `eocube synth` + `eocube serve-archive`), built once. The pyramid rows need
# `eocube overviews` (helper P's, issue 11 part 1); without it they are reported as missing.
# EOCUBE_PROFILE=release|dev (default dev: dependencies at opt-level 3, eocube at 1; a release
# build takes about 20 minutes on 2 cores). The driver is scripts/bench_tiles.py (stdlib only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${EOCUBE_PROFILE:-dev}"
if [ "$PROFILE" = release ]; then
    cargo build --release --quiet --bin eocube
    EOCUBE="$ROOT/target/release/eocube"
else
    cargo build --quiet --bin eocube
    EOCUBE="$ROOT/target/debug/eocube"
fi
BENCH="${EOCUBE_BENCH_DIR:-$ROOT/target/eocube-bench}/tiles"
mkdir -p "$BENCH"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3
BBOX=(-72.2 44.5 -71.86666666666667 44.83333333333333)

CUBE="${1:-}"
if [ -z "$CUBE" ]; then
    CUBE="$BENCH/cube.zarr"
    if [ ! -f "$CUBE/zarr.json" ]; then
        if [ ! -f "$BENCH/archive/items.json" ]; then
            rm -rf "$BENCH/archive"
            "$EOCUBE" synth --out "$BENCH/archive" --bbox "${BBOX[@]}" --start 2023-06-01 --end 2023-06-25 --revisit-days 4
        fi
        LOG="$BENCH/archive.log"
        "$EOCUBE" serve-archive "$BENCH/archive" >"$LOG" 2>&1 &
        ARCHIVE=$!
        for _ in $(seq 100); do grep -q '^STAC API:' "$LOG" && break; sleep 0.1; done
        URL=$(sed -n 's/^STAC API: //p' "$LOG")
        [ -n "$URL" ] || { echo "serve-archive did not start:" >&2; cat "$LOG" >&2; kill "$ARCHIVE"; exit 1; }
        "$EOCUBE" build --stac-url "$URL" --bbox "${BBOX[@]}" --start 2023-06-01 --end 2023-06-30 \
            --out "$CUBE" --quiet || { kill "$ARCHIVE"; exit 1; }
        kill "$ARCHIVE" 2>/dev/null || true
    fi
fi

PYRAMID=""
if "$EOCUBE" overviews --help >/dev/null 2>&1; then
    PYRAMID="$BENCH/pyramid.zarr"
    if [ ! -d "$PYRAMID/pyramid" ]; then
        rm -rf "$PYRAMID"
        cp -r "$CUBE" "$PYRAMID"
        "$EOCUBE" overviews "$PYRAMID"
    fi
fi

"$PY" scripts/bench_tiles.py "$EOCUBE" "$CUBE" "$PYRAMID" "$PROFILE"
