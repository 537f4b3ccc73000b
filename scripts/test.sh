#!/usr/bin/env bash
# THE test command of eocube (README, CI): installs what the tests need, generates the
# fixtures with real GDAL, starts nginx, moto, Azurite, a STAC API and a one-node Slurm
# cluster, then runs fmt, clippy and every test.
# Extra arguments go to `cargo test` (default `--workspace`), e.g.  scripts/test.sh --test infra
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export EOCUBE_FIXTURES="${EOCUBE_FIXTURES:-$ROOT/target/eocube-fixtures}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

T_ALL=$(date +%s)
step() { # name cmd...
    local name="$1" t0 rc=0
    shift
    echo "==> $name"
    t0=$(date +%s)
    "$@" || rc=$?
    echo "==> $name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - t0)) s"
    return $rc
}

step setup bash scripts/setup.sh
step fixtures .venv/bin/python scripts/fixtures.py
step e2e-fixtures .venv/bin/python scripts/e2e_fixtures.py
trap 'bash "$ROOT/scripts/servers.sh" stop || true; bash "$ROOT/scripts/stac-server.sh" stop || true; bash "$ROOT/scripts/slurm.sh" stop || true' EXIT
step servers bash scripts/servers.sh start
# shellcheck disable=SC1091
source "${EOCUBE_SERVERS_DIR:-$ROOT/target/eocube-servers}/env"
step stac-server bash scripts/stac-server.sh start
# shellcheck disable=SC1091
source "${EOCUBE_STAC_DIR:-$ROOT/target/eocube-stac}/env"

step slurm bash scripts/slurm.sh start
# shellcheck disable=SC1091
source "${EOCUBE_SLURM_DIR:-$ROOT/target/eocube-slurm}/env"

step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
# Every crate's tests (the library's unit tests, the test kit's, the CLI's end-to-end tests);
# arguments, e.g. `--test cog`, choose instead.
if [ $# -eq 0 ]; then set -- --workspace; fi
step "cargo test" cargo test "$@"
if [ "$*" = "--workspace" ]; then
    # The figures the issues ask to see: agreement with GDAL, request counts per window.
    # --workspace: the features of the build above, so nothing is compiled again.
    step "figures" cargo test -q --workspace --test warp --test cog -- --nocapture --test-threads 1 \
        warp_agrees_with_gdal one_chunk_window_costs_one_request_per_tile_row
fi
echo "==> all steps passed in $(($(date +%s) - T_ALL)) s"
