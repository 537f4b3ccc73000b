#!/usr/bin/env bash
# The dispatch figure of issue 9: plan, write the run and submit ~100,000 jobs (South America's
# land chunks, 7 months) to the test Slurm cluster as held job arrays (`--detach`,
# `--sbatch-arg=--hold`: nothing runs), then cancel them. Prints wall time, jobs/s and peak
# memory (GNU time) for 1 month and 7 months, so the growth of memory with the job count shows.
# Needs the cluster of scripts/slurm.sh start.
#   scripts/bench-dispatch.sh            # release build
#   EOCUBE=target/debug/eocube scripts/bench-dispatch.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="${EOCUBE_BENCH_DIR:-$ROOT/target/eocube-bench}/dispatch"
if [ -z "${EOCUBE:-}" ]; then
    cargo build --release --quiet
    EOCUBE="$ROOT/target/release/eocube"
fi
command -v sbatch >/dev/null || { echo "no Slurm: run scripts/slurm.sh install && scripts/slurm.sh start" >&2; exit 1; }
rm -rf "$BENCH" && mkdir -p "$BENCH" && cd "$BENCH"
# No scene anywhere: dispatch does not read the catalog (the workers would).
echo '{"type": "FeatureCollection", "features": []}' >empty.json

run() { # label end
    local label="$1" end="$2" out="$BENCH/$1.zarr"
    /usr/bin/time -f "%e %M" -o time.txt "$EOCUBE" build --bbox -81.5 -56 -34.5 13 --start 2023-01-01 --end "$end" \
        --items empty.json --out "$out" --executor slurm --detach --sbatch-arg=--hold --quiet >submit.txt
    local wall kb jobs ids
    read -r wall kb <time.txt
    jobs=$(grep -o '[0-9]* jobs' submit.txt | head -1 | cut -d' ' -f1)
    ids=$(sed -n 's/.*as Slurm job(s) \([0-9, ]*\);.*/\1/p' submit.txt | tr -d ' ')
    local arrays
    arrays=$(echo "$ids" | tr ',' '\n' | grep -c .)
    scancel "${ids//,/ }" 2>/dev/null || scancel $(echo "$ids" | tr ',' ' ')
    local run_bytes
    run_bytes=$(du -sb "$out/_eocube/runs" | cut -f1)
    printf '%-8s %7d jobs  %6.2f s  %8.0f jobs/s  peak %6.1f MB  %2d arrays  run folder %5.1f MB\n' \
        "$label" "$jobs" "$wall" "$(echo "$jobs / $wall" | bc -l)" "$(echo "$kb / 1024" | bc -l)" "$arrays" \
        "$(echo "$run_bytes / 1000000" | bc -l)"
}

echo "dispatch to Slurm ($(sinfo -h -o %N), MaxArraySize $(scontrol show config | sed -n 's/^MaxArraySize *= *//p')), $EOCUBE"
run 1-month 2023-01-31
run 7-months 2023-07-31
