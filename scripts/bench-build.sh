#!/usr/bin/env bash
# The speed figure of issue #3: one 1200 x 1200 chunk-month at 1/3600 degree built from full-size
# synthetic Sentinel-2 scenes (10980 px, 1024 px tiles; 2 tiles per pass, one in UTM zone 18 and
# one in 19; a pass every 2 days from June 1 to 25 = 13 solar days, 26 scenes), served over HTTP
# from 127.0.0.1 by `eocube serve-archive` (STAC API + range requests).
#
# Prints wall time and peak memory of the build (GNU time) and the per-job timings of the run
# report. The archive (~1 GB) is generated once into target/eocube-bench/archive.
#   scripts/bench-build.sh                 # bilinear, default mask
#   scripts/bench-build.sh --resampling nearest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=lib.sh
source scripts/lib.sh

BENCH="${EOCUBE_BENCH_DIR:-$ROOT/target/eocube-bench}"
ARCHIVE="$BENCH/archive"
EOCUBE="$ROOT/target/release/eocube"
# One chunk: 1/3 degree square, west of and across -72 (zones 18/19), inside one tile row.
BBOX=(-72.2 44.5 -71.86666666666667 44.83333333333333)

cargo build --release --quiet
if [ ! -f "$ARCHIVE/items.json" ]; then
    rm -rf "$ARCHIVE"
    /usr/bin/time -f "synth: %e s wall, %M KB peak" "$EOCUBE" synth --out "$ARCHIVE" --bbox "${BBOX[@]}" \
        --start 2023-06-01 --end 2023-06-25 --scene-px 10980 --revisit-days 2
fi

LOG="$BENCH/serve.log"
"$EOCUBE" serve-archive "$ARCHIVE" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q '^STAC API:' "$LOG" && break
    sleep 0.1
done
URL=$(sed -n 's/^STAC API: //p' "$LOG")
[ -n "$URL" ] || { echo "serve-archive did not start:" >&2; cat "$LOG" >&2; exit 1; }

OUT="$BENCH/cube.zarr"
rm -rf "$OUT"
/usr/bin/time -f "build: %e s wall, %U s user, %S s sys, %M KB peak RSS" "$EOCUBE" build --stac-url "$URL" \
    --bbox "${BBOX[@]}" --start 2023-06-01 --end 2023-06-30 --out "$OUT" --quiet "$@"

# Per-job figures from the run report.
python3 - "$OUT/_eocube" <<'EOF'
import glob, json, os, sys
paths = glob.glob(os.path.join(sys.argv[1], "report.jsonl")) + sorted(glob.glob(os.path.join(sys.argv[1], "report", "*.jsonl")))
for line in (l for p in paths for l in open(p) if l.strip()):
    r = json.loads(line)
    print(f"job {r['job']}: {r['outcome']}, {r['scenes_found']} scenes found, {r['scenes']} used, "
          f"{r['solar_days']} solar days, {r['bytes'] / 1e6:.1f} MB in {r['requests']} requests; "
          f"{r['seconds']:.2f} s = search {r['search_seconds']:.2f} + read/decode/warp/fuse {r['read_seconds']:.2f} "
          f"+ median {r['reduce_seconds']:.2f} + write {r['write_seconds']:.2f}")
EOF
