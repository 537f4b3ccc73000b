"""Re-encode an `eocube synth` archive with GDAL (scripts/bench-chunk-month.sh).

    .venv/bin/python scripts/bench_archive.py SRC DST [--jobs N] [--texture sensor]
    .venv/bin/python scripts/bench_archive.py --probe SRC_TIF DST_TIF

Every SRC/**/*.tif becomes DST/<same path> written by GDAL's COG driver: DEFLATE + PREDICTOR=2
(horizontal differencing), 1024 px blocks, overviews down to one block with AVERAGE resampling
for reflectance and MODE for scl.tif, nodata 0 kept, NUM_THREADS=ALL_CPUS. items.json (hrefs
relative to the archive directory) is copied as is; items-local.json is rewritten with absolute
paths into DST. The result is what a reader of real Sentinel-2 COGs meets (GDAL's layout and
overviews, zlib level 6), not eocube's own writer.

`--texture sensor` first gives the smooth synthetic surfaces the compressibility of real
Sentinel-2 L2A COGs (see `texture`): the default `smooth` copy compresses about 50:1, where Earth
Search's reflectance files compress 1.3-2:1, so inflating the smooth copy costs a fraction of what
inflating real tiles costs.

DST is written as DST.partial and renamed at the end, so a DST that exists is complete. Prints
and writes DST/bench-archive.json: files, seconds, bytes in and out.
"""

import argparse
import json
import os
import shutil
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile


def creation_options(name):
    """The COG driver's options for one band file."""
    return dict(
        driver="COG",
        COMPRESS="DEFLATE",
        PREDICTOR="2",
        BLOCKSIZE="1024",
        OVERVIEWS="AUTO",
        OVERVIEW_RESAMPLING="MODE" if name == "scl.tif" else "AVERAGE",
        NUM_THREADS="ALL_CPUS",
        BIGTIFF="IF_SAFER",
    )


# Reflectance noise (digital numbers, Gaussian, at the native 10 m): with PREDICTOR=2 and zlib
# level 6 it gives full-resolution tiles about 1.36:1 and the 2x AVERAGE overview about 1.43:1,
# measured on the synthetic surfaces; the real Earth Search items in ../shared/fixtures list 241.9
# MB for a clear 10980 px red band with its overviews (about 1.33:1) and 59.8 MB for a clear
# 20 m swir16 (1.34:1). Inflating such streams is mostly literals, as for real scenes.
REFLECTANCE_SIGMA = 100.0


def texture(data, seed):
    """A reflectance band `data` (nodata 0) with the noise of `--texture sensor`, seeded by the
    file's path so that the archive is the same on every machine."""
    rng = np.random.default_rng(seed)
    valid = data != 0
    noisy = data.astype(np.float32) + rng.normal(0.0, REFLECTANCE_SIGMA, data.shape).astype(np.float32)
    # data stays data (>= 1), nodata stays 0
    return np.where(valid, np.clip(np.rint(noisy), 1, np.iinfo(data.dtype).max), 0).astype(data.dtype)


