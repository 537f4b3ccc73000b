#!/usr/bin/env python3
"""The end-to-end archive of eocube: a tiny synthetic Sentinel-2 L2A catalog written with real GDAL,
plus the cubes `eocube build` must produce from it (tests/build.rs, docs/testing.md).

Run with the project's venv:  .venv/bin/python scripts/e2e_fixtures.py [--out DIR] [--force]

Writes into $EOCUBE_FIXTURES/e2e (default <repo>/target/eocube-fixtures/e2e), served by the test
nginx under /e2e/ and loaded into the test pgstac by scripts/stac-server.sh:
  cogs/<item id>/{red,green,blue,nir}.tif   10 m uint16 COGs (DEFLATE, predictor 2, tiles 512, overviews)
  cogs/<item id>/scl.tif                    20 m uint8 SCL COG (tiles 256, nearest overviews)
  cogs/<item id>/{swir16,swir22}.tif        20 m uint16 COGs, and coastal.tif at 60 m (tiles 64): bands
                                            read from their own grids (each pixel: the cell of its
                                            centre, status from the SCL pixel under its centre)
  collection.json, items.ndjson.in          STAC 1.1 collection and items; hrefs start with @HTTP@
                                            (stac-server.sh puts the nginx base URL there)
  items-local.json                          the same items as a FeatureCollection, hrefs = local paths
  oracle/*.bin                              expected cubes, raw little-endian, row-major (see manifest)
  manifest.json                             grid, time bins, bands, scenes, oracle files, figures
  .stamp                                    hash of this script; when it matches nothing is redone

The world is a lattice of 0.01-degree cells (36 cube pixels). Every scene is constant on the
cells: its footprint, no-data staircase, clouds and SCL classes are unions of cells, and each
10 m pixel holds the value of the cell its centre falls in (status from its 20 m SCL pixel). So,
away from a cell edge, every resampling of any scene gives the cell's value, and the cube is
known exactly ("lattice" oracle, pure numpy, no warping). Near cell edges GDAL's warp decides:
the "gdal" oracles warp every scene with GDAL (WarpedVRT, exact transformer) and apply the rules
of DESIGN sections 3, 6, 7 (solar day, first-wins fusion, harmonization, SCL mask, median).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.transform import Affine, from_origin
from rasterio.vrt import WarpedVRT

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()

# ---- the cube grid the tests build (EPSG:4326, 1/3600 degree, edges on multiples of it) ----
DEG = 1.0 / 3600.0
BBOX = (-72.05, 44.0, -71.95, 44.06)  # W S E N; straddles lon -72 (UTM 18 / 19)
I0X, I1Y = -259380, 158616  # west and north edges in 1/3600-degree units
NX, NY = 360, 216
CELL = 36  # cube pixels per 0.01-degree cell
START, END = "2023-05-17", "2023-07-24"  # first bin starts mid-month, last ends before the month does
BINS = [("2023-05-01", "2023-05-31"), ("2023-06-01", "2023-06-30"), ("2023-07-01", "2023-07-31")]
BANDS = ["red", "green", "blue", "nir"]
BAND_IDS = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08", "swir16": "B11", "swir22": "B12",
            "coastal": "B01"}
# bands at their own coarser resolution (metres); their truth comes from truth_native()
NATIVE = {"swir16": 20, "swir22": 20, "coastal": 60}
# the index cube of tests/build.rs: --bands red,nir --index ndvi,nbr (reads swir22 too)
INDEX_READ = ["red", "nir", "swir22"]
INDICES = {"ndvi": ("nir", "red"), "nbr": ("nir", "swir22")}
INDEX_REDUCERS = ("max", "median")
COLLECTION = "e2e-s2-l2a"
VALID = (2, 4, 5, 6, 7, 11)  # DESIGN section 6, --mask default
SOLAR_OFFSET_H = -4  # trunc(lon / 15) for every chunk centre (lon -72.05 .. -71.95)

# ---- truth table: cells CX = floor(lon * 100), CY = floor(lat * 100) ----
CX0, CX1 = -7210, -7190
CY0, CY1 = 4395, 4411

# ---- the scenes ----
# area: cells [cx0, cx1) x [cy0, cy1); corner: SW staircase of k cells with no data;
# offset: subtracted from the data (the item says so through its baseline / boa flag);
# bias: added to clear pixels (a hazy pass nobody flagged: makes the median arithmetic matter);
# wild: every pixel clear and 60000 (must never be used: dated outside [START, END]).
W18 = (-7208, -7199, 4398, 4408)
E19 = (-7202, -7193, 4398, 4408)
ALL18 = (-7207, -7194, 4399, 4407)
NORTH = (-7206, -7194, 4403, 4408)
PERSISTENT = {(-7203, 4402), (-7202, 4402), (-7203, 4403), (-7202, 4403)}  # June's cloud
SCENES = [
    dict(id="S2B_18TXP_20230512_0_L2A", zone=18, dt="2023-05-12T15:46:21Z", area=ALL18, wild=True),
    dict(id="S2A_18TXP_20230519_0_L2A", zone=18, dt="2023-05-19T15:46:19Z", area=W18, corner=3,
         clouds=0.25),
    # same pass, same datetime: (datetime, id) order puts 18TXP first where they overlap
    dict(id="S2A_19TBJ_20230519_0_L2A", zone=19, dt="2023-05-19T15:46:19Z", area=E19, clouds=0.25),
    dict(id="S2B_19TBJ_20230527_0_L2A", zone=19, dt="2023-05-27T15:46:20Z", area=NORTH,
         clouds=0.2, baseline="03.00", offset=1000),
    dict(id="S2A_18TXP_20230603_0_L2A", zone=18, dt="2023-06-03T15:46:22Z", area=ALL18,
         clouds=0.2, shadows=0.06, persistent=True),
    dict(id="S2B_19TBJ_20230608_0_L2A", zone=19, dt="2023-06-08T15:46:18Z", area=E19, clouds=0.2,
         boa=True, offset=1000, persistent=True),
    dict(id="S2A_18TXP_20230613_0_L2A", zone=18, dt="2023-06-13T15:46:19Z", area=W18, corner=2,
         clouds=0.3, persistent=True),
    # 02:10 UTC on the 14th is the 13th at lon -72 (solar day): one observation with the one above,
    # which comes first and is cloudy over June's persistent cloud, while this one sees through it
    dict(id="S2A_19TBJ_20230614_0_L2A", zone=19, dt="2023-06-14T02:10:00Z", area=E19, clouds=0.3),
    dict(id="S2B_18TXP_20230703_0_L2A", zone=18, dt="2023-07-03T15:46:20Z", area=ALL18, clouds=0.3),
    dict(id="S2A_19TBJ_20230708_0_L2A", zone=19, dt="2023-07-08T15:46:21Z", area=E19, clouds=0.3,
         bias=301),
    dict(id="S2B_18TXP_20230713_0_L2A", zone=18, dt="2023-07-13T15:46:19Z", area=W18, clouds=0.3),
    dict(id="S2A_18TXP_20230727_0_L2A", zone=18, dt="2023-07-27T15:46:20Z", area=ALL18, wild=True),
]
CLEAR_CLASSES = [4, 4, 4, 5, 5, 6, 2, 7, 11]
CLOUD_CLASSES = [8, 9, 10]


def parse_dt(s: str) -> dt.datetime:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")


def solar_day(s: str) -> dt.date:
    return (parse_dt(s) + dt.timedelta(hours=SOLAR_OFFSET_H)).date()


def bin_of(day: dt.date):
    """Index of the time bin holding this solar day, or None outside [START, END]."""
    if not (dt.date.fromisoformat(START) <= day <= dt.date.fromisoformat(END)):
        return None
    for i, (a, b) in enumerate(BINS):
        if dt.date.fromisoformat(a) <= day <= dt.date.fromisoformat(b):
            return i
    return None


def harmonize_add(sc: dict) -> int:
    """docs/job.md: boa_offset_applied true -> +1000; baseline < 04.00 -> +1000; else 0."""
    if sc.get("boa") is True:
        return 1000
    if float(sc.get("baseline", "05.09")) < 4.0:
        return 1000
    return 0


# --------------------------------------------------------------------------------------
# Cell-level scenes
# --------------------------------------------------------------------------------------
def truth_table() -> np.ndarray:
    """truth[m, b, cy - CY0, cx - CX0]: the surface (DN with the +1000 offset) per month and band."""
    rng = np.random.default_rng(2023)
    return rng.integers(1500, 9000, size=(len(BINS), len(BANDS), CY1 - CY0, CX1 - CX0)).astype(np.int64)


def truth_native() -> np.ndarray:
    """As truth_table() for the NATIVE bands (its own generator: the 10 m truth stays as it was)."""
    rng = np.random.default_rng(2024)
    return rng.integers(1500, 9000, size=(len(BINS), len(NATIVE), CY1 - CY0, CX1 - CX0)).astype(np.int64)


def scene_cells(sc: dict, idx: int, truth: np.ndarray):
    """(scl[cy, cx] uint8, vals[b, cy, cx] int64) of one scene on the cell table, as stored in
    its files (before harmonization)."""
    rng = np.random.default_rng(1000 + idx)
    shape = (CY1 - CY0, CX1 - CX0)
    cy, cx = np.mgrid[CY0:CY1, CX0:CX1]
    ax0, ax1, ay0, ay1 = sc["area"]
    cov = (cx >= ax0) & (cx < ax1) & (cy >= ay0) & (cy < ay1)
    k = sc.get("corner", 0)
    if k:
        cov &= (cx - ax0) + (cy - ay0) >= k  # staircase no-data corner, south-west
    scl = np.zeros(shape, np.uint8)
    clear = rng.choice(CLEAR_CLASSES, size=shape)
    cloud = rng.random(shape) < sc.get("clouds", 0.0)
    shadow = (rng.random(shape) < sc.get("shadows", 0.0)) & ~cloud
    if sc.get("persistent"):
        for c, r in PERSISTENT:
            cloud[r - CY0, c - CX0] = True
            shadow[r - CY0, c - CX0] = False
    scl[cov] = clear[cov]
    cc = rng.choice(CLOUD_CLASSES, size=shape)
    if sc.get("persistent"):
        for c, r in PERSISTENT:
            cc[r - CY0, c - CX0] = 9
    scl[cov & cloud] = cc[cov & cloud]
    scl[cov & shadow] = 3
    m = bin_of(solar_day(sc["dt"]))
    t = truth[m if m is not None else 0]
    vals = np.zeros((len(BANDS),) + shape, np.int64)
    off, bias = sc.get("offset", 0), sc.get("bias", 0)
    if sc.get("wild"):
        vals[:, cov] = 60000
        return scl, vals
    for b in range(len(BANDS)):
        v = t[b] + bias
        v = np.where(cloud, np.minimum(t[b] + 4000, 20000), v)
        v = np.where(shadow, t[b] // 2 + 600, v)
        vals[b] = np.where(cov, v - off, 0)
    assert vals.min() >= 0 and (vals[:, cov] > 0).all()
    return scl, vals


# --------------------------------------------------------------------------------------
# DESIGN sections 3, 6, 7 on arrays (cells or pixels alike)
# --------------------------------------------------------------------------------------
def median_floor(vals: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """vals (ndays, ..., nb), ok (ndays, ..., nb): median of the ok values, floor of the mean of
    the two middle ones for an even count, 0 where none."""
    big = 1 << 40
    if vals.shape[0] == 0:
        return np.zeros(vals.shape[1:], np.int64)
    v = np.where(ok, vals, big)
    v.sort(axis=0)
    n = ok.sum(axis=0)
    lo = np.take_along_axis(v, np.maximum(n - 1, 0)[None] // 2, axis=0)[0]
    hi = np.take_along_axis(v, np.minimum(n // 2, v.shape[0] - 1)[None], axis=0)[0]
    return np.where(n > 0, (lo + hi) // 2, 0)


def fuse_days(obs, valid=VALID, first_wins=True, utc_days=False, mask=True, harmonize=True):
    """obs: [(scene, scl[...], vals[nb, ...])] of one bin. Returns the observations (solar days)
    in order: values [(..., nb)] (harmonized) and whether each is valid [(..., 1)]."""
    groups: dict = {}
    for sc, scl, vals in obs:
        key = parse_dt(sc["dt"]).date() if utc_days else solar_day(sc["dt"])
        groups.setdefault(key, []).append((sc, scl, vals))
    days_v, days_ok = [], []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda o: (parse_dt(o[0]["dt"]), o[0]["id"]))
        shape = members[0][1].shape
        f_scl = np.zeros(shape, np.int64)
        f_vals = np.zeros(members[0][2].shape, np.int64)
        taken = np.zeros(shape, bool)
        for sc, scl, vals in members:
            add = harmonize_add(sc) if harmonize else 0
            hv = np.where(vals != 0, np.minimum(vals + add, 65535), 0)
            has = (scl != 0) & (hv != 0).all(axis=0)
            if not first_wins:  # the wrong rule: first *valid* observation wins
                has &= np.isin(scl, valid)
            win = has & ~taken
            f_scl[win] = scl[win]
            f_vals[:, win] = hv[:, win]
            taken |= win
        ok = np.isin(f_scl, valid) if mask else f_scl != 0
        days_v.append(np.moveaxis(f_vals, 0, -1))
        days_ok.append(ok[..., None] & (np.moveaxis(f_vals, 0, -1) != 0))
    return days_v, days_ok


def reduce_month(obs, **kw):
    """obs: [(scene, scl[...], vals[nb, ...])] of one bin. Returns (cube[..., nb], nobs[...])."""
    days_v, days_ok = fuse_days(obs, **kw)
    nb = obs[0][2].shape[0] if obs else len(BANDS)
    if not days_v:
        shape = obs[0][1].shape if obs else (NY, NX)
        return np.zeros(shape + (nb,), np.int64), np.zeros(shape, np.int64)
    v, ok = np.stack(days_v), np.stack(days_ok)
    return median_floor(v, ok), ok[..., 0].sum(axis=0)


def cube_from(obs_all, use_window=True, **kw):
    """obs_all: [(scene, scl, vals)] of every scene; returns (cube[t, ..., nb], nobs[t, ...])."""
    cubes, nobs = [], []
    for m in range(len(BINS)):
        if use_window:
            obs = [o for o in obs_all if bin_of(solar_day(o[0]["dt"])) == m]
        else:  # the wrong rule: the whole calendar month, ignoring --start / --end
            a, b = (dt.date.fromisoformat(d) for d in BINS[m])
            obs = [o for o in obs_all if a <= solar_day(o[0]["dt"]) <= b]
        c, n = reduce_month(obs, **kw)
        cubes.append(c)
        nobs.append(n)
    return np.stack(cubes), np.stack(nobs)


def cells_to_pixels(a: np.ndarray) -> np.ndarray:
    """Expand an array indexed [..., cy - CY0, cx - CX0, (nb)] to the cube grid [..., NY, NX, (nb)]."""
    rows = (I1Y - np.arange(NY) - 1) // CELL - CY0
    cols = (I0X + np.arange(NX)) // CELL - CX0
    return a[..., rows[:, None], cols[None, :]] if a.ndim == 3 else a[:, rows[:, None], cols[None, :], :]


def edge_mask() -> np.ndarray:
    """1 where the cube pixel touches a cell edge (within one pixel of it)."""
    r, c = (I1Y - np.arange(NY) - 1) % CELL, (I0X + np.arange(NX)) % CELL
    er, ec = (r == 0) | (r == CELL - 1), (c == 0) | (c == CELL - 1)
    return (er[:, None] | ec[None, :]).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Rasters
# --------------------------------------------------------------------------------------
def scene_grid(sc: dict):
    """UTM grid of a scene: the area's cells plus 100 m, snapped outward to 20 m."""
    ax0, ax1, ay0, ay1 = sc["area"]
    lon = np.concatenate([np.linspace(ax0, ax1, 50), np.full(50, ax1), np.linspace(ax1, ax0, 50), np.full(50, ax0)]) / 100
    lat = np.concatenate([np.full(50, ay0), np.linspace(ay0, ay1, 50), np.full(50, ay1), np.linspace(ay1, ay0, 50)]) / 100
    x, y = Transformer.from_crs(4326, 32600 + sc["zone"], always_xy=True).transform(lon, lat)
    x0 = math.floor((min(x) - 100) / 20) * 20
    x1 = math.ceil((max(x) + 100) / 20) * 20
    y0 = math.floor((min(y) - 100) / 20) * 20
    y1 = math.ceil((max(y) + 100) / 20) * 20
    return x0, y1, (y1 - y0) // 10, (x1 - x0) // 10


