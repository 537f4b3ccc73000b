#!/usr/bin/env bash
# Vendors MapLibre GL JS for the pages of `eocube serve` (crates/eocube/src/serve/pages/): the
# pinned npm package's dist/maplibre-gl.js and .css are copied into pages/vendor/ and committed, so
# the build embeds them (include_bytes!) with no network and the pages work offline. Records the
# version, the tarball's integrity, each file's sha256 and the licence in vendor/README.md.
#   scripts/vendor-maplibre.sh            # the pinned version below
#   scripts/vendor-maplibre.sh 5.25.0     # another one (then update the pin and commit)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# 5.x: the last major whose package ships dist/maplibre-gl.js, one UMD script with the worker
# inlined; 6.x ships only ES modules with a separate worker file (two more assets, a worker URL)
VERSION="${1:-5.24.1}"
DEST="$ROOT/crates/eocube/src/serve/pages/vendor"
# include_bytes! puts every byte into the binary: refuse a file past this
MAX_BYTES=$((2 * 1024 * 1024))

command -v npm >/dev/null || { echo "vendor-maplibre: needs npm (scripts/setup.sh installs it)" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
TARBALL="$(npm pack --silent "maplibre-gl@$VERSION")"
INTEGRITY="$(npm view "maplibre-gl@$VERSION" dist.integrity)"
tar -xzf "$TARBALL"
LICENSE="$(node -p 'require("./package/package.json").license')"
[ "$LICENSE" = "BSD-3-Clause" ] || { echo "vendor-maplibre: licence is $LICENSE, not BSD-3-Clause: review before vendoring" >&2; exit 1; }

mkdir -p "$DEST"
for f in maplibre-gl.js maplibre-gl.css; do
    size="$(stat -c %s "package/dist/$f")"
    [ "$size" -lt "$MAX_BYTES" ] || { echo "vendor-maplibre: dist/$f is $size bytes, over $MAX_BYTES" >&2; exit 1; }
    cp "package/dist/$f" "$DEST/$f"
done
cp package/LICENSE.txt "$DEST/LICENSE.txt"

{
    echo "# Vendored MapLibre GL JS"
    echo
    echo "Written by \`scripts/vendor-maplibre.sh\`; do not edit by hand. The files are embedded in the"
    echo "\`eocube\` binary (\`serve::pages\`) so the map page works offline and the build needs no network."
    echo
    echo "- package: \`maplibre-gl@$VERSION\` from the npm registry (\`npm pack\`), tarball integrity \`$INTEGRITY\`"
    echo "- licence: $LICENSE (\`LICENSE.txt\`, copied from the package)"
    echo "- files (from the package's \`dist/\`):"
    for f in maplibre-gl.js maplibre-gl.css LICENSE.txt; do
        echo "  - \`$f\`: $(stat -c %s "$DEST/$f") bytes, sha256 \`$(sha256sum "$DEST/$f" | cut -d' ' -f1)\`"
    done
} >"$DEST/README.md"
echo "vendor-maplibre: maplibre-gl@$VERSION into $DEST"
cat "$DEST/README.md"
