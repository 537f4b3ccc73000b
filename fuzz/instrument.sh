#!/usr/bin/env bash
# RUSTC_WRAPPER for `cargo fuzz` (docs/fuzzing.md): keeps libFuzzer's coverage instrumentation on
# the crates that parse the fuzzed bytes (eocube, the targets, serde_json, toml, url, chrono) and
# drops it everywhere else. eocube links its HTTP/TLS, object-store and Zarr stacks into every
# target (static registrations keep them alive), and libFuzzer scans every counter after every
# run: with all crates instrumented that is about 220 000 counters and most of the CPU time.
# Usage: RUSTC_WRAPPER=$PWD/instrument.sh CARGO_TARGET_DIR=target-lean cargo fuzz build ...
set -euo pipefail
rustc="$1"
shift
crate=""
prev=""
for a in "$@"; do
    [ "$prev" = "--crate-name" ] && crate="$a"
    prev="$a"
done
case "$crate" in
    eocube | eocube_fuzz | cog_header | stac_item | stac_page | spec_toml | out_location | \
        serde_json | toml | toml_parser | url | chrono | "")
        exec "$rustc" "$@"
        ;;
esac
args=()
for a in "$@"; do
    case "$a" in
        -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*) ;;
        *) args+=("$a") ;;
    esac
done
exec "$rustc" "${args[@]}"