def cells_of(epsg: int, x: np.ndarray, y: np.ndarray):
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
    return np.floor(np.asarray(lon) * 100).astype(np.int64), np.floor(np.asarray(lat) * 100).astype(np.int64)


def lookup(table: np.ndarray, cx: np.ndarray, cy: np.ndarray, fill=0):
    inside = (cx >= CX0) & (cx < CX1) & (cy >= CY0) & (cy < CY1)
    out = np.full(cx.shape, fill, dtype=table.dtype)
    out[inside] = table[cy[inside] - CY0, cx[inside] - CX0]
    return out


def write_cog(path: Path, data: np.ndarray, epsg: int, transform: Affine, tile: int, resampling: str):
    h, w = data.shape
    with rasterio.open(path, "w", driver="COG", width=w, height=h, count=1, dtype=data.dtype.name,
                       crs=f"EPSG:{epsg}", transform=transform, nodata=0, compress="DEFLATE",
                       predictor=2, blocksize=tile, overviews="AUTO",
                       overview_resampling=resampling) as dst:
        dst.write(data, 1)
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", path
        assert src.overviews(1), f"{path}: no overviews"


def band_values(sc: dict, tv: np.ndarray, status: np.ndarray) -> np.ndarray:
    """A band's stored pixels from the truth `tv` under each pixel and its SCL `status`: clouds
    brighten, shadows darken, the scene's bias and removed offset apply, no data is 0."""
    if sc.get("wild"):
        v = np.full(tv.shape, 60000, np.int64)
    else:
        v = tv + sc.get("bias", 0)
        v = np.where(np.isin(status, CLOUD_CLASSES), np.minimum(tv + 4000, 20000), v)
        v = np.where(status == 3, tv // 2 + 600, v)
        v = v - sc.get("offset", 0)
    return np.where(status != 0, v, 0).astype(np.uint16)


def write_scene(out: Path, sc: dict, idx: int, truth: np.ndarray):
    """Rasterize the cell description: SCL per 20 m pixel (status by its centre's cell), each
    10 m pixel = the cell value of its own centre, with the status of its 20 m pixel."""
    epsg = 32600 + sc["zone"]
    x0, y1, h, w = scene_grid(sc)
    h2, w2 = h // 2, w // 2
    scl_c, _ = scene_cells(sc, idx, truth)
    # status per 20 m pixel
    xs2 = x0 + (np.arange(w2) + 0.5) * 20
    ys2 = y1 - (np.arange(h2) + 0.5) * 20
    X2, Y2 = np.meshgrid(xs2, ys2)
    cx2, cy2 = cells_of(epsg, X2.ravel(), Y2.ravel())
    scl = lookup(scl_c, cx2, cy2).reshape(h2, w2)
    # the cell of each 10 m pixel centre, and its 20 m parent's status
    xs = x0 + (np.arange(w) + 0.5) * 10
    ys = y1 - (np.arange(h) + 0.5) * 10
    X, Y = np.meshgrid(xs, ys)
    cx, cy = cells_of(epsg, X.ravel(), Y.ravel())
    cx, cy = cx.reshape(h, w), cy.reshape(h, w)
    parent = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)
    # per-pixel value from the truth of its own cell, with the parent's status
    m = bin_of(solar_day(sc["dt"]))
    t = truth[m if m is not None else 0]
    d = out / "cogs" / sc["id"]
    d.mkdir(parents=True, exist_ok=True)
    t10 = from_origin(x0, y1, 10, 10)
    t20 = from_origin(x0, y1, 20, 20)
    assets = {}
    for b, name in enumerate(BANDS):
        v = band_values(sc, lookup(t[b], cx, cy, fill=1500), parent)
        write_cog(d / f"{name}.tif", v, epsg, t10, 512, "average")
        assets[name] = dict(file=f"cogs/{sc['id']}/{name}.tif", shape=[h, w], transform=list(t10)[:6], gsd=10)
    tn = truth_native()[m if m is not None else 0]
    for b, (name, res) in enumerate(NATIVE.items()):
        # each pixel: the cell of its centre, the status of the SCL pixel its centre falls in
        k = res // 20
        hn, wn = h2 // k, w2 // k
        xs_n = x0 + (np.arange(wn) + 0.5) * res
        ys_n = y1 - (np.arange(hn) + 0.5) * res
        Xn, Yn = np.meshgrid(xs_n, ys_n)
        cxn, cyn = cells_of(epsg, Xn.ravel(), Yn.ravel())
        st = scl[k // 2::k, k // 2::k][:hn, :wn]
        v = band_values(sc, lookup(tn[b], cxn, cyn, fill=1500).reshape(hn, wn), st)
        tr = from_origin(x0, y1, res, res)
        write_cog(d / f"{name}.tif", v, epsg, tr, 256 if res == 20 else 64, "average")  # 60 m: ~120 px
        assets[name] = dict(file=f"cogs/{sc['id']}/{name}.tif", shape=[hn, wn], transform=list(tr)[:6], gsd=res)
    write_cog(d / "scl.tif", scl.astype(np.uint8), epsg, t20, 256, "nearest")
    assets["scl"] = dict(file=f"cogs/{sc['id']}/scl.tif", shape=[h2, w2], transform=list(t20)[:6], gsd=20)
    cov = scl_c != 0
    cloud = np.isin(scl_c, CLOUD_CLASSES + [3]) & cov
    return assets, float(round(100.0 * cloud.sum() / max(cov.sum(), 1), 2))


def stac_item(sc: dict, assets: dict, cloud_cover: float, base: str) -> dict:
    ax0, ax1, ay0, ay1 = sc["area"]
    w, e, s, n = ax0 / 100, ax1 / 100, ay0 / 100, ay1 / 100
    props = {
        "datetime": sc["dt"], "platform": "sentinel-2" + sc["id"][2].lower(), "constellation": "sentinel-2",
        "instruments": ["msi"], "eo:cloud_cover": cloud_cover, "proj:code": f"EPSG:{32600 + sc['zone']}",
        "s2:processing_baseline": sc.get("baseline", "05.09"), "s2:mgrs_tile": sc["id"][5:10],
    }
    if "boa" in sc:
        props["earthsearch:boa_offset_applied"] = sc["boa"]
    out = {}
    for name, a in assets.items():
        if name == "scl":
            bands = [{"name": "SCL", "nodata": 0, "data_type": "uint8"}]
            roles = ["data"]
        else:
            bands = [{"name": BAND_IDS[name], "eo:common_name": name, "nodata": 0, "data_type": "uint16",
                      "raster:scale": 0.0001, "raster:offset": -0.1, "raster:spatial_resolution": a["gsd"]}]
            roles = ["data", "reflectance"]
        out[name] = {"href": f"{base}/{a['file']}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                     "title": name, "roles": roles, "gsd": a["gsd"], "proj:code": props["proj:code"],
                     "proj:shape": a["shape"], "proj:transform": a["transform"], "bands": bands}
    return {
        "type": "Feature", "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                            "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
                            "https://stac-extensions.github.io/raster/v2.0.0/schema.json"],
        "id": sc["id"], "collection": COLLECTION, "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": props, "links": [], "assets": out,
    }


