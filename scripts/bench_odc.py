"""The odc-stac reference of scripts/bench-chunk-month.sh: the chunk-month jobs of an eocube build,
computed the way earth-mover/serverless-datacube-demo did (one `odc.stac.load` per chunk-month).

    .venv-bench/bin/python scripts/bench_odc.py --items ITEMS.json --bbox W S E N \
        --start 2023-06-01 --end 2023-06-30 --mode nearest|demo --out RESULT.npy

Runs in its own venv (.venv-bench: odc-stac, odc-algo, pystac, rasterio; the bench script makes it).

The grid is eocube's (docs/cube.md): EPSG:4326 at --resolution (1/3600 degree), edges snapped
to multiples of it (floor/ceil with 0.01 px tolerance), cut into --chunk-px chunks from the
north-west corner; calendar-month bins clipped to [start, end]. A job is one (month, chunk): keep
the items whose geometry meets the chunk's footprint and whose UTC date is in the month's window
(what the demo's STAC search returned), then

  --mode nearest  odc.stac.load(scl + bands, resampling nearest, groupby solar_day); valid SCL =
                  eocube's default set {2, 4, 5, 6, 7, 11}; median over time of the valid non-zero
                  values (eocube build --resampling nearest computes the same thing).
  --mode demo     the demo's job: the same load with bilinear for every band (SCL included); bad =
                  SCL not in {4, 5}; odc.algo.mask_cleanup(bad, [("closing", 5), ("opening", 5)]);
                  odc.algo.erase_bad; median of the values > 0 (eocube build --mask seed
                  --resampling bilinear is the same algorithm, up to SCL resampling and halos).

Medians are NaN-skipping float medians cast to uint16 (as the demo: an even count gives
floor((a + b) / 2), like eocube); no observation -> 0. The load is lazy (dask, chunks of --dask-px
as the demo's 600) and is computed with dask's threaded scheduler on --threads threads (2 = this
machine's cores; the demo used 16 on Lambda to hide S3 latency). No cluster.

Writes RESULT.npy, uint16 (time, latitude, longitude, band) over the whole region (0 where no
job wrote), and RESULT.json: grid, times, per-job seconds, scenes, which morphology was used.
"""

import argparse
import calendar
import json
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import dask
import numpy as np
import odc.stac
import pystac
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

SNAP_TOLERANCE_PX = 0.01
DEFAULT_VALID = [2, 4, 5, 6, 7, 11]
DEMO_VALID = [4, 5]

try:
    from odc.algo import erase_bad, mask_cleanup

    MORPHOLOGY = "odc.algo.mask_cleanup"
except ImportError:  # odc-algo did not install: the same operations with scikit-image
    from skimage.morphology import binary_closing, binary_opening, disk

    MORPHOLOGY = "skimage binary_closing/binary_opening with disk(5) (odc-algo missing)"

    def mask_cleanup(mask, mask_filters):
        ops = {"closing": binary_closing, "opening": binary_opening}

        def one(m):
            for op, r in mask_filters:
                m = ops[op](m, disk(r))
            return m

        return xr.apply_ufunc(
            lambda a: np.stack([one(x) for x in a]) if a.ndim == 3 else one(a),
            mask,
            dask="parallelized",
            output_dtypes=[bool],
        )

    def erase_bad(ds, where):
        return ds.where(~where, 0)


def cube_geobox(bbox, r):
    """eocube's GeoBox::from_bbox: edges on multiples of r, north-up."""
    w, s, e, n = bbox
    i0x = np.floor(w / r + SNAP_TOLERANCE_PX)
    i1x = np.ceil(e / r - SNAP_TOLERANCE_PX)
    i0y = np.floor(s / r + SNAP_TOLERANCE_PX)
    i1y = np.ceil(n / r - SNAP_TOLERANCE_PX)
    nx, ny = int(max(i1x - i0x, 1)), int(max(i1y - i0y, 1))
    return GeoBox((ny, nx), Affine(r, 0.0, i0x * r, 0.0, -r, i1y * r), "EPSG:4326")


def month_windows(start, end):
    """(label, first day, last day) of each calendar month meeting [start, end], clipped to it."""
    out = []
    y, m = start.year, start.month
    while date(y, m, 1) <= end:
        first = date(y, m, 1)
        last = date(y, m, calendar.monthrange(y, m)[1])
        out.append((first, max(first, start), min(last, end)))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def job_items(items, footprint, first, last):
    """What a STAC search (intersects=footprint, datetime=first/last) would return."""
    hits = []
    for it in items:
        d = it.datetime.date()
        if first <= d <= last and Geometry(it.geometry, "EPSG:4326").intersects(footprint):
            hits.append(it)
    return hits


