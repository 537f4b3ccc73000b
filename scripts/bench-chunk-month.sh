#!/usr/bin/env bash
# The chunk-month benchmark of issue 12: eocube side by side with an odc-stac reference that
# computes the same job the way the original demo did (scripts/bench_odc.py, its own venv).
#
#   scripts/bench-chunk-month.sh              # one 1200 x 1200 chunk x June 2023, 3 alternated rounds
#   scripts/bench-chunk-month.sh --runs 1
#   scripts/bench-chunk-month.sh --whole      # 2 x 2 chunks x June-August 2023 = 12 jobs (default 1 round)
#   scripts/bench-chunk-month.sh --texture sensor   # the same scenes, compressing like real ones
#
# The archive: full-size synthetic Sentinel-2 scenes (`eocube synth`, 10980 px; 2 tiles per pass,
# UTM zones 18 and 19), re-encoded by GDAL's COG driver (scripts/bench_archive.py: DEFLATE +
# PREDICTOR=2, 1024 px blocks, AVERAGE / MODE overviews), made once into target/eocube-bench/
# and served by our own nginx on 127.0.0.1. `--texture sensor` adds noise to the reflectance
# before GDAL writes it, so that its tiles compress about 1.4:1 like Earth Search's (the smooth
# surfaces compress about 50:1 and inflate nearly for free); its archive and results are kept
# apart (*-sensor). Each round runs, one after the other:
#   eocube-nearest  eocube build --resampling nearest (default mask)
#   odc-nearest     odc.stac.load nearest, valid SCL {2,4,5,6,7,11}, median: the same computation
#   eocube-seed     eocube build --mask seed --resampling bilinear (the demo's algorithm)
#   odc-demo        the demo's job: bilinear load, SCL {4,5}, mask_cleanup closing 5 + opening 5, median
# and measures wall, CPU, peak RSS (GNU time), requests and bytes (nginx's access log), the eocube
# run report, and the inflate floor of each eocube run (cargo bench --bench inflate_floor).
# Prints a table of medians and writes it to target/eocube-bench/{chunk-month,whole}.md.
# docs/bench.md explains the rows and has the figures.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

RUNS=""
WHOLE=0
TEXTURE=smooth
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) [ $# -ge 2 ] || die "--runs needs a number"; RUNS="$2"; shift 2 ;;
        --runs=*) RUNS="${1#--runs=}"; shift ;;
        --whole) WHOLE=1; shift ;;
        --texture) [ $# -ge 2 ] || die "--texture needs smooth or sensor"; TEXTURE="$2"; shift 2 ;;
        --texture=*) TEXTURE="${1#--texture=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
if [ -z "$RUNS" ]; then if [ "$WHOLE" = 1 ]; then RUNS=1; else RUNS=3; fi; fi
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a whole number >= 1, not '$RUNS'"
case "$TEXTURE" in smooth | sensor) ;; *) die "--texture must be smooth or sensor, not '$TEXTURE'" ;; esac

BENCH="${EOCUBE_BENCH_DIR:-$ROOT/target/eocube-bench}"
EOCUBE="${CARGO_TARGET_DIR:-$ROOT/target}/release/eocube"
PY="$ROOT/.venv/bin/python"
BENCH_VENV="$ROOT/.venv-bench"
BPY="$BENCH_VENV/bin/python"
GNU_TIME=/usr/bin/time

if [ "$WHOLE" = 1 ]; then
    NAME=whole
    # 2 x 2 chunks (2/3 degree), inside one tile of zone 18 and one of zone 19 for every pass
    BBOX=(-72.25 44.4 -71.58333333333333 45.06666666666667)
    START=2023-06-01 END=2023-08-31 REVISIT=6
    SYNTH="$BENCH/whole-synth"
else
    NAME=chunk-month
    # one chunk: 1/3 degree across -72 (zones 18/19), as scripts/bench-build.sh
    BBOX=(-72.2 44.5 -71.86666666666667 44.83333333333333)
    START=2023-06-01 END=2023-06-30 REVISIT=2
    SYNTH="$BENCH/archive" # the same archive as scripts/bench-build.sh (shared, kept)
