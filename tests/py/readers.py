"""Open one eocube cube with one reader stack and check it against EXPECT.json (tests/readers.rs).

Usage: readers.py STACK EXPECT.json

STACK is one of
  zarr2      zarr-python 2.17 + numcodecs 0.12 + xarray 2024.6 + rioxarray 0.15 (.venv-readers/zarr2)
  zarr3      zarr-python 3 + xarray + rioxarray (.venv)
  gdal310    GDAL's Zarr driver through rasterio (.venv: rasterio 1.4, GDAL 3.10)
  gdal312    GDAL's Zarr driver through rasterio (.venv-readers/py312: rasterio 1.5, GDAL 3.12)
  icechunk1  icechunk-python 1.x + xarray (.venv)
  icechunk2  icechunk-python 2.x + xarray (.venv-readers/py312, Python >= 3.12)

EXPECT.json: the cube (`kind` v2 | v3 | icechunk, `path`), its variable, dims, coordinates, time
labels, bands, EPSG, GeoTransform, pyramid levels, and `values`: the raw data variable as
little-endian uint16, (time, y, x, band), decoded from the chunk files by the Rust test.

Checks values (raw and CF-decoded), coordinates, CRS and scale/offset; prints one line per check
and "all checks passed" at the end; exits 1 at the first mismatch. Written for every stack's
versions at once: nothing here may need a newer xarray, zarr or numpy than the oldest stack has.
"""

import json
import sys
import warnings

import numpy as np

SCALE, OFFSET = 0.0001, -0.1


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def expected(exp):
    nt, ny, nx, nb = len(exp["times"]), len(exp["y"]), len(exp["x"]), len(exp["bands"])
    raw = np.fromfile(exp["values"], dtype="<u2")
    check(raw.size == nt * ny * nx * nb, f"expected values: {raw.size} == {nt}x{ny}x{nx}x{nb}")
    dn = raw.reshape(nt, ny, nx, nb)
    check(int((dn > 0).sum()) > 0 and int((dn == 0).sum()) > 0, "the cube has data and fill (a test that can fail)")
    return dn


