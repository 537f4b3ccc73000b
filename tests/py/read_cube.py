"""Read an eocube cube back with xarray and check it against EXPECT.json (written by tests/store.rs).

Usage: read_cube.py CUBE EXPECT.json

Prints every check it makes; exits non-zero at the first mismatch. The expectation file holds the
layout (dims, coordinates as written, time labels, EPSG, bands), the value formula parameters and
the jobs that were never written (their chunks must read as fill).
"""

import json
import sys
import warnings

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def expected_dn(exp):
    """The values tests/store.rs wrote: 1 + (t*1000 + row*7 + col*3 + b*101) % 60000, 0 where never written."""
    nt, ny, nx, nb = len(exp["times"]), len(exp["y"]), len(exp["x"]), len(exp["bands"])
    t, r, c, b = np.meshgrid(np.arange(nt), np.arange(ny), np.arange(nx), np.arange(nb), indexing="ij")
    dn = (1 + (t * 1000 + r * 7 + c * 3 + b * 101) % 60000).astype(np.uint16)
    cs = exp["chunk_size"]
    for ti, iy, ix in exp["unwritten"]:
        dn[ti, iy * cs:(iy + 1) * cs, ix * cs:(ix + 1) * cs, :] = 0
    return dn


def main(cube, expect_path):
    with open(expect_path) as f:
        exp = json.load(f)
    var, ydim, xdim = exp["variable"], exp["ydim"], exp["xdim"]
    print(f"xarray {xr.__version__}, zarr {zarr.__version__}; cube {cube} (zarr v{exp['zarr_format']})")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = xr.open_zarr(cube, consolidated=True)
    noisy = [str(w.message) for w in caught if "_eocube" in str(w.message)]
    check(not noisy, f"consolidated open says nothing about _eocube {noisy}")
    da = ds[var]
    check(da.dims == ("time", ydim, xdim, "band"), f"dims of {var} {da.dims}")
    check(str(da.dtype).startswith("float"), f"mask_and_scale gives floats ({da.dtype})")
    for name in ("time", ydim, xdim, "band", "spatial_ref"):
        check(name in ds.coords, f"{name} is a coordinate")
    check(set(ds.data_vars) == {var}, f"data variables {sorted(ds.data_vars)}")

    y, x = ds[ydim].values, ds[xdim].values
    check(y.dtype == np.float64 and x.dtype == np.float64, "spatial coordinates are float64")
    check(np.array_equal(y, np.array(exp["y"])) and np.array_equal(x, np.array(exp["x"])), "coordinate values as written")
    gt = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
    check(gt == exp["geotransform"], f"GeoTransform {gt}")
    x0, res_x, _, y0, _, res_y = gt
    check(np.allclose(x, x0 + (np.arange(len(x)) + 0.5) * res_x, rtol=0, atol=abs(res_x) * 1e-6), "x at pixel centres")
    check(np.allclose(y, y0 + (np.arange(len(y)) + 0.5) * res_y, rtol=0, atol=abs(res_y) * 1e-6), "y at pixel centres")
    check(bool(np.all(np.diff(y) < 0)), f"{ydim} descending")
    check(abs(x0 / abs(res_x) - round(x0 / abs(res_x))) < 1e-6 and abs(y0 / abs(res_y) - round(y0 / abs(res_y))) < 1e-6,
          "grid edges anchored on multiples of the resolution")
    if exp["geographic"]:
        check(ds[ydim].attrs.get("units") == "degrees_north" and ds[xdim].attrs.get("units") == "degrees_east",
              "degree units")
    else:
        check(ds[ydim].attrs.get("units") == "metre", "metre units")

    times = ds["time"].values
    want = np.array(exp["times"], dtype="datetime64[ns]")
    check(np.issubdtype(times.dtype, np.datetime64), f"time decoded ({times.dtype})")
    check(np.array_equal(times.astype("datetime64[ns]"), want), f"time values {[str(t)[:10] for t in times]}")
    enc = ds["time"].encoding
    check(enc.get("units") == "days since 1970-01-01" and enc.get("calendar") == "proleptic_gregorian",
          f"time encoding {enc.get('units')!r} {enc.get('calendar')!r}")

    bands = [str(b) for b in ds["band"].values]
    check(bands == exp["bands"], f"bands {bands}")

    crs = ds.rio.crs
    check(crs is not None and crs.to_epsg() == exp["epsg"], f"ds.rio.crs EPSG:{crs.to_epsg() if crs else None}")
    check(da.rio.crs is not None and da.rio.crs.to_epsg() == exp["epsg"], "da.rio.crs")

    e = da.encoding
    check(e.get("scale_factor") == 0.0001 and e.get("add_offset") == -0.1, f"scale/offset encoding {e.get('scale_factor')} {e.get('add_offset')}")
    check(e.get("_FillValue") == 0, f"_FillValue encoding {e.get('_FillValue')!r}")
    check(e.get("chunks") == (1, exp["chunk_size"], exp["chunk_size"], len(exp["bands"])) or
          tuple(e.get("preferred_chunks", {}).values()) == (1, exp["chunk_size"], exp["chunk_size"], len(exp["bands"])),
          f"chunks {e.get('chunks')}")

    dn = expected_dn(exp)
    vals = da.values
    fill = dn == 0
    check(bool(np.all(np.isnan(vals[fill]))), f"{int(fill.sum())} unwritten values read as NaN")
    refl = dn[~fill].astype(np.float64) * 0.0001 - 0.1
    check(bool(np.allclose(vals[~fill], refl, rtol=0, atol=1e-6)), "values after mask_and_scale = dn * 0.0001 - 0.1")
    check(float(np.nanmin(vals)) >= -0.1 and float(np.nanmax(vals)) <= 6.5, f"reflectance in [-0.1, 6.5] "
          f"({float(np.nanmin(vals)):.4f} .. {float(np.nanmax(vals)):.4f})")

    raw = xr.open_zarr(cube, consolidated=True, mask_and_scale=False)[var]
    check(raw.dtype == np.uint16, f"raw dtype {raw.dtype}")
    check(bool(np.array_equal(raw.values, dn)), "raw values with mask_and_scale=False (0 where unwritten)")

    # _eocube/ is not a Zarr node: neither the consolidated metadata nor a listing sees it. (A
    # listing, without consolidated metadata, warns "Object at _eocube is not recognized".)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*_eocube.*")
        plain = xr.open_zarr(cube, consolidated=False)
        members = sorted(k for k, _ in zarr.open_group(cube, mode="r", use_consolidated=False).members())
    check(set(plain.variables) == set(ds.variables), f"same variables without consolidated metadata {sorted(plain.variables)}")
    check("_eocube" not in members, f"zarr members {members}")
    print("all checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