fi
SYNTH_END=$([ "$WHOLE" = 1 ] && echo 2023-08-31 || echo 2023-06-25)
SUFFIX=""
[ "$TEXTURE" = sensor ] && SUFFIX=-sensor
ARCHIVE="$BENCH/$NAME-gdal$SUFFIX"
WORK="$BENCH/$NAME$SUFFIX"

# ---------------------------------------------------------------- prerequisites
if [ ! -x "$PY" ]; then
    log ".venv missing: running scripts/setup.sh"
    bash scripts/setup.sh || die "scripts/setup.sh failed (it installs nginx and .venv)"
fi
[ -x "$PY" ] || die "no $PY after scripts/setup.sh"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || die "nginx missing: run scripts/setup.sh (it installs Debian's nginx-light)"
if ! "$GNU_TIME" -f %e true >/dev/null 2>&1; then
    log "GNU time missing: apt-get install time"
    SUDO=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
    { $SUDO apt-get update -q && $SUDO apt-get install -y -q time; } </dev/null >&2 \
        || die "could not install GNU time (package 'time')"
fi
# shellcheck source=lib.sh
source scripts/lib.sh

mkdir -p "$BENCH"
free_gb() { df -Pk "$BENCH" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
need_gb() { # GB why
    local have
    have="$(free_gb)"
    [ "$have" -ge "$1" ] || die "only $have GB free under $BENCH, $2 needs about $1 GB (df -h $BENCH)"
}

log "cargo build --release"
cargo build --release --quiet || die "cargo build --release failed"
[ -x "$EOCUBE" ] || die "no $EOCUBE after cargo build --release"
# the revision measured (this work tree may be shared: say what was uncommitted when it was built)
DIRTY="$(git status --porcelain -- crates src Cargo.toml Cargo.lock 2>/dev/null | wc -l)"
REV="eocube $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "$DIRTY" -gt 0 ]; then REV="$REV + $DIRTY uncommitted files under crates/ src/"; fi
# a private copy: others' builds in this work tree may replace target/release/eocube mid-run
mkdir -p "$BENCH/bin"
cp "$EOCUBE" "$BENCH/bin/eocube"
EOCUBE="$BENCH/bin/eocube"

# ---------------------------------------------------------------- the archive (made once)
if [ ! -f "$ARCHIVE/items.json" ]; then
    # the sensor texture's files are about 15 times larger (their tiles compress 1.4:1, not 50:1)
    if [ "$TEXTURE" = sensor ]; then need_gb 14 "making the archive (eocube synth, then its textured GDAL copy)"
    else need_gb 6 "making the archive (eocube synth, then its GDAL copy)"; fi
    t0=$SECONDS
    if [ ! -f "$SYNTH/items.json" ]; then
        rm -rf "$SYNTH"
        log "eocube synth into $SYNTH"
        "$GNU_TIME" -f "%e" -o "$BENCH/$NAME-synth.time" "$EOCUBE" synth --out "$SYNTH" --bbox "${BBOX[@]}" \
            --start "$START" --end "$SYNTH_END" --scene-px 10980 --revisit-days "$REVISIT" >&2 \
            || die "eocube synth failed"
        synth_s="$(cat "$BENCH/$NAME-synth.time") s"
    else
        synth_s="reused (made earlier$([ -f "$BENCH/$NAME-synth.time" ] && echo ", in $(cat "$BENCH/$NAME-synth.time") s"))"
        log "reusing the synth archive in $SYNTH"
    fi
    log "re-encoding every .tif with GDAL (scripts/bench_archive.py)"
    "$GNU_TIME" -f "%e" -o "$BENCH/$NAME-gdal$SUFFIX.time" "$PY" scripts/bench_archive.py "$SYNTH" "$ARCHIVE" \
        --texture "$TEXTURE" >&2 \
        || die "the GDAL re-encode failed (scripts/bench_archive.py)"
    gdal_s="$(cat "$BENCH/$NAME-gdal$SUFFIX.time")"
    synth_mb="$(du -sm "$SYNTH" | cut -f1)"
    gdal_mb="$(du -sm "$ARCHIVE" | cut -f1)"
    scenes="$(ls "$ARCHIVE/sentinel-2-c1-l2a" | wc -l)"
    echo "archive: $scenes scenes, texture $TEXTURE; eocube synth ${synth_s} ($synth_mb MB), GDAL re-encode ${gdal_s} s ($gdal_mb MB), generation $((SECONDS - t0)) s in all" \
        | tee "$ARCHIVE/generation.txt" >&2
    # the synth copy is only an intermediate; drop it when disk is short (the chunk-month one is
    # scripts/bench-build.sh's archive too, so it is kept otherwise)
    if [ "$(free_gb)" -lt 10 ] || [ "$WHOLE" = 1 ]; then
        log "removing the intermediate synth archive $SYNTH"
        rm -rf "$SYNTH"
    fi
else
    log "reusing the GDAL archive in $ARCHIVE"
    [ -f "$ARCHIVE/generation.txt" ] && cat "$ARCHIVE/generation.txt" >&2
fi
GENERATION="$(cat "$ARCHIVE/generation.txt" 2>/dev/null || echo "archive: generation time not recorded")"
need_gb 1 "the cubes and logs of the runs"

# ---------------------------------------------------------------- the odc-stac venv
check_bench_venv() {
    [ -x "$BPY" ] && "$BPY" -c 'import odc.stac, odc.geo, pystac, rasterio, dask, numpy, xarray, skimage' >/dev/null 2>&1
}
if ! check_bench_venv; then
    log "creating $BENCH_VENV (odc-stac, odc-algo, pystac, rasterio, scikit-image)"
    [ -x "$BPY" ] || python3 -m venv "$BENCH_VENV" || die "python3 -m venv $BENCH_VENV failed (apt-get install python3-venv?)"
    "$BPY" -m pip install -q --disable-pip-version-check \
        "odc-stac>=0.5,<0.6" "odc-geo>=0.5,<0.6" "odc-loader>=0.6,<0.7" "pystac>=1.10,<2" \
        "rasterio>=1.4,<1.6" "numpy>=1.26,<3" "xarray>=2024.1" "dask>=2024.1" \
        "scikit-image>=0.24,<1" "scipy>=1.11,<2" </dev/null >&2 \
        || die "pip install into $BENCH_VENV failed (odc-stac and friends)"
    "$BPY" -m pip install -q --disable-pip-version-check "odc-algo>=1.0,<2" </dev/null >&2 \
        || log "odc-algo did not install: bench_odc.py uses scikit-image's closing/opening with disk(5) instead"
    check_bench_venv || die "$BENCH_VENV is still not usable (import odc.stac failed)"
fi

# ---------------------------------------------------------------- nginx
NGX="$BENCH/nginx"
stop_nginx() { stop_pid nginx "$NGX/nginx.pid"; }
trap stop_nginx EXIT
trap 'exit 130' INT TERM
stop_nginx
mkdir -p "$NGX/tmp"
: >"$NGX/access.log"
PORT="$(free_port)"
user_line=""
if [ "$(id -u)" -eq 0 ]; then user_line="user root;"; fi
sed -e "s|@DIR@|$NGX|g" -e "s|@ROOT@|$ARCHIVE|g" -e "s|@PORT@|$PORT|g" -e "s|@USER_LINE@|$user_line|" \
    scripts/nginx.conf.in >"$NGX/nginx.conf"
"$NGINX" -p "$NGX" -e "$NGX/nginx-error.log" -c "$NGX/nginx.conf" </dev/null \
    || { cat "$NGX/nginx-error.log" >&2 || true; die "nginx did not start"; }
URL="http://127.0.0.1:$PORT"
"$PY" - "$URL/items.json" <<'EOF' || die "nginx does not answer at $URL"
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=2).read(16)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
log "nginx serves $ARCHIVE on $URL"
mkdir -p "$WORK/logs"
ITEMS="$WORK/items-http.json"
"$PY" scripts/bench_chunk_month.py items "$ARCHIVE/items.json" "$URL/" "$ITEMS"