# --------------------------------------------------------------------------------------
# GDAL oracle
# --------------------------------------------------------------------------------------
CUBE_T = Affine(DEG, 0.0, I0X * DEG, 0.0, -DEG, I1Y * DEG)


def pick_level(path: Path) -> int:
    """odc-stac's overview rule (DESIGN section 5): shrink = floor(min source px per output px),
    the coarsest overview whose factor <= shrink; returns the rasterio overview_level (-1 = full)."""
    with rasterio.open(path) as src:
        res = src.res[0]
        factors = src.overviews(1)
    lat = (BBOX[1] + BBOX[3]) / 2
    ox = DEG * 111320.0 * math.cos(math.radians(lat))
    oy = DEG * 110950.0
    shrink = math.floor(min(ox / res, oy / res))
    level = -1
    for i, f in enumerate(factors):
        if f <= shrink:
            level = i
    return level


def gdal_warp(path: Path, resampling: str, level: int) -> np.ndarray:
    kw = {} if level < 0 else {"overview_level": level}
    with rasterio.open(path, **kw) as src, WarpedVRT(
            src, crs="EPSG:4326", transform=CUBE_T, width=NX, height=NY,
            resampling=getattr(Resampling, resampling), tolerance=1e-9, src_nodata=0, nodata=0) as vrt:
        return vrt.read(1).astype(np.int64)


