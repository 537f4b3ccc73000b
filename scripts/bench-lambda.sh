#!/usr/bin/env bash
# The spawn-rate figures of issue 10: `eocube build --executor lambda` against the local Lambda
# of the tests (tests/py/lambda_env.py: cargo-lambda's emulator, eocube instances as function
# `eocube`, a counting proxy). Two runs, each printing the invoker's own line (invocations/s):
#   noop  South America, one month: 14,697 tasks, answered at once by the proxy (`--noop`, no
#         function runs): the rate at which eocube plans, invokes, collects and records.
#   real  Vermont in 256 px chunks (924 tasks) with no scene for one month, run by 4 eocube instances as the function under
#         the emulated Runtime API: each invocation runs a real (empty) job.
# Needs scripts/setup.sh (venv with cargo-lambda).
#   scripts/bench-lambda.sh                        # debug build (the tests')
#   EOCUBE=target/release/eocube scripts/bench-lambda.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="${EOCUBE_BENCH_DIR:-$ROOT/target/eocube-bench}/lambda"
if [ -z "${EOCUBE:-}" ]; then
    cargo build --quiet --bin eocube
    EOCUBE="$ROOT/target/debug/eocube"
fi
rm -rf "$BENCH" && mkdir -p "$BENCH"
echo '{"type": "FeatureCollection", "features": []}' >"$BENCH/empty.json"

run() { # label instances max-parallel bbox... -- lambda_env options
    local label="$1" instances="$2" parallel="$3" w="$4" s="$5" e="$6" n="$7"
    shift 7
    local dir="$BENCH/$label"
    mkdir -p "$dir"
    mkfifo "$dir/stdin"
    .venv/bin/python tests/py/lambda_env.py "$EOCUBE" "$instances" "$dir/state.json" "$@" <"$dir/stdin" &
    exec 3>"$dir/stdin"
    for _ in $(seq 300); do [ -f "$dir/state.json" ] && break; sleep 0.2; done
    local invoke
    invoke=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["invoke"])' "$dir/state.json")
    /usr/bin/time -f "%e %M" -o "$dir/time.txt" env AWS_ENDPOINT_URL_LAMBDA="$invoke" AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
        "$EOCUBE" build --bbox "$w" "$s" "$e" "$n" --start 2023-01-01 --end 2023-01-31 --items "$BENCH/empty.json" \
        --out "$dir/cube.zarr" --executor lambda --function eocube --max-parallel "$parallel" ${BUILD_EXTRA:-} --quiet \
        >"$dir/stdout.txt" 2>"$dir/stderr.txt" || true
    exec 3>&-
    wait || true
    local wall kb
    read -r wall kb < <(tail -1 "$dir/time.txt")
    printf '%-5s %s\n      build wall %.1f s, peak %.1f MB (%s instances, --max-parallel %s)\n' "$label" \
        "$(grep '^lambda:' "$dir/stdout.txt" || echo "no invoker line: see $dir/stderr.txt")" \
        "$wall" "$(echo "$kb / 1024" | bc -l)" "$instances" "$parallel"
}

echo "eocube --executor lambda against the local Lambda ($EOCUBE)"
run noop 0 500 -81.5 -56 -34.5 13 --noop
BUILD_EXTRA="--chunk-size 256" run real 4 8 -73.43 42.72 -71.47 45.02
