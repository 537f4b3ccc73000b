"""Read a cube written by `eocube build` with xarray and check it against EXPECT.json (written by
tests/build.rs from the e2e manifest), then export its raw values for the oracle comparisons.

Usage: e2e_cube.py CUBE EXPECT.json EXPORT.bin

EXPORT.bin: the data variable with mask_and_scale=False, uint16 little-endian, row-major
(time, latitude, longitude, band); EXPORT.bin.<name>: each index variable of EXPECT's `indices`
likewise, (time, latitude, longitude). Prints every check; exits non-zero at the first mismatch.
"""

import json
import sys
import warnings

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def main(cube, expect_path, export):
    with open(expect_path) as f:
        exp = json.load(f)
    var, nb = exp["variable"], len(exp["bands"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = xr.open_zarr(cube, consolidated=True)
    noisy = [str(w.message) for w in caught if "_eocube" in str(w.message)]
    check(not noisy, f"consolidated open says nothing about _eocube {noisy}")
    indices = exp.get("indices", [])
    check(set(ds.data_vars) == {var, *indices}, f"data variables {sorted(ds.data_vars)} == {[var, *indices]}")
    da = ds[var]
    check(da.dims == ("time", "latitude", "longitude", "band"), f"dims {da.dims}")
    check(da.shape == (len(exp["times"]), exp["ny"], exp["nx"], nb), f"shape {da.shape}")
    for name in ("time", "latitude", "longitude", "band", "spatial_ref"):
        check(name in ds.coords, f"{name} is a coordinate")

    # pixel centres of an edge-anchored grid: (i0 + j + 0.5) / 3600, latitude descending
    i0x, i1y = exp["origin_index"]
    lon, lat = ds["longitude"].values, ds["latitude"].values
    want_lon = (i0x + np.arange(exp["nx"]) + 0.5) / 3600.0
    want_lat = (i1y - np.arange(exp["ny"]) - 0.5) / 3600.0
    check(lon.dtype == np.float64 and lat.dtype == np.float64, "coordinates are float64")
    check(np.allclose(lon, want_lon, rtol=0, atol=1e-9), f"longitude = pixel centres ({lon[0]!r} .. {lon[-1]!r})")
    check(np.allclose(lat, want_lat, rtol=0, atol=1e-9), f"latitude = pixel centres ({lat[0]!r} .. {lat[-1]!r})")
    check(bool(np.all(np.diff(lat) < 0)), "latitude descending")
    gt = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
    check(abs(gt[0] * 3600 - i0x) < 1e-6 and abs(gt[3] * 3600 - i1y) < 1e-6 and abs(gt[1] * 3600 - 1) < 1e-9
          and abs(gt[5] * 3600 + 1) < 1e-9, f"GeoTransform {gt}: edges on multiples of 1/3600 (anchored)")
    check(ds["latitude"].attrs.get("units") == "degrees_north"
          and ds["longitude"].attrs.get("units") == "degrees_east", "degree units")

    times = ds["time"].values
    check(np.issubdtype(times.dtype, np.datetime64), f"time decoded ({times.dtype})")
    got = [str(t)[:10] for t in times]
    check(got == exp["times"], f"time labels {got} (bin starts; the first is the 1st of the start month)")

    bands = [str(b) for b in ds["band"].values]
    check(bands == exp["bands"], f"band coordinate {bands}")
    crs = ds.rio.crs
    check(crs is not None and crs.to_epsg() == exp["epsg"], f"ds.rio.crs {crs}")
    check(da.rio.crs is not None and da.rio.crs.to_epsg() == exp["epsg"], "da.rio.crs")

    e = da.encoding
    check(e.get("scale_factor") == 0.0001 and e.get("add_offset") == -0.1,
          f"scale/offset {e.get('scale_factor')} {e.get('add_offset')}")
    cs = exp["chunk_size"]
    want_chunks = (1, cs, cs, nb)
    check(tuple(e.get("chunks") or ()) == want_chunks or tuple(e.get("preferred_chunks", {}).values()) == want_chunks,
          f"chunks {e.get('chunks')} == {want_chunks}")
    vals = da.values
    check(str(vals.dtype).startswith("float"), f"mask_and_scale gives floats ({vals.dtype})")
    finite = vals[np.isfinite(vals)]
    check(finite.size > 0, f"{finite.size} values are not fill")
    lo, hi = float(finite.min()), float(finite.max())
    check(lo >= -0.1 and hi <= 6.5, f"reflectance in [-0.1, 6.5] ({lo:.4f} .. {hi:.4f})")

    raw = xr.open_zarr(cube, consolidated=True, mask_and_scale=False)[var]
    check(raw.dtype == np.uint16, f"raw dtype {raw.dtype}")
    dn = raw.values
    check(bool(np.array_equal(np.isnan(vals), dn == 0)), "NaN exactly where the raw value is the fill 0")
    check(bool(np.allclose(vals[dn != 0], dn[dn != 0] * 0.0001 - 0.1, rtol=0, atol=1e-6)),
          "values after mask_and_scale = dn * 0.0001 - 0.1")
    dn.astype("<u2").tofile(export)
    print(f"exported {dn.shape} to {export}")
    for name in indices:
        ix = ds[name]
        check(ix.dims == ("time", "latitude", "longitude"), f"{name} dims {ix.dims}")
        e = ix.encoding
        check(e.get("scale_factor") == 0.0001 and e.get("add_offset") == -3.2768,
              f"{name} scale/offset {e.get('scale_factor')} {e.get('add_offset')}")
        v = ix.values
        raw = xr.open_zarr(cube, consolidated=True, mask_and_scale=False)[name].values
        check(raw.dtype == np.uint16, f"{name} raw dtype {raw.dtype}")
        check(bool(np.array_equal(np.isnan(v), raw == 0)), f"{name}: NaN exactly where the raw value is 0")
        check(bool(np.allclose(v[raw != 0], raw[raw != 0] * 0.0001 - 3.2768, rtol=0, atol=1e-6)),
              f"{name}: values = raw * 0.0001 - 3.2768")
        fin = v[np.isfinite(v)]
        check(fin.size > 0 and fin.min() >= -1 and fin.max() <= 1,
              f"{name} in [-1, 1] ({fin.min():.4f} .. {fin.max():.4f})")
        raw.astype("<u2").tofile(f"{export}.{name}")
        print(f"exported {name} {raw.shape} to {export}.{name}")
    print("all checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
