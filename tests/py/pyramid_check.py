"""Check a cube's overview pyramid against an independent reference (tests/view/pyramid.rs).

    pyramid_check.py CUBE EXPECT.json

CUBE is a plain Zarr path, or with "icechunk": true in EXPECT an Icechunk repository directory
(the branch in "branch"). Every level `pyramid/L` is opened with xarray (consolidated metadata
for plain Zarr) and compared with a numpy valid-mean iterated from the cube's data variable:
each pixel of level L is the mean of the non-zero pixels of its 2x2 block of level L-1, rounded
half up, 0 when the block has none; level 0 is the data itself. Also checked: the group's
multiscales / proj: / spatial: attributes, the coordinates and CRS of every level (rioxarray),
and with "gdal": true the georeferencing GDAL reads (rasterio's Zarr driver).
Prints "all checks passed" at the end.
"""

import json
import os
import sys
import warnings

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
import zarr
import zarr.errors

warnings.filterwarnings("ignore")

UUIDS = {
    "multiscales": "d35379db-88df-4056-af3a-620245f8e347",
    "proj": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "spatial": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
}


def valid_mean(a):
    """(t, y, x) uint16 -> (t, ceil(y/2), ceil(x/2)): mean of the non-zero pixels per 2x2 block."""
    t, ny, nx = a.shape
    py, px = ny + ny % 2, nx + nx % 2
    p = np.zeros((t, py, px), np.uint32)
    p[:, :ny, :nx] = a
    blocks = p.reshape(t, py // 2, 2, px // 2, 2)
    s = blocks.sum(axis=(2, 4))
    n = (blocks != 0).sum(axis=(2, 4))
    return np.where(n > 0, (s + n // 2) // np.maximum(n, 1), 0).astype(np.uint16)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)


def main():
    cube, expect_path = sys.argv[1], sys.argv[2]
    exp = json.load(open(expect_path))
    if exp.get("icechunk"):
        import icechunk

        repo = icechunk.Repository.open(icechunk.local_filesystem_storage(cube))
        store = repo.readonly_session(branch=exp.get("branch", "main")).store
        consolidated = False
        if exp.get("same_commit"):
            # The snapshot before the branch tip (the build's last checkpoint) has no pyramid
            # group: its tiles may be there already (built while the jobs ran), unlisted; the
            # group came with the commit that published the cube.
            hist = list(repo.ancestry(branch=exp.get("branch", "main")))
            check(len(hist) >= 2, "history has a parent")
            parent = repo.readonly_session(snapshot_id=hist[1].id).store
            root = zarr.open_group(parent, mode="r")
            try:
                zarr.open_group(parent, path="pyramid", mode="r", use_consolidated=False)
                listed = True
            except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
                listed = False
            check(not listed, "the parent snapshot has no pyramid group")
            check("rgb_median" in list(root.array_keys()), "the parent snapshot has the data")
            print(f"tip {hist[0].id} ({hist[0].message}) has the pyramid, its parent {hist[1].id} does not")
    else:
        store = cube
        consolidated = True

    cube_ds = xr.open_zarr(store, consolidated=consolidated, mask_and_scale=False)
    var = exp["variable"]
    bands = [str(b) for b in cube_ds["band"].values]
    data = cube_ds[var].values  # (time, y, x, band)
    ydim, xdim = cube_ds[var].dims[1], cube_ds[var].dims[2]
    epsg = exp["epsg"]

    pyr = zarr.open_group(store, path="pyramid", mode="r", use_consolidated=False)
    attrs = pyr.attrs.asdict()
    uuids = [c["uuid"] for c in attrs["zarr_conventions"]]
    check(sorted(uuids) == sorted(UUIDS.values()), f"zarr_conventions uuids {uuids}")
    check(attrs["proj:code"] == f"EPSG:{epsg}", "proj:code")
    check(attrs["spatial:dimensions"] == [ydim, xdim], "spatial:dimensions")
    layout = attrs["multiscales"]["layout"]
    check(len(layout) == exp["levels"], f"{len(layout)} levels, expected {exp['levels']}")
    print(f"pyramid: {len(layout)} levels, conventions {uuids}")

    ref = [data[..., b].astype(np.uint16) for b in range(len(bands))]
    for level, entry in enumerate(layout):
        check(entry["asset"] == str(level), "asset name")
        if level > 0:
            check(entry["derived_from"] == str(level - 1), "derived_from")
            check(entry["transform"]["scale"] == [2.0, 2.0], "transform.scale")
            ref = [valid_mean(r) for r in ref]
        a, b_, c, d, e, f = entry["spatial:transform"]
        ny, nx = entry["spatial:shape"]
        ds = xr.open_zarr(store, group=f"pyramid/{level}", consolidated=consolidated, mask_and_scale=False)
        grp = zarr.open_group(store, path=f"pyramid/{level}", mode="r", use_consolidated=False).attrs.asdict()
        check(grp["proj:code"] == f"EPSG:{epsg}", f"level {level} proj:code")
        check(grp["spatial:shape"] == [ny, nx], f"level {level} spatial:shape")
        check(grp["spatial:transform"] == entry["spatial:transform"], f"level {level} spatial:transform")
        check(dict(ds.sizes) == {"time": data.shape[0], ydim: ny, xdim: nx}, f"level {level} sizes {dict(ds.sizes)}")
        check(ny == -(-data.shape[1] // 2**level) and nx == -(-data.shape[2] // 2**level), "level shape is ceil(n/2^L)")
        check(np.array_equal(ds["time"].values, cube_ds["time"].values), f"level {level} time")
        ys = f + (np.arange(ny) + 0.5) * e
        xs = c + (np.arange(nx) + 0.5) * a
        check(np.allclose(ds[ydim].values, ys, rtol=0, atol=1e-9), f"level {level} {ydim}")
        check(np.allclose(ds[xdim].values, xs, rtol=0, atol=1e-9), f"level {level} {xdim}")
        if level == 0:
            check(np.allclose(ds[ydim].values, cube_ds[ydim].values, rtol=0, atol=1e-12), "level 0 y = cube y")
            check(np.allclose(ds[xdim].values, cube_ds[xdim].values, rtol=0, atol=1e-12), "level 0 x = cube x")
        check(ds.rio.crs is not None and ds.rio.crs.to_epsg() == epsg, f"level {level} CRS {ds.rio.crs}")
        gt = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
        check(np.allclose(gt, [c, a, b_, f, d, e], rtol=1e-12, atol=0), f"level {level} GeoTransform {gt}")
        for bi, band in enumerate(bands):
            arr = ds[band]
            check(arr.dims == ("time", ydim, xdim), f"level {level} {band} dims {arr.dims}")
            check(arr.dtype == np.uint16, f"level {level} {band} dtype")
            check(tuple(arr.encoding["chunks"]) == (1, 512, 512), f"level {level} {band} chunks {arr.encoding['chunks']}")
            got = arr.values
            diff = int((got != ref[bi]).sum())
            check(diff == 0, f"level {level} {band}: {diff} pixels differ from the numpy valid mean")
        scaled = xr.open_zarr(store, group=f"pyramid/{level}", consolidated=consolidated)[bands[0]]
        vals = scaled.values
        check(np.isnan(vals).sum() == (ref[0] == 0).sum(), f"level {level}: fill reads as NaN")
        check(np.nanmin(vals) >= -0.1 and np.nanmax(vals) <= 6.5, f"level {level}: reflectance range")
        valid = float((ref[0] != 0).mean())
        print(f"level {level}: {ny} x {nx}, {len(bands)} bands equal to the numpy valid mean, {valid:.3f} valid")

        if exp.get("gdal"):
            import rasterio

            with rasterio.open(f'ZARR:"{cube}":/pyramid/{level}/{bands[0]}') as r:
                check(r.crs.to_epsg() == epsg, f"GDAL level {level} CRS {r.crs}")
                check(r.shape == (ny, nx), f"GDAL level {level} shape {r.shape}")
                got = tuple(r.transform)[:6]
                check(np.allclose(got, [a, b_, c, d, e, f], rtol=1e-9, atol=0), f"GDAL level {level} transform {got}")
                check(r.count == data.shape[0], f"GDAL level {level}: one raster band per time step")
                check(np.array_equal(r.read(1), ref[0][0]), f"GDAL level {level} values")
            print(f"level {level}: GDAL {rasterio.__gdal_version__} reads EPSG:{epsg}, {tuple(r.transform)[:6]}")
    print("all checks passed")
    # icechunk's Python bindings can abort (SIGABRT) while the interpreter tears their runtime
    # down, after every check has passed (a clean-clone CI run, 2026-12-07): exit without the
    # teardown once the verdict is out.
    sys.stdout.flush()
    os._exit(0)


main()