# ---------------------------------------------------------------- the inflate floor (optional)
# Built once here and run directly, so every run of this benchmark uses the same bench binary
# even while crates/ changes under it (cargo bench would rebuild it between runs).
FLOOR_BIN=""
if cargo bench -p eocube --bench inflate_floor --no-run --message-format=json \
    >"$WORK/inflate-floor-build.json" 2>"$WORK/inflate-floor-build.log"; then
    FLOOR_BIN="$("$PY" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "inflate_floor" and m.get("executable"):
        print(m["executable"])
' <"$WORK/inflate-floor-build.json" | tail -n1)"
    if [ -n "$FLOOR_BIN" ]; then cp "$FLOOR_BIN" "$BENCH/bin/inflate_floor" && FLOOR_BIN="$BENCH/bin/inflate_floor"; fi
fi
if [ -z "$FLOOR_BIN" ]; then
    log "no inflate floor: 'cargo bench -p eocube --bench inflate_floor' does not build here yet" \
        "(see $WORK/inflate-floor-build.log: $(grep -m1 -E '^error' "$WORK/inflate-floor-build.log" || tail -n1 "$WORK/inflate-floor-build.log"))"
fi

# ---------------------------------------------------------------- the runs
RUNS_FILE="$WORK/runs.jsonl"
: >"$RUNS_FILE"
run_variant() { # variant round
    local v="$1" i="$2" n0 slice tfile out floor_args=() cube_args=() odc_args=()
    tfile="$WORK/logs/$v-$i.time"
    slice="$WORK/logs/$v-$i.access.log"
    n0="$(wc -l <"$NGX/access.log")"
    case "$v" in
        eocube-nearest | eocube-seed)
            out="$WORK/$v.zarr"
            rm -rf "$out"
            local flags=(--resampling nearest)
            [ "$v" = eocube-seed ] && flags=(--mask seed --resampling bilinear)
            "$GNU_TIME" -f "%e %U %S %M" -o "$tfile" "$EOCUBE" build --items "$ITEMS" --bbox "${BBOX[@]}" \
                --start "$START" --end "$END" "${flags[@]}" --out "$out" --quiet >"$WORK/logs/$v-$i.stdout" \
                || die "$v round $i failed: eocube build exited non-zero"
            cube_args=(--cube "$out")
            ;;
        odc-nearest | odc-demo)
            out="$WORK/$v.npy"
            "$GNU_TIME" -f "%e %U %S %M" -o "$tfile" "$BPY" scripts/bench_odc.py --items "$ITEMS" --bbox "${BBOX[@]}" \
                --start "$START" --end "$END" --mode "${v#odc-}" --out "$out" 2>"$WORK/logs/$v-$i.stderr" >/dev/null \
                || { tail -n 20 "$WORK/logs/$v-$i.stderr" >&2; die "$v round $i failed: scripts/bench_odc.py exited non-zero"; }
            odc_args=(--odc "${out%.npy}.json")
            ;;
    esac
    tail -n "+$((n0 + 1))" "$NGX/access.log" >"$slice"
    if [ -n "$FLOOR_BIN" ] && [[ "$v" == eocube-* ]]; then
        # Two floors: every tile inside the ranges received, and only the tiles the job decodes
        # (its chunks grown by the mask halo, windows by the resampling margin).
        local margin=1 halo=0
        [ "$v" = eocube-seed ] && { margin=2; halo=20; }
        if "$FLOOR_BIN" "$slice" "$ARCHIVE" \
            >"$WORK/logs/$v-$i.floor" 2>"$WORK/logs/$v-$i.floor.stderr"; then
            floor_args=(--floor "$WORK/logs/$v-$i.floor")
        else
            log "inflate floor failed for $v round $i (see $WORK/logs/$v-$i.floor.stderr)"
        fi
        if "$FLOOR_BIN" "$slice" "$ARCHIVE" --grid "${BBOX[@]}" --chunk-size 1200 --margin "$margin" --halo "$halo" \
            >"$WORK/logs/$v-$i.floor-decoded" 2>"$WORK/logs/$v-$i.floor-decoded.stderr"; then
            floor_args+=(--floor-decoded "$WORK/logs/$v-$i.floor-decoded")
        else
            log "inflate floor (decoded tiles) failed for $v round $i (see $WORK/logs/$v-$i.floor-decoded.stderr)"
        fi
    fi
    "$PY" scripts/bench_chunk_month.py record --variant "$v" --round "$i" --time "$tfile" --log "$slice" \
        "${cube_args[@]}" "${odc_args[@]}" "${floor_args[@]}" >>"$RUNS_FILE"
}