def gdal_obs(out: Path, resampling: str, scl_resampling: str = "nearest", bands=BANDS):
    """Every scene warped by GDAL: each band from its own file at its own overview level."""
    obs, levels = [], {}
    for sc in SCENES:
        d = out / "cogs" / sc["id"]
        lv = {b: pick_level(d / f"{b}.tif") for b in bands}
        ls = pick_level(d / "scl.tif")
        levels = {**{f"{b}_{NATIVE.get(b, 10)}m": lv[b] for b in bands}, "scl_20m": ls}
        vals = np.stack([gdal_warp(d / f"{b}.tif", resampling, lv[b]) for b in bands])
        scl = gdal_warp(d / "scl.tif", scl_resampling, ls)
        obs.append((sc, scl, vals))
    return obs, levels


def index_encode(v: np.ndarray) -> np.ndarray:
    """eocube's stored index (crate::index::encode): floor(v * 10000 + 0.5) + 32768 in [1, 65535],
    0 where v is NaN."""
    v64 = v.astype(np.float64)
    with np.errstate(invalid="ignore"):
        e = np.clip(np.floor(v64 * 1e4 + 0.5) + 32768, 1, 65535)
    return np.where(np.isnan(v64), 0, e).astype(np.int64)


def index_cubes(obs):
    """The index cubes of INDICES from GDAL's per-scene warps of INDEX_READ: per observation
    (fused, masked) reflectance = dn * 0.0001 - 0.1 in float64 cast to float32, the normalized
    difference in float32, encoded; then each reducer of INDEX_REDUCERS over the observations.
    Returns {(index, reducer): cube[t, y, x]}."""
    out = {}
    for m in range(len(BINS)):
        days_v, days_ok = fuse_days([o for o in obs if bin_of(solar_day(o[0]["dt"])) == m])
        enc = {}
        for name, (a, b) in INDICES.items():
            per_day = []
            for v, ok in zip(days_v, days_ok):
                refl = {k: np.where(ok[..., 0] & (v[..., i] != 0),
                                    (v[..., i].astype(np.float64) * 0.0001 - 0.1), np.nan).astype(np.float32)
                        for i, k in enumerate(INDEX_READ)}
                with np.errstate(invalid="ignore", divide="ignore"):
                    x = (refl[a] - refl[b]) / (refl[a] + refl[b])
                x = np.where(refl[a] + refl[b] == 0, np.float32(np.nan), x)
                per_day.append(index_encode(x))
            enc[name] = np.stack(per_day)
        for name, e in enc.items():
            valid = e != 0
            out.setdefault((name, "max"), []).append(np.where(valid.any(0), np.where(valid, e, 0).max(0), 0))
            out.setdefault((name, "median"), []).append(median_floor(e[..., None], valid[..., None])[..., 0])
    return {k: np.stack(v) for k, v in out.items()}


