#!/usr/bin/env bash
# The reader stacks of tests/readers.rs that cannot live in .venv (they pin other versions of
# zarr, numpy and xarray): one venv each under .venv-readers/ (gitignored). Called by setup.sh;
# idempotent and quick when done (each venv is checked by importing it).
#
#   .venv-readers/zarr2      zarr-python 2.17 + numcodecs 0.12 + xarray 2024.6 + rioxarray 0.15, numpy 1.26
#                            (the 2024 stack: Python 3.11, the project's python3)
#   .venv-readers/py312      icechunk-python 2.x + zarr-python 3 + xarray, and rasterio 1.5 (GDAL 3.12):
#                            both need Python >= 3.12
#
# zarr-python 3, GDAL (rasterio) and icechunk-python 1.x are the main .venv's.
#
# Python >= 3.12 is looked for as $EOCUBE_PYTHON312, python3.13 / python3.12 on PATH, then in
# pyenv's versions (`pyenv root`, ~/.pyenv). Debian 12 has no such package. If none is found,
# .venv-readers/py312.unavailable says why and tests/readers.rs skips its stacks, printing it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.venv-readers"
mkdir -p "$DIR"
PIP_FLAGS=(-q --disable-pip-version-check)

# make_venv NAME PYTHON CHECK_SCRIPT PACKAGES...
make_venv() {
    local name="$1" python="$2" check="$3"
    shift 3
    local venv="$DIR/$name"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
        echo "setup: .venv-readers/$name ready"
        return 0
    fi
    echo "setup: creating .venv-readers/$name with $("$python" --version 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install "${PIP_FLAGS[@]}" "$@" </dev/null
    "$venv/bin/python" -c "$check" || { echo "setup: .venv-readers/$name is still not usable" >&2; return 1; }
    echo "setup: .venv-readers/$name ready"
}

# 1. The 2024 stack. numpy < 2: numcodecs 0.12 is built against numpy 1.x.
make_venv zarr2 "${PYTHON:-python3}" '
import zarr, numcodecs, xarray, rioxarray, numpy
assert zarr.__version__.startswith("2.17."), zarr.__version__
assert numcodecs.__version__.startswith("0.12."), numcodecs.__version__
assert xarray.__version__.startswith("2024.6"), xarray.__version__
' \
    "zarr==2.17.2" "numcodecs==0.12.1" "numpy==1.26.4" "xarray==2024.6.0" "pandas==2.2.2" \
    "rioxarray==0.15.5" "rasterio==1.3.10"

# 2. icechunk-python 2.x and GDAL 3.12 (rasterio 1.5) on Python >= 3.12
find_python312() {
    local c
    local -a candidates=()
    [ -n "${EOCUBE_PYTHON312:-}" ] && candidates+=("$EOCUBE_PYTHON312")
    candidates+=(python3.13 python3.12)
    local roots=()
    if command -v pyenv >/dev/null 2>&1; then roots+=("$(pyenv root 2>/dev/null || true)"); fi
    roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
    for r in "${roots[@]}"; do
        [ -n "$r" ] || continue
        for c in "$r"/versions/3.1[2-9]*/bin/python3; do [ -x "$c" ] && candidates+=("$c"); done
    done
    for c in "${candidates[@]}"; do
        # A pyenv shim exists on PATH even when its version is not installed: ask the interpreter.
        if command -v "$c" >/dev/null 2>&1 \
            && "$c" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}
UNAVAILABLE="$DIR/py312.unavailable"
PY312_CHECK='
import icechunk, zarr, xarray, rioxarray, rasterio
assert icechunk.__version__.startswith("2."), icechunk.__version__
assert zarr.__version__.startswith("3."), zarr.__version__
assert rasterio.__version__.startswith("1.5."), rasterio.__version__
'
if [ -x "$DIR/py312/bin/python" ] && "$DIR/py312/bin/python" -c "$PY312_CHECK" >/dev/null 2>&1; then
    rm -f "$UNAVAILABLE"
    echo "setup: .venv-readers/py312 ready"
elif PY312="$(find_python312)"; then
    rm -f "$UNAVAILABLE"
    make_venv py312 "$PY312" "$PY312_CHECK" \
        "icechunk==2.3.0" "zarr==3.4.2" "xarray==2026.9.0" "rioxarray==0.23.0" "rasterio==1.5.2" "numpy>=2,<3"
else
    msg="no Python >= 3.12 found (looked at \$EOCUBE_PYTHON312, python3.13 and python3.12 on PATH, and pyenv's versions under ${PYENV_ROOT:-$HOME/.pyenv}); icechunk-python 2.x and rasterio 1.5 (GDAL 3.12) need one. Install one (e.g. pyenv install 3.12) or point EOCUBE_PYTHON312 at it, then rerun scripts/setup.sh"
    echo "$msg" >"$UNAVAILABLE"
    echo "setup: .venv-readers/py312 skipped: $msg" >&2
fi