def reencode(src, dst, texture_kind="smooth", seed_name=""):
    """One file; returns (seconds, bytes in, bytes out)."""
    t0 = time.perf_counter()
    with rasterio.open(src) as ds:
        if ds.nodata != 0:
            raise SystemExit(f"bench_archive: {src}: nodata is {ds.nodata}, expected 0")
        profile = (ds.count, ds.dtypes[0], ds.width, ds.height)
        textured = None
        # SCL is copied as it is: its smooth synthetic classes already compress about 14:1 over
        # the data (real SCL files: about 13:1).
        if texture_kind == "sensor" and src.name != "scl.tif":
            if ds.count != 1:
                raise SystemExit(f"bench_archive: {src}: {ds.count} bands, --texture expects one")
            textured = (texture(ds.read(1), zlib.crc32(seed_name.encode())), ds.profile)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        if textured is None:
            rasterio.shutil.copy(str(src), str(dst), **creation_options(src.name))
        else:
            data, prof = textured
            prof.update(driver="GTiff", compress=None, tiled=True, blockxsize=1024, blockysize=1024)
            with MemoryFile() as mem:
                with mem.open(**prof) as tmp:
                    tmp.write(data, 1)
                with mem.open() as tmp:
                    rasterio.shutil.copy(tmp, str(dst), **creation_options(src.name))
    with rasterio.open(dst) as out:
        if (out.count, out.dtypes[0], out.width, out.height) != profile or out.nodata != 0:
            raise SystemExit(f"bench_archive: {dst}: GDAL's copy does not match {src}")
        if out.block_shapes[0] != (1024, 1024) and min(out.width, out.height) > 1024:
            raise SystemExit(f"bench_archive: {dst}: blocks {out.block_shapes[0]}, expected 1024")
        st = out.tags(ns="IMAGE_STRUCTURE")
        if st.get("COMPRESSION") != "DEFLATE" or st.get("PREDICTOR") != "2" or not out.overviews(1):
            raise SystemExit(f"bench_archive: {dst}: not DEFLATE + PREDICTOR=2 with overviews: {st}")
    return time.perf_counter() - t0, src.stat().st_size, dst.stat().st_size


def _job(args):
    src, dst, texture_kind, seed_name = args
    return str(src), reencode(Path(src), Path(dst), texture_kind, seed_name)


def rebase_local(items_path, root):
    """items.json with hrefs relative to its directory -> absolute paths under root."""
    items = json.loads(items_path.read_text())
    for f in items["features"]:
        for a in f.get("assets", {}).values():
            href = a["href"]
            if "://" not in href and not href.startswith("/"):
                a["href"] = str(root / href)
    return items


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--jobs", type=int, default=1, help="files re-encoded at once (each uses ALL_CPUS threads)")
    p.add_argument("--probe", action="store_true", help="re-encode the single file SRC into DST and print the time")
    p.add_argument("--texture", choices=("smooth", "sensor"), default="smooth",
                   help="smooth: the synthetic surfaces as they are; sensor: noise and SCL speckle that "
                   "compress like real Sentinel-2 COGs (see the module doc)")
    a = p.parse_args()
    src, dst = Path(a.src).resolve(), Path(a.dst).resolve()

    if a.probe:
        s, bin_, bout = reencode(src, dst, a.texture, src.name)
        print(f"bench_archive: {src.name} ({bin_ / 1e6:.0f} MB) -> GDAL COG ({bout / 1e6:.0f} MB) in {s:.1f} s")
        return

    if not (src / "items.json").is_file():
        sys.exit(f"bench_archive: {src} has no items.json (not an eocube synth archive)")
    tifs = sorted(src.rglob("*.tif"))
    if not tifs:
        sys.exit(f"bench_archive: no .tif under {src}")
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    t0 = time.perf_counter()
    done = 0
    total_in = total_out = 0
    work = [(str(t), str(tmp / t.relative_to(src)), a.texture, str(t.relative_to(src))) for t in tifs]
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for name, (s, bin_, bout) in pool.map(_job, work):
            done += 1
            total_in += bin_
            total_out += bout
            if done % 10 == 0 or done == len(work):
                print(f"bench_archive: {done}/{len(work)} files, {time.perf_counter() - t0:.0f} s", flush=True)

    shutil.copy2(src / "items.json", tmp / "items.json")
    (tmp / "items-local.json").write_text(json.dumps(rebase_local(tmp / "items.json", dst)))
    seconds = time.perf_counter() - t0
    summary = {"files": len(work), "seconds": round(seconds, 1), "bytes_in": total_in, "bytes_out": total_out,
               "texture": a.texture}
    (tmp / "bench-archive.json").write_text(json.dumps(summary) + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    print(f"bench_archive: {len(work)} files re-encoded with GDAL in {seconds:.0f} s "
          f"({total_in / 1e9:.2f} GB -> {total_out / 1e9:.2f} GB) into {dst}")


if __name__ == "__main__":
    main()