def le(a: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(a).astype(np.dtype(dtype).newbyteorder("<")).tobytes()


# --------------------------------------------------------------------------------------
def generate(out: Path):
    t0 = time.time()
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "oracle").mkdir(parents=True)
    truth = truth_table()
    cells = [scene_cells(sc, i, truth) for i, sc in enumerate(SCENES)]
    obs_cells = [(sc, scl, vals) for sc, (scl, vals) in zip(SCENES, cells)]

    # the lattice oracle and the self-checks: each rule of DESIGN must change the cube
    lat_cube, lat_nobs = cube_from(obs_cells)
    edge = edge_mask().astype(bool)
    px_cube, px_nobs = cells_to_pixels(lat_cube), cells_to_pixels(lat_nobs)
    figures = {}

    def differs(name, **kw):
        c, _ = cube_from(obs_cells, **kw)
        n = int((cells_to_pixels(c) != px_cube).any(axis=-1)[:, ~edge].sum())
        figures[f"pixels_changed_by_{name}"] = n
        assert n >= 300, f"self-check: {name} changes only {n} pixels; the archive cannot detect it"

    differs("using_scenes_outside_start_end", use_window=False)
    differs("no_harmonization", harmonize=False)
    differs("first_valid_wins", first_wins=False)
    differs("utc_date_grouping", utc_days=True)
    differs("no_mask", mask=False)
    t_px = cells_to_pixels(truth.transpose(0, 2, 3, 1))  # (t, y, x, b)
    figures["valid_fraction_per_bin"] = [round(float((px_nobs[m] > 0).mean()), 4) for m in range(len(BINS))]
    for m, f in enumerate(figures["valid_fraction_per_bin"]):
        assert 0.5 < f < 0.995, f"bin {m}: {f} of the pixels have a valid observation"
    has = px_nobs > 0
    figures["lattice_equals_truth_where_valid"] = round(float((px_cube == t_px).all(-1)[has].mean()), 4)
    even = int(((px_nobs % 2 == 0) & has & (px_cube != t_px).any(-1)).sum())
    figures["even_count_pixels_off_truth"] = even
    assert even >= 300, f"self-check: only {even} pixels take the mean of two middle values"

    # the archive
    base = "@HTTP@/e2e"
    items, local, scenes = [], [], []
    for i, sc in enumerate(SCENES):
        assets, cc = write_scene(tmp, sc, i, truth)
        items.append(stac_item(sc, assets, cc, base))
        local.append(stac_item(sc, assets, cc, str(out)))
        day = solar_day(sc["dt"])
        scenes.append(dict(id=sc["id"], epsg=32600 + sc["zone"], datetime=sc["dt"], solar_day=day.isoformat(),
                           bbox=items[-1]["bbox"],
                           bin=bin_of(day), wild=bool(sc.get("wild")), offset_removed=sc.get("offset", 0),
                           harmonize_add=harmonize_add(sc), bias=sc.get("bias", 0), cloud_cover=cc,
                           shape_10m=assets["red"]["shape"]))
    (tmp / "items.ndjson.in").write_text("".join(json.dumps(it) + "\n" for it in items))
    (tmp / "items-local.json").write_text(json.dumps({"type": "FeatureCollection", "features": local}, indent=1))
    collection = {
        "type": "Collection", "stac_version": "1.1.0", "id": COLLECTION,
        "title": "eocube e2e: synthetic Sentinel-2 L2A (scripts/e2e_fixtures.py)",
        "description": "Tiny synthetic Sentinel-2 L2A archive across the UTM 18/19 boundary for eocube's end-to-end tests.",
        "license": "CC0-1.0", "links": [],
        "extent": {"spatial": {"bbox": [[-72.1, 43.95, -71.9, 44.11]]},
                   "temporal": {"interval": [["2023-05-01T00:00:00Z", "2023-08-01T00:00:00Z"]]}},
    }
    (tmp / "collection.json").write_text(json.dumps(collection, indent=1))

    # the GDAL oracles: nearest (default) and bilinear reflectance; SCL always nearest
    files = {}
    for res in ("nearest", "bilinear"):
        obs, levels = gdal_obs(tmp, res)
        c, n = cube_from(obs)
        (tmp / f"oracle/gdal_{res}.bin").write_bytes(le(c, "u2"))
        (tmp / f"oracle/gdal_{res}_nobs.bin").write_bytes(le(n, "u1"))
        files[f"gdal_{res}"] = f"oracle/gdal_{res}.bin"
        files[f"gdal_{res}_nobs"] = f"oracle/gdal_{res}_nobs.bin"
        away = np.broadcast_to(~edge, n.shape)
        same = (c == px_cube).all(-1)
        figures[f"gdal_{res}_equals_lattice_off_edges"] = round(float(same[away].mean()), 6)
        figures[f"gdal_{res}_equals_lattice_everywhere"] = round(float(same.mean()), 6)
        figures["src_levels"] = levels
        # the lattice oracle must be exact off the edges, whatever the resampling
        assert same[away].mean() > 0.9999, (res, figures)
        if res == "bilinear":
            # the seed demo's bug, simulated: SCL warped bilinearly too. tests/build.rs looks at the
            # masked pixels next to valid ones; this many of them would get a value.
            _, n_bug = cube_from(gdal_obs(tmp, "bilinear", "bilinear")[0])
            nb = np.zeros_like(n, dtype=bool)
            nb[:, 1:, :] |= n[:, :-1, :] > 0
            nb[:, :-1, :] |= n[:, 1:, :] > 0
            nb[:, :, 1:] |= n[:, :, :-1] > 0
            nb[:, :, :-1] |= n[:, :, 1:] > 0
            boundary = (n == 0) & nb
            boundary[:, [0, -1], :] = False
            boundary[:, :, [0, -1]] = False
            filled = int((boundary & (n_bug > 0)).sum())
            figures["masked_boundary_pixels"] = int(boundary.sum())
            figures["boundary_pixels_filled_if_scl_bilinear"] = filled
            assert filled > 0.05 * boundary.sum(), f"self-check: bilinear SCL fills only {filled} boundary pixels"
    # bands at their own resolution (20 m swir16 / swir22, 60 m coastal), nearest, each read from
    # its own grid; and the index cubes from the warps of the bands they read
    native = list(NATIVE)
    obs, levels = gdal_obs(tmp, "nearest", bands=native)
    c, n = cube_from(obs)
    (tmp / "oracle/gdal_nearest_native.bin").write_bytes(le(c, "u2"))
    files["gdal_nearest_native"] = "oracle/gdal_nearest_native.bin"
    figures["native_bands"] = native
    figures["native_src_levels"] = levels
    figures["native_valid_fraction"] = round(float((n > 0).mean()), 4)
    obs, _ = gdal_obs(tmp, "nearest", bands=INDEX_READ)
    for (name, red), cube in index_cubes(obs).items():
        key = f"gdal_nearest_{name}_{red}"
        (tmp / f"oracle/{key}.bin").write_bytes(le(cube, "u2"))
        files[key] = f"oracle/{key}.bin"
        v = cube[cube != 0] * 0.0001 - 3.2768
        figures[f"{key}_range"] = [round(float(v.min()), 4), round(float(v.max()), 4)]
    (tmp / "oracle/lattice.bin").write_bytes(le(px_cube, "u2"))
    (tmp / "oracle/lattice_nobs.bin").write_bytes(le(px_nobs, "u1"))
    (tmp / "oracle/truth.bin").write_bytes(le(t_px, "u2"))
    (tmp / "oracle/edge.bin").write_bytes(le(edge, "u1"))
    files.update(lattice="oracle/lattice.bin", lattice_nobs="oracle/lattice_nobs.bin", truth="oracle/truth.bin",
                 edge="oracle/edge.bin")

    manifest = dict(
        generator=f"scripts/e2e_fixtures.py (rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__})",
        collection=COLLECTION, items_template="items.ndjson.in", items_local="items-local.json",
        href_placeholder="@HTTP@",
        bbox=list(BBOX), start=START, end=END, time_step="1M", crs="EPSG:4326", resolution="1/3600",
        nx=NX, ny=NY, origin_index=[I0X, I1Y], cell_px=CELL,
        geotransform=[I0X * DEG, DEG, 0.0, I1Y * DEG, 0.0, -DEG],
        times=[a for a, _ in BINS], bands=BANDS, valid_classes=list(VALID),
        oracle_layout="raw little-endian, row-major: cubes uint16 (time, latitude, longitude, band) with band "
                      "in the order of `bands`; *_nobs uint8 (time, latitude, longitude) = valid solar days; "
                      "edge uint8 (latitude, longitude) = 1 within one pixel of a cell edge; "
                      "gdal_nearest_native: bands `native_bands` of figures; gdal_nearest_<index>_<reducer>: "
                      "uint16 (time, latitude, longitude), eocube's index encoding",
        oracle=files, scenes=scenes, figures=figures,
    )
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (tmp / ".stamp").write_text(SCRIPT_HASH + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"e2e fixtures: {len(SCENES)} scenes, {size / 1e6:.1f} MB in {out} in {time.time() - t0:.1f} s; "
          f"figures {json.dumps(figures)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None,
                    help="output dir (default $EOCUBE_FIXTURES/e2e or target/eocube-fixtures/e2e)")
    ap.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = ap.parse_args()
    base = Path(os.environ.get("EOCUBE_FIXTURES") or ROOT / "target/eocube-fixtures")
    out = (args.out or base / "e2e").resolve()
    stamp = out / ".stamp"
    if (not args.force and stamp.exists() and stamp.read_text().strip() == SCRIPT_HASH
            and (out / "manifest.json").exists()):
        print(f"e2e fixtures: up to date in {out}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    generate(out)


if __name__ == "__main__":
    sys.exit(main())