# ---------------------------------------------------------------- the page cache
# The table says the archive is in the page cache: put it there. Right after the archive is made,
# or after other work, part of it is on disk only, and the first variant of round 1 would wait
# for the disk on ranges the others then read from memory (a whole build's 1.8 GB, one round).
CACHE_NOTE="archive in the page cache"
archive_mb="$(du -sm --apparent-size "$ARCHIVE" | cut -f1)"
avail_mb="$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)"
if [ "$archive_mb" -le $((avail_mb * 8 / 10)) ]; then
    t0=$SECONDS
    find "$ARCHIVE" -name '*.tif' -print0 | xargs -0 -r cat >/dev/null || die "cannot read the archive $ARCHIVE"
    log "read the archive ($archive_mb MB) into the page cache in $((SECONDS - t0)) s"
else
    CACHE_NOTE="archive ($archive_mb MB) larger than 80 % of the memory available ($avail_mb MB): round 1 may wait for the disk, use --runs 3"
    log "$CACHE_NOTE"
fi

VARIANTS=(eocube-nearest odc-nearest eocube-seed odc-demo)
log "$RUNS round(s) of ${VARIANTS[*]} on $NAME (bbox ${BBOX[*]}, $START .. $END)"
for i in $(seq 1 "$RUNS"); do
    for v in "${VARIANTS[@]}"; do run_variant "$v" "$i"; done
