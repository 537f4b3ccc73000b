#!/usr/bin/env bash
# Install what the test suite needs: Debian's nginx (range-capable HTTP server),
# a Python venv with rasterio (bundles GDAL) + moto (S3 server) + cargo-lambda (the Lambda
# emulator, a binary wheel), Azurite (Azure Blob emulator, npm, into .tools/), Slurm + munge,
# headless Chromium + playwright-core (npm, into .tools/), and the Rust components used by
# scripts/test.sh. Idempotent and quick when already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi

# 1. nginx (nginx-light is enough: static files + ranges)
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "setup: installing nginx-light"
    $SUDO apt-get update -q </dev/null
    $SUDO apt-get install -y -q --no-install-recommends nginx-light </dev/null
    # Debian's package may start a system nginx on :80; the tests run their own instance.
    if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop nginx >/dev/null 2>&1 || true; fi
else
    echo "setup: nginx present"
fi

# 2. Python venv with GDAL (rasterio wheel) and moto
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
check_py() {
    [ -x "$PY" ] && [ -x "$VENV/bin/cargo-lambda" ] && "$PY" - <<'PYEOF' >/dev/null 2>&1
import rasterio, numpy, boto3, moto, moto.server, xarray, zarr, rioxarray, s3fs, adlfs  # noqa: F401
assert rasterio.__version__.startswith("1.4"), rasterio.__version__
import icechunk, PIL, jsonschema, referencing  # noqa: F401
assert icechunk.__version__.startswith("1.1."), icechunk.__version__
PYEOF
}
if check_py && [ -x "$VENV/bin/moto_server" ]; then
    echo "setup: .venv ready"
else
    echo "setup: creating .venv (rasterio, numpy, moto[server], boto3, xarray, zarr, s3fs, pillow)"
    PYTHON="${PYTHON:-python3}"
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        $SUDO apt-get update -q </dev/null
        $SUDO apt-get install -y -q python3-venv </dev/null
    fi
    [ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
    # s3fs (zarr-python reading s3:// in tests/storage.rs) pins botocore through aiobotocore, and
    # boto3 pins it too: left open, pip backtracks through hundreds of boto3 releases for many
    # minutes. These four are pinned to a set known to resolve together at once.
    # icechunk-python 2.x needs Python >= 3.12; 1.1.x reads the format-1 repositories eocube creates
    # (crates/eocube/src/store/icechunk.rs). adlfs (xarray reading az:// in tests/cloud.rs) and its Azure SDK
    # are pinned to a set that installs beside those without moving them.
    "$PY" -m pip install -q --disable-pip-version-check \
        "rasterio>=1.4,<1.5" "numpy>=1.24,<3" "moto[server]>=5,<6" "xarray>=2025.1" "zarr>=3,<4" "rioxarray>=0.18" \
        "s3fs==2026.9.0" "aiobotocore==3.10.0" "boto3==1.43.117" "botocore==1.43.117" \
        "icechunk==1.1.21" "pillow>=10,<13" "jsonschema>=4.18,<5" \
        "adlfs==2026.8.0" "azure-storage-blob==12.31.1" "azure-identity==1.27.0" "azure-core==1.41.0" \
        "cargo-lambda==1.9.2" </dev/null
    check_py || { echo "setup: .venv is still not usable" >&2; exit 1; }
fi

# 2b. The reader stacks of tests/readers.rs that conflict with .venv (zarr-python 2, icechunk 2)
bash "$ROOT/scripts/setup-readers.sh"

# 3. Rust components used by scripts/test.sh
if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup component list --installed 2>/dev/null || true)"
    for c in rustfmt clippy; do
        if ! grep -q "^$c" <<<"$installed"; then
            echo "setup: rustup component add $c"
            rustup component add "$c" </dev/null
        fi
    done
fi
# 4. Azurite, Microsoft's Azure Blob Storage emulator (tests/cloud.rs), from npm into .tools/
AZURITE_VERSION=3.35.0
if [ -x "$ROOT/.tools/node_modules/.bin/azurite-blob" ] \
    && grep -q "\"version\": \"$AZURITE_VERSION\"" "$ROOT/.tools/node_modules/azurite/package.json" 2>/dev/null; then
    echo "setup: azurite $AZURITE_VERSION present"
else
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup: installing nodejs + npm"
        $SUDO apt-get update -q </dev/null
        $SUDO apt-get install -y -q --no-install-recommends nodejs npm </dev/null
    fi
    echo "setup: npm install azurite@$AZURITE_VERSION into .tools"
    mkdir -p "$ROOT/.tools"
    npm install --prefix "$ROOT/.tools" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" </dev/null
fi

# 5. PostgreSQL + PostGIS and stac-fastapi-pgstac (a real STAC API for tests/catalog.rs)
bash "$(dirname "${BASH_SOURCE[0]}")/stac-server.sh" install

# 6. Slurm and munge (a one-node cluster for tests/engines.rs; scripts/slurm.sh starts it)
bash "$ROOT/scripts/slurm.sh" install

# 7. Chromium, headless (tests/report.rs opens the run report page and screenshots it)
if ! command -v chromium >/dev/null 2>&1; then
    echo "setup: installing chromium"
    $SUDO apt-get update -q </dev/null
    $SUDO apt-get install -y -q --no-install-recommends chromium </dev/null
else
    echo "setup: chromium present"
fi

# 8. playwright-core, from npm into .tools/ (tests/view/pages.cjs drives the map page in the
# chromium above; the package has no browser of its own)
PLAYWRIGHT_VERSION=1.65.2
if grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$ROOT/.tools/node_modules/playwright-core/package.json" 2>/dev/null; then
    echo "setup: playwright-core $PLAYWRIGHT_VERSION present"
else
    echo "setup: npm install playwright-core@$PLAYWRIGHT_VERSION into .tools"
    mkdir -p "$ROOT/.tools"
    npm install --prefix "$ROOT/.tools" --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" </dev/null
fi

echo "setup: done"
