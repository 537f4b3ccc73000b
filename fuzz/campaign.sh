#!/usr/bin/env bash
# A fuzz campaign on the stable toolchain (docs/fuzzing.md):
#   fuzz/campaign.sh [--runs N] [--work DIR] [TARGET...]     (default: every target, 10 000 000 runs)
# Builds the targets with cargo-fuzz (RUSTC_BOOTSTRAP=1, no sanitizer, coverage only on the
# crates that parse the input: instrument.sh), then runs each target for N executions from
# corpus/<target> and its dictionary, new inputs going to DIR/<target> (default
# target-lean/work), crashes to DIR/<target>/artifacts/. Prints libFuzzer's final stats.
# Waits while /work/QUIET exists (the shared benchmark machine) and runs under nice.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
runs=10000000
work=target-lean/work
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(cog_header stac_item stac_page spec_toml out_location)
quiet() { while [ -e /work/QUIET ]; do sleep 20; done; }
export RUSTC_BOOTSTRAP=1 RUSTC_WRAPPER="$PWD/instrument.sh" CARGO_TARGET_DIR="$PWD/target-lean"
quiet
nice -n 10 cargo fuzz build --sanitizer none
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
for t in "${targets[@]}"; do
    case "$t" in
        cog_header) dict=tiff ;;
        stac_item | stac_page) dict=stac ;;
        spec_toml) dict=toml ;;
        out_location) dict=location ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    mkdir -p "$work/$t/artifacts"
    quiet
    echo "== $t: $runs runs, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    nice -n 10 "$bin/$t" "$work/$t" "corpus/$t" -dict="dict/$dict.dict" -runs="$runs" \
        -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 2>&1 |
        grep -E '^stat::|^Done|ERROR|panicked|SUMMARY|^==[0-9]+==|artifact' || true
done