done

# ---------------------------------------------------------------- agreement and the table
AGREE="$WORK/agreement.txt"
{
    "$PY" scripts/bench_chunk_month.py agree "$WORK/eocube-nearest.zarr" "$WORK/odc-nearest.npy" --tol 0 \
        --label "agreement, eocube nearest vs odc-stac nearest"
    "$PY" scripts/bench_chunk_month.py agree "$WORK/eocube-seed.zarr" "$WORK/odc-demo.npy" --tol 3 \
        --label "agreement, eocube seed-bilinear vs odc-stac demo"
} >"$AGREE" || log "the agreement check failed (not an assertion; see above)"

MACHINE="$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GB; $(uname -sr)"
echo
MDARGS=(--title "$NAME$SUFFIX: bbox ${BBOX[*]}, $START .. $END, $(date -u +%Y-%m-%d)" --note "$GENERATION" --note "machine: $MACHINE; nginx on 127.0.0.1, $CACHE_NOTE; $REV; $("$BPY" -c 'import odc.stac; print("odc-stac", odc.stac.__version__)')")
[ "$WHOLE" = 1 ] && MDARGS+=(--whole)
"$PY" scripts/bench_chunk_month.py table "$RUNS_FILE" --md "$BENCH/$NAME$SUFFIX.md" --agree "$AGREE" "${MDARGS[@]}"
log "table written to $BENCH/$NAME$SUFFIX.md; raw runs in $RUNS_FILE"