def level_values(dn, level):
    """Level `level` of the pyramid from the data: valid (non-zero) 2x2 means, (sum + n/2) // n (docs/cube.md)."""
    cur = dn.astype(np.int64)
    for _ in range(level):
        nt, ny, nx, nb = cur.shape
        py, px = ny + ny % 2, nx + nx % 2
        pad = np.zeros((nt, py, px, nb), dtype=np.int64)
        pad[:, :ny, :nx] = cur
        blocks = pad.reshape(nt, py // 2, 2, px // 2, 2, nb)
        s = blocks.sum(axis=(2, 4))
        n = (blocks > 0).sum(axis=(2, 4))
        cur = np.where(n > 0, (s + n // 2) // np.maximum(n, 1), 0)
    return cur.astype(np.uint16)


# ---------------------------------------------------------------------------------------------
# xarray stacks (zarr2, zarr3, icechunk1, icechunk2)


def open_dataset(stack, exp, **kw):
    import xarray as xr

    if stack.startswith("icechunk"):
        import icechunk

        repo = icechunk.Repository.open(icechunk.local_filesystem_storage(exp["path"]))
        session = repo.readonly_session(branch="main")
        return xr.open_zarr(session.store, consolidated=False, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = xr.open_zarr(exp["path"], consolidated=True, **kw)
    noisy = [str(w.message) for w in caught if "_eocube" in str(w.message) or "consolidated" in str(w.message)]
    check(not noisy, f"consolidated open without warnings {noisy}")
    return ds


def check_xarray(stack, exp, dn):
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr
    import zarr

    versions = f"xarray {xr.__version__}, zarr {zarr.__version__}, rioxarray {rioxarray.__version__}"
    if stack.startswith("icechunk"):
        import icechunk

        versions += f", icechunk {icechunk.__version__}"
    if stack == "zarr2":
        import numcodecs

        versions += f", numcodecs {numcodecs.__version__}"
    print(f"{stack}: {versions}, numpy {np.__version__}; {exp['kind']} cube {exp['path']}", flush=True)

    var, ydim, xdim = exp["variable"], exp["ydim"], exp["xdim"]
    ds = open_dataset(stack, exp)
    check(set(ds.data_vars) == {var}, f"data variables {sorted(ds.data_vars)}")
    da = ds[var]
    check(da.dims == ("time", ydim, xdim, "band"), f"dims {da.dims}")
    check(da.shape == dn.shape, f"shape {da.shape}")
    for name in ("time", ydim, xdim, "band", "spatial_ref"):
        check(name in ds.coords, f"{name} is a coordinate")

    y, x = ds[ydim].values, ds[xdim].values
    check(y.dtype == np.float64 and x.dtype == np.float64, "spatial coordinates are float64")
    check(np.array_equal(y, np.array(exp["y"])) and np.array_equal(x, np.array(exp["x"])),
          f"{ydim}/{xdim} as written ({y[0]!r} .. {y[-1]!r}, {x[0]!r} .. {x[-1]!r})")
    gt = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
    check(gt == exp["geotransform"], f"GeoTransform {gt}")
    units = ("degrees_north", "degrees_east") if exp["geographic"] else ("metre", "metre")
    check((ds[ydim].attrs.get("units"), ds[xdim].attrs.get("units")) == units, f"units {units}")

    times = ds["time"].values
    check(np.issubdtype(times.dtype, np.datetime64), f"time decoded ({times.dtype})")
    got = [str(t)[:10] for t in times]
    check(got == exp["times"], f"time labels {got}")
    bands = [str(b) for b in ds["band"].values]
    check(bands == exp["bands"], f"bands {bands}")

    crs = ds.rio.crs
    check(crs is not None and crs.to_epsg() == exp["epsg"], f"ds.rio.crs EPSG:{crs.to_epsg() if crs else None}")
    check(da.rio.crs is not None and da.rio.crs.to_epsg() == exp["epsg"], "da.rio.crs")
    from pyproj import CRS

    check(CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]).to_epsg() == exp["epsg"], "pyproj reads crs_wkt")

    e = da.encoding
    check(e.get("scale_factor") == SCALE and e.get("add_offset") == OFFSET,
          f"scale/offset {e.get('scale_factor')} {e.get('add_offset')}")
    check(e.get("_FillValue") == 0, f"_FillValue {e.get('_FillValue')!r}")
    check(str(da.dtype).startswith("float"), f"CF decoding gives floats ({da.dtype})")

    vals = da.values
    fill = dn == 0
    check(bool(np.all(np.isnan(vals[fill]))), f"{int(fill.sum())} fill values read as NaN")
    check(bool(np.allclose(vals[~fill], dn[~fill] * SCALE + OFFSET, rtol=0, atol=1e-6)),
          f"{int((~fill).sum())} values = dn * {SCALE} + {OFFSET}")
    raw = open_dataset(stack, exp, mask_and_scale=False)[var]
    check(raw.dtype == np.uint16, f"raw dtype {raw.dtype}")
    check(bool(np.array_equal(raw.values, dn)), "raw values equal the chunks as written")
    check(exp["spec"] == ds.attrs.get("spec"), "the spec attribute")

    for lv in exp["pyramid"]:
        if stack.startswith("icechunk"):
            import icechunk

            repo = icechunk.Repository.open(icechunk.local_filesystem_storage(exp["path"]))
            level = xr.open_zarr(repo.readonly_session(branch="main").store, group=f"pyramid/{lv['level']}",
                                 consolidated=False, mask_and_scale=False)
        else:
            level = xr.open_zarr(exp["path"], group=f"pyramid/{lv['level']}", consolidated=True, mask_and_scale=False)
        want = level_values(dn, lv["level"])
        for b, band in enumerate(exp["bands"]):
            arr = level[band]
            check(arr.dims == ("time", ydim, xdim) and bool(np.array_equal(arr.values, want[..., b])),
                  f"pyramid/{lv['level']}/{band}: {arr.dims} {arr.shape}, values = valid 2x2 means")
        check(level.rio.crs is not None and level.rio.crs.to_epsg() == exp["epsg"], f"pyramid/{lv['level']} CRS")


# ---------------------------------------------------------------------------------------------
# GDAL (rasterio)


def check_gdal(exp, dn):
    import datetime

    import rasterio
    from rasterio.errors import RasterioIOError

    print(f"gdal: rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}; {exp['kind']} cube {exp['path']}",
          flush=True)
    nt, ny, nx, nb = dn.shape
    days = [(datetime.date.fromisoformat(t) - datetime.date(1970, 1, 1)).days for t in exp["times"]]

    def open_array(path):
        name = f'ZARR:"{exp["path"]}":/{path}'
        try:
            return rasterio.open(name)
        except RasterioIOError as e:
            check(False, f"GDAL opens {name}: {e}")

    def georeferencing(src, what, gt):
        # GDAL derives the transform from the coordinate arrays: equal to the GeoTransform to
        # within float rounding of the pixel centres.
        a, b, c, d, e, f = src.transform[:6]
        got = [c, a, b, f, d, e]
        res = abs(gt[1])
        check(all(abs(g - w) <= res * 1e-9 for g, w in zip(got, gt)), f"{what}: transform {got} = GeoTransform {gt}")
        check(src.crs is not None and src.crs.to_epsg() == exp["epsg"], f"{what}: CRS EPSG:{src.crs.to_epsg() if src.crs else None}")
        check(all(s == SCALE for s in src.scales) and all(o == OFFSET for o in src.offsets),
              f"{what}: scale {set(src.scales)} offset {set(src.offsets)}")
        check(src.nodata == 0 and src.dtypes[0] == "uint16", f"{what}: nodata {src.nodata}, {src.dtypes[0]}")

    # The data variable: GDAL finds the X and Y dimensions by their coordinates' attributes and
    # makes one raster band per (time, band), time-major, tagged with the indices and the time.
    with open_array(exp["variable"]) as src:
        what = exp["variable"]
        check((src.count, src.height, src.width) == (nt * nb, ny, nx),
              f"{what}: {src.count} raster bands of {src.height} x {src.width}")
        georeferencing(src, what, exp["geotransform"])
        for i in range(src.count):
            t, b = divmod(i, nb)
            tags = src.tags(i + 1)
            check(tags.get("DIM_time_VALUE") == str(days[t]) and tags.get("DIM_band_INDEX") == str(b)
                  and tags.get("DIM_time_UNIT") == "days since 1970-01-01",
                  f"{what}: raster band {i + 1} is time {exp['times'][t]}, band {exp['bands'][b]} ({tags})")
            check(bool(np.array_equal(src.read(i + 1), dn[t, :, :, b])), f"{what}: raster band {i + 1} values")

    for lv in exp["pyramid"]:
        level = lv["level"]
        want = level_values(dn, level)
        gt = list(exp["geotransform"])
        gt[1] *= 2 ** level
        gt[5] *= 2 ** level
        for b, band in enumerate(exp["bands"]):
            what = f"pyramid/{level}/{band}"
            with open_array(what) as src:
                check((src.count, src.height, src.width) == (nt,) + want.shape[1:3],
                      f"{what}: {src.count} raster bands of {src.height} x {src.width}")
                georeferencing(src, what, gt)
                check(bool(np.array_equal(src.read(), want[..., b])), f"{what}: values")


def main(stack, expect_path):
    with open(expect_path) as f:
        exp = json.load(f)
    dn = expected(exp)
    if stack in ("gdal310", "gdal312"):
        check_gdal(exp, dn)
    elif stack in ("zarr2", "zarr3", "icechunk1", "icechunk2"):
        check_xarray(stack, exp, dn)
    else:
        sys.exit(f"unknown stack {stack!r}\n{__doc__}")
    print("all checks passed", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