def run_job(items, gbox, bands, mode, dask_px, scl_resampling=None):
    resampling = "nearest" if mode == "nearest" else "bilinear"
    if scl_resampling:
        resampling = {"scl": scl_resampling, "*": resampling}
    ds = odc.stac.load(
        items,
        bands=["scl", *bands],
        chunks={"time": 1, "x": dask_px, "y": dask_px},
        geobox=gbox,
        resampling=resampling,
        groupby="solar_day",
    )
    if mode == "nearest":
        valid = ds.scl.isin(DEFAULT_VALID)
        data = ds[bands].where(valid)
    else:
        cloud_mask = ~ds.scl.isin(DEMO_VALID)
        cloud_mask = mask_cleanup(cloud_mask, [("closing", 5), ("opening", 5)])
        data = erase_bad(ds[bands], cloud_mask)
    med = data.where(data > 0).to_dataarray(dim="band").median(dim="time")
    med = med.fillna(0).astype("uint16").transpose(..., "band")
    return med.values, len(ds.time)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", required=True, help="STAC FeatureCollection with absolute (http://) hrefs")
    p.add_argument("--bbox", type=float, nargs=4, required=True, metavar=("W", "S", "E", "N"))
    p.add_argument("--start", type=date.fromisoformat, required=True)
    p.add_argument("--end", type=date.fromisoformat, required=True)
    p.add_argument("--mode", choices=["nearest", "demo"], required=True)
    p.add_argument("--out", required=True, help="RESULT.npy (RESULT.json beside it)")
    p.add_argument("--bands", default="red,green,blue")
    p.add_argument("--resolution", type=float, default=1 / 3600)
    p.add_argument("--chunk-px", type=int, default=1200)
    p.add_argument("--dask-px", type=int, default=600, help="dask chunk size of the load (the demo's 600)")
    p.add_argument("--threads", type=int, default=2, help="threads of dask's threaded scheduler")
    p.add_argument("--scl-resampling", help="override SCL's resampling (a diagnostic: the demo used bilinear)")
    a = p.parse_args()
    warnings.filterwarnings("ignore")

    t_start = time.perf_counter()
    odc.stac.configure_rio(cloud_defaults=True)
    bands = a.bands.split(",")
    items = list(pystac.ItemCollection.from_file(a.items))
    cube = cube_geobox(a.bbox, a.resolution)
    ny, nx = cube.shape
    cs = a.chunk_px
    months = month_windows(a.start, a.end)
    result = np.zeros((len(months), ny, nx, len(bands)), dtype=np.uint16)

    jobs = []
    pool = ThreadPoolExecutor(a.threads)
    with dask.config.set(pool=pool, scheduler="threads"):
        for iy in range((ny + cs - 1) // cs):
            for ix in range((nx + cs - 1) // cs):
                ys, xs = slice(iy * cs, min((iy + 1) * cs, ny)), slice(ix * cs, min((ix + 1) * cs, nx))
                gbox = cube[ys, xs]
                footprint = gbox.extent.to_crs("EPSG:4326")
                for t, (label, first, last) in enumerate(months):
                    t0 = time.perf_counter()
                    hits = job_items(items, footprint, first, last)
                    if not hits:  # the demo writes nothing for an empty search
                        jobs.append({"chunk": [iy, ix], "time": str(label), "scenes": 0, "solar_days": 0,
                                     "seconds": round(time.perf_counter() - t0, 3)})
                        continue
                    values, days = run_job(hits, gbox, bands, a.mode, a.dask_px, a.scl_resampling)
                    result[t, ys, xs, :] = values
                    jobs.append({"chunk": [iy, ix], "time": str(label), "scenes": len(hits), "solar_days": days,
                                 "seconds": round(time.perf_counter() - t0, 3)})
                    print(f"bench_odc: job chunk ({iy}, {ix}) {label:%Y-%m}: {len(hits)} scenes, {days} solar days, "
                          f"{jobs[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    pool.shutdown()

    out = Path(a.out)
    np.save(out, result)
    meta = {
        "mode": a.mode,
        "morphology": MORPHOLOGY if a.mode == "demo" else None,
        "scl_resampling": a.scl_resampling,
        "odc_stac": odc.stac.__version__,
        "affine": list(cube.affine)[:6],
        "shape": [ny, nx],
        "times": [str(m[0]) for m in months],
        "bands": bands,
        "threads": a.threads,
        "dask_px": a.dask_px,
        "jobs": jobs,
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: meta[k] for k in ("mode", "seconds", "morphology")} | {"jobs": len(jobs)}))


if __name__ == "__main__":
    main()
