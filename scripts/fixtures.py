#!/usr/bin/env python3
"""Generate the test fixtures of eocube with real GDAL (the rasterio wheel).

Run with the project's venv:  .venv/bin/python scripts/fixtures.py [--out DIR] [--force]
                              .venv/bin/python scripts/fixtures.py --full-size DIR

Writes into $EOCUBE_FIXTURES (default: <repo>/target/eocube-fixtures):
  cogs/*.tif              true COGs (and one stripped GTiff), see COGS below
  windows/<cog>/*.bin     expected pixels of read windows, raw little-endian, row-major
  bad/*.tif               broken / unsupported files
  warp/*.bin              GDAL's warp answers (exact transformer, see gdal_warp), raw LE uint16
  manifest.json           the index the Rust tests read (layout: docs/testing.md)
  .stamp                  hash of this script; when it matches, nothing is regenerated

Deterministic: fixed numpy seeds, no timestamps in the files that matter to the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import Affine, from_origin
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
DEG = 1.0 / 3600.0  # target grid resolution of the warp cases
CHUNK = 256  # target chunk size of the warp cases

warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)


# --------------------------------------------------------------------------------------
# Minimal TIFF / BigTIFF IFD walker, used to patch tags in place
# --------------------------------------------------------------------------------------
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}
INT_FORMATS = {1: "B", 3: "H", 4: "I", 16: "Q", 13: "I", 18: "Q"}


def tiff_ifds(buf: bytes):
    """Yield a list per IFD (in chain order) of entries
    {tag, type, count, pos} where pos = absolute offset of the value bytes."""
    bo = {b"II": "<", b"MM": ">"}[bytes(buf[:2])]
    magic = struct.unpack(bo + "H", buf[2:4])[0]
    big = magic == 43
    if magic not in (42, 43):
        raise ValueError("not a TIFF")
    off = struct.unpack(bo + ("Q" if big else "I"), buf[8:16] if big else buf[4:8])[0]
    ifds = []
    seen = set()
    while off and off not in seen:
        seen.add(off)
        if big:
            n = struct.unpack(bo + "Q", buf[off:off + 8])[0]
            p, esz = off + 8, 20
        else:
            n = struct.unpack(bo + "H", buf[off:off + 2])[0]
            p, esz = off + 2, 12
        entries = []
        for i in range(n):
            e = p + i * esz
            tag, typ = struct.unpack(bo + "HH", buf[e:e + 4])
            if big:
                count = struct.unpack(bo + "Q", buf[e + 4:e + 12])[0]
                vpos, inline = e + 12, 8
            else:
                count = struct.unpack(bo + "I", buf[e + 4:e + 8])[0]
                vpos, inline = e + 8, 4
            size = TYPE_SIZES.get(typ, 1) * count
            if size > inline:
                vpos = struct.unpack(bo + ("Q" if big else "I"), buf[vpos:vpos + inline])[0]
            entries.append({"tag": tag, "type": typ, "count": count, "pos": vpos})
        ifds.append(entries)
        nxt = p + n * esz
        off = struct.unpack(bo + ("Q" if big else "I"), buf[nxt:nxt + (8 if big else 4)])[0]
    return bo, ifds


def tiff_patch_int(buf: bytearray, bo: str, entry: dict, value: int, index: int = 0):
    fmt = INT_FORMATS[entry["type"]]
    struct.pack_into(bo + fmt, buf, entry["pos"] + index * struct.calcsize(fmt), value)


def tiff_get_int(buf: bytes, bo: str, entry: dict, index: int = 0) -> int:
    fmt = INT_FORMATS[entry["type"]]
    return struct.unpack_from(bo + fmt, buf, entry["pos"] + index * struct.calcsize(fmt))[0]


def tiff_tags(path: Path) -> set[int]:
    _, ifds = tiff_ifds(path.read_bytes())
    return {e["tag"] for ifd in ifds for e in ifd}


def patch_compression(src: Path, dst: Path, old: int | None, new: int) -> int:
    buf = bytearray(src.read_bytes())
    bo, ifds = tiff_ifds(buf)
    n = 0
    for ifd in ifds:
        for e in ifd:
            if e["tag"] == 259:
                if old is not None and tiff_get_int(buf, bo, e) != old:
                    raise ValueError(f"{src}: compression is not {old}")
                tiff_patch_int(buf, bo, e, new)
                n += 1
    if n == 0:
        raise ValueError(f"{src}: no Compression tag")
    dst.write_bytes(bytes(buf))
    return n


# --------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------
def content(shape, dtype, seed, nodata_corner=False, holes=0, lo=1000.0, hi=12000.0,
            noise=12.0):
    """Smooth gradient + a few waves + noise, in a realistic range for the dtype."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    t = 0.5 * (x / w + y / h)
    wave = 0.08 * np.sin(x / 37.0 + seed) * np.cos(y / 53.0 - seed)
    v = lo + (hi - lo) * np.clip(0.06 + 0.86 * t + wave, 0, 1)
    v = v + rng.normal(0.0, noise, size=shape)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        v = np.clip(np.rint(v), max(info.min, -32000), info.max)
        if info.min == 0:
            v = np.maximum(v, 1)  # 0 is reserved for no-data
    else:  # quantize floats (like scaled reflectance) so they compress
        v = np.round(v * 4096.0) / 4096.0
    a = v.astype(dtype)
    if nodata_corner:  # Sentinel-2 edge scene: diagonal no-data corner (bottom-left)
        a[(h - y) + x < 0.45 * min(h, w) + 0.0] = 0
    for _ in range(holes):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = int(rng.integers(6, 40))
        a[((y - cy) ** 2 + (x - cx) ** 2) < r * r] = 0
    return a


# --------------------------------------------------------------------------------------
# The COG matrix
# --------------------------------------------------------------------------------------
# name, epsg, dtype, compression, predictor, tile, bigtiff, nodata, (h, w), origin, res,
# extra kwargs for content()
COGS = [
    # uint16, nodata 0 with a no-data corner and holes
    dict(name="u16_18n_deflate_p2_t1024", epsg=32618, dtype="uint16", compression="deflate",
         predictor=2, tile=1024, nodata=0, shape=(3300, 3300), origin=(600000, 5000000), res=10,
         corner=True, holes=5),
    dict(name="u16_19n_deflate_p1_t512", epsg=32619, dtype="uint16", compression="deflate",
         predictor=1, tile=512, nodata=0, shape=(1150, 1300), origin=(300000, 4900020), res=10,
         corner=True, holes=3),
    dict(name="u16_20s_lzw_p2_t512", epsg=32720, dtype="uint16", compression="lzw",
         predictor=2, tile=512, nodata=0, shape=(1234, 1500), origin=(399960, 7000000), res=20,
         corner=False, holes=4),
    dict(name="u16_20s_zstd_p2_t1024", epsg=32720, dtype="uint16", compression="zstd",
         predictor=2, tile=1024, nodata=0, shape=(1100, 2100), origin=(500000, 6800000), res=10,
         corner=True, holes=2),
    dict(name="u16_18n_none_t512", epsg=32618, dtype="uint16", compression="none",
         predictor=1, tile=512, nodata=0, shape=(900, 1000), origin=(699960, 4800000), res=10,
         corner=True, holes=2),
    dict(name="u16_20s_bigtiff_deflate_p2_t512", epsg=32720, dtype="uint16",
         compression="deflate", predictor=2, tile=512, nodata=0, bigtiff=True,
         shape=(1100, 1100), origin=(600000, 6900000), res=10, corner=False, holes=3),
    # other dtypes
    dict(name="u8_19n_deflate_p2_t512", epsg=32619, dtype="uint8", compression="deflate",
         predictor=2, tile=512, nodata=None, shape=(1100, 1200), origin=(250000, 4950000),
         res=10, lo=5, hi=250, noise=4),
    dict(name="i16_20s_lzw_p2_t512", epsg=32720, dtype="int16", compression="lzw",
         predictor=2, tile=512, nodata=None, shape=(1111, 1234), origin=(450000, 6950000),
         res=10, lo=-3000, hi=9000, noise=80),
    dict(name="f32_18n_deflate_p3_t512", epsg=32618, dtype="float32", compression="deflate",
         predictor=3, tile=512, nodata=None, shape=(1300, 1100), origin=(650000, 4850000),
         res=10, lo=-0.05, hi=1.2, noise=0.01),
    dict(name="f32_19n_zstd_p3_t1024", epsg=32619, dtype="float32", compression="zstd",
         predictor=3, tile=1024, nodata=None, shape=(1100, 1500), origin=(350000, 4950000),
         res=10, lo=-0.05, hi=1.2, noise=0.01),
    # stripped (not tiled) plain GeoTIFF
    dict(name="u16_18n_stripped_deflate_p2", epsg=32618, dtype="uint16", compression="deflate",
         predictor=2, tile=None, nodata=0, shape=(1150, 1200), origin=(620000, 4950000), res=10,
         corner=True, holes=2),
]
# a copy of this one with Compression patched 8 -> 32946 (old-style deflate code)
DEFLATE_OLD_FROM = "u16_19n_deflate_p1_t512"
DEFLATE_OLD_NAME = "u16_19n_deflate-old_p1_t512"

# Warp source scenes (uint16, nodata 0, DEFLATE pred 2); 60 m copies of the same areas.
SCENES = [
    dict(name="scene_18n_10m", epsg=32618, origin=(730000, 4890000), res=10, shape=(2048, 2048),
         tile=1024),
    dict(name="scene_19n_10m", epsg=32619, origin=(249000, 4890500), res=10, shape=(2048, 2048),
         tile=1024),
    dict(name="scene_20s_10m", epsg=32720, origin=(490000, 6690000), res=10, shape=(2048, 2048),
         tile=1024, corner=True),
    dict(name="scene_18n_60m", epsg=32618, origin=(730000, 4890000), res=60, shape=(342, 342),
         tile=512),
    dict(name="scene_19n_60m", epsg=32619, origin=(249000, 4890500), res=60, shape=(342, 342),
         tile=512),
    dict(name="scene_20s_60m", epsg=32720, origin=(490000, 6690000), res=60, shape=(342, 342),
         tile=512, corner=True),
]

COMPRESS_GDAL = {"none": "NONE", "deflate": "DEFLATE", "lzw": "LZW", "zstd": "ZSTD"}


def write_tif(path: Path, spec: dict, data: np.ndarray):
    h, w = data.shape
    profile = dict(width=w, height=h, count=1, dtype=spec["dtype"],
                   crs=f"EPSG:{spec['epsg']}",
                   transform=from_origin(spec["origin"][0], spec["origin"][1], spec["res"],
                                         spec["res"]),
                   compress=COMPRESS_GDAL[spec["compression"]])
    if spec.get("nodata") is not None:
        profile["nodata"] = spec["nodata"]
    if spec["compression"] != "none":
        profile["predictor"] = spec["predictor"]
    if spec["compression"] == "zstd":
        profile["level"] = 9
    if spec.get("bigtiff"):
        profile["bigtiff"] = "YES"
    if spec["tile"] is None:
        profile.update(driver="GTiff", tiled=False)
    else:
        profile.update(driver="COG", blocksize=spec["tile"], overviews="AUTO",
                       overview_resampling="nearest" if spec["dtype"] == "uint8" else "average")
        # small images (<= one tile) would get no overview with AUTO: force one level
        if max(h, w) <= spec["tile"]:
            profile["overview_count"] = 1
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def windows_for(h, w, ovs):
    """(level, row, col, height, width) windows: interior, across the right/bottom edge,
    partly outside at negative row/col, and on overview levels."""
    out = [
        (0, h // 3, w // 4, 300, 257),
        (0, h - 100, w - 150, 256, 300),  # crosses bottom and right edges
        (0, -37, -50, 200, 180),  # partly outside, top-left
    ]
    if ovs:
        oh, ow = -(-h // ovs[0]), -(-w // ovs[0])
        out.append((1, oh - 200, ow - 220, 300, 320))  # crosses bottom and right edges
        k = len(ovs)
        oh, ow = -(-h // ovs[-1]), -(-w // ovs[-1])
        # coarsest level from outside the top-left corner (whole level when it is small)
        out.append((k, -5, -7, min(oh + 10, 320), min(ow + 14, 330)))
    return out


def read_window_truth(path: Path, level: int, win, fill):
    _, row, col, hh, ww = win
    kw = {} if level == 0 else {"overview_level": level - 1}
    with rasterio.open(path, **kw) as src:
        truth = src.read(1, window=Window(col, row, ww, hh), boundless=True, fill_value=fill,
                         out_shape=(hh, ww))
        # cross-check against plain slicing of the whole level (exact, no resampling)
        full = src.read(1)
    manual = np.full((hh, ww), fill, dtype=full.dtype)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + hh, full.shape[0]), min(col + ww, full.shape[1])
    if r1 > r0 and c1 > c0:
        manual[r0 - row:r1 - row, c0 - col:c1 - col] = full[r0:r1, c0:c1]
    if not np.array_equal(truth, manual, equal_nan=True):
        raise AssertionError(f"{path} level {level} window {win}: boundless read != slicing")
    return truth


def le_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def cog_entry(out: Path, name: str, spec: dict, path: Path) -> dict:
    with rasterio.open(path) as src:
        ovs = list(src.overviews(1))
        h, w = src.height, src.width
        t = src.transform
        layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
        if spec["tile"] is not None:
            assert layout == "COG", (path, layout)
            assert src.block_shapes[0] == (spec["tile"], spec["tile"]), src.block_shapes
            assert ovs, f"{path}: no overviews"
        else:
            assert src.block_shapes[0][1] == w, "stripped file must not be tiled"
        nodata = src.nodata
    fill = spec.get("nodata") if spec.get("nodata") is not None else 0
    wins = []
    wdir = out / "windows" / name
    wdir.mkdir(parents=True, exist_ok=True)
    for i, win in enumerate(windows_for(h, w, ovs)):
        level = win[0]
        truth = read_window_truth(path, level, win, fill)
        rel = f"windows/{name}/w{i}_L{level}.bin"
        (out / rel).write_bytes(le_bytes(truth))
        wins.append(dict(level=level, row=win[1], col=win[2], height=win[3], width=win[4],
                         file=rel))
    return dict(name=name, path=str(path.relative_to(out)), epsg=spec["epsg"],
                dtype=spec["dtype"], compression=spec["compression"],
                predictor=spec["predictor"], tile=spec["tile"],
                bigtiff=bool(spec.get("bigtiff", False)),
                nodata=None if nodata is None else (int(nodata) if float(nodata).is_integer()
                                                    else float(nodata)),
                width=w, height=h, transform=[t.a, t.b, t.c, t.d, t.e, t.f], overviews=ovs,
                windows=wins)


# --------------------------------------------------------------------------------------
# Warp cases
# --------------------------------------------------------------------------------------
def lonlat(epsg, xs, ys):
    lon, lat = warp_transform(f"EPSG:{epsg}", "EPSG:4326", list(xs), list(ys))
    return np.array(lon), np.array(lat)


def warp_cases_for(scene: dict):
    """Chunk origins (i0x, i1y in 1/3600-degree units) for a scene; returns
    [(tag, i0x, i1y, notes, expectation)] where expectation is 'edge', 'full'."""
    x0, y1 = scene["origin"]
    h, w = scene["shape"]
    r = scene["res"]
    x1, y0 = x0 + w * r, y1 - h * r
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    half = CHUNK // 2
    (wl,), (wlat,) = lonlat(scene["epsg"], [x0], [ym])
    (el,), (elat,) = lonlat(scene["epsg"], [x1], [ym])
    (cl,), (clat,) = lonlat(scene["epsg"], [xm], [ym])
    (nl,), (nlat,) = lonlat(scene["epsg"], [xm], [y1])
    (sl,), (slat,) = lonlat(scene["epsg"], [xm], [y0])

    def at(lon, lat):
        return int(round(lon * 3600)) - half, int(round(lat * 3600)) + half

    cases = []
    name, res = scene["name"], scene["res"]
    if res == 10:
        if "18n" in name:
            cases.append(("west_edge", *at(wl, wlat), "straddles scene west edge", "edge"))
            cases.append(("lon72", -72 * 3600 - half, at(cl, clat + 0.02)[1],
                          "straddles lon -72.0 (UTM 18/19 boundary), inside the scene", "full"))
            cases.append(("inside", *at(cl - 0.05, clat - 0.03), "inside the scene", "full"))
        elif "19n" in name:
            cases.append(("east_edge", *at(el, elat), "straddles scene east edge", "edge"))
            cases.append(("lon72", -72 * 3600 - half, at(cl, clat - 0.03)[1],
                          "straddles lon -72.0 (UTM 18/19 boundary), inside the scene", "full"))
        else:
            cases.append(("north_edge", *at(nl, nlat), "straddles scene north edge", "edge"))
            cases.append(("south_edge", *at(sl + 0.03, slat), "straddles scene south edge",
                          "edge"))
            (sw_l,), (sw_lat,) = lonlat(scene["epsg"], [x0 + 5000], [y0 + 5000])
            cases.append(("nodata_corner", *at(sw_l, sw_lat), "inside the scene footprint, "
                          "across the diagonal no-data (0) corner of the scene", "edge"))
            cases.append(("east_edge", *at(el, elat + 0.03), "straddles scene east edge",
                          "edge"))
            cases.append(("inside", *at(cl + 0.02, clat + 0.02), "inside the scene", "full"))
    else:
        if "18n" in name:
            cases.append(("lon72", -72 * 3600 - half, at(cl, clat)[1],
                          "bilinear, upsampling; straddles lon -72.0 inside the scene", "full"))
            cases.append(("west_edge", *at(wl, wlat), "bilinear, upsampling; straddles scene "
                                                      "west edge", "edge"))
        elif "19n" in name:
            cases.append(("east_edge", *at(el, elat), "bilinear, upsampling; straddles scene "
                                                      "east edge", "edge"))
        else:
            cases.append(("north_edge", *at(nl, nlat), "bilinear, upsampling; straddles scene "
                                                       "north edge", "edge"))
            cases.append(("inside", *at(cl, clat), "bilinear, upsampling; inside the scene",
                          "full"))
    return cases


def gdal_warp(path: Path, dst_t: Affine, resampling: str) -> np.ndarray:
    """GDAL's warp of the full-resolution level of `path` onto a CHUNK x CHUNK EPSG:4326 chunk,
    with an (effectively) exact transformer.

    rasterio 1.4's `reproject(..., tolerance=0)` silently ignores `tolerance` and always uses
    GDAL's approximate transformer (0.125 px, rasterio issue #3324), which moves ~4 % of the
    nearest-neighbour picks; `WarpedVRT(tolerance=0)` fails to build a transformer. So this uses
    `WarpedVRT(tolerance=1e-9)` on the file opened without overviews: GDAL's warper and
    resampling kernels, exact PROJ transform at every pixel (the result equals
    reproject(source=<level-0 array>, src_nodata=0, dst_nodata=0, tolerance=0) as intended)."""
    with rasterio.open(path, OVERVIEW_LEVEL="NONE") as src, \
            WarpedVRT(src, crs="EPSG:4326", transform=dst_t, width=CHUNK, height=CHUNK,
                      resampling=getattr(Resampling, resampling), tolerance=1e-9,
                      src_nodata=0, nodata=0) as vrt:
        return vrt.read(1)


def exact_nearest(data: np.ndarray, scene: dict, dst_t: Affine) -> np.ndarray:
    """Independent check: floor of the exact source coordinate of each target pixel centre."""
    jj, ii = np.meshgrid(np.arange(CHUNK) + 0.5, np.arange(CHUNK) + 0.5)
    lon, lat = dst_t.c + jj * dst_t.a, dst_t.f + ii * dst_t.e
    x, y = warp_transform("EPSG:4326", f"EPSG:{scene['epsg']}", lon.ravel(), lat.ravel())
    col = np.floor((np.array(x) - scene["origin"][0]) / scene["res"]).astype(int)
    row = np.floor((scene["origin"][1] - np.array(y)) / scene["res"]).astype(int)
    ok = (col >= 0) & (col < data.shape[1]) & (row >= 0) & (row < data.shape[0])
    out = np.zeros(col.shape, dtype=data.dtype)
    out[ok] = data[row[ok], col[ok]]
    return out.reshape(CHUNK, CHUNK)


def make_warp_case(out: Path, scene: dict, path: Path, data: np.ndarray, tag, i0x, i1y, notes,
                   expect):
    resampling = "nearest" if scene["res"] == 10 else "bilinear"
    name = f"{scene['name']}_{tag}_{resampling}"
    dst_t = Affine(DEG, 0.0, i0x / 3600.0, 0.0, -DEG, i1y / 3600.0)
    dst = gdal_warp(path, dst_t, resampling)
    assert dst.dtype == np.uint16 and dst.shape == (CHUNK, CHUNK)
    if resampling == "nearest":
        same = float((dst == exact_nearest(data, scene, dst_t)).mean())
        assert same > 0.9999, (name, same)
    valid = float((dst != 0).mean())
    if expect == "edge":
        assert 0.1 < valid < 0.9, (name, valid)
    else:
        assert valid > 0.999, (name, valid)
    if tag == "lon72":
        assert i0x / 3600 < -72.0 < (i0x + CHUNK) / 3600
    rel = f"warp/{name}.bin"
    (out / rel).write_bytes(le_bytes(dst))
    return dict(name=name, src=scene["name"], resampling=resampling, dst_epsg=4326,
                dst_transform=[dst_t.a, dst_t.b, dst_t.c, dst_t.d, dst_t.e, dst_t.f],
                dst_shape=[CHUNK, CHUNK], nodata=0, dtype="uint16", file=rel,
                notes=f"{notes}; GDAL warp of level 0 with an exact transformer; "
                      f"{valid:.1%} of the chunk has data",
                # extras (exact integers of the grid: c = x0/3600, f = y0/3600)
                dst_origin_index=[i0x, i1y], src_level=0, valid_fraction=round(valid, 6))


# --------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------
def make_bad(out: Path, good: Path) -> dict:
    bad = out / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    raw = good.read_bytes()
    (bad / "truncated.tif").write_bytes(raw[: int(len(raw) * 0.4)])
    (bad / "garbage.tif").write_bytes(np.random.default_rng(666).integers(
        0, 256, 50_000, dtype=np.uint8).tobytes())
    # TileOffsets[0] of the full-resolution IFD (top-left tile) points past the end
    buf = bytearray(raw)
    bo, ifds = tiff_ifds(buf)
    (ent,) = [e for e in ifds[0] if e["tag"] == 324]
    tiff_patch_int(buf, bo, ent, len(buf) + 1_000_000, 0)
    (bad / "offset_past_end.tif").write_bytes(bytes(buf))
    # unknown Compression code in every IFD (65000 is unassigned; 50000 would be ZSTD)
    patch_compression(good, bad / "unsupported_compression.tif", None, 65000)
    # tiled, no CRS, no GeoKeyDirectory
    path = bad / "no_geokeys.tif"
    a = content((600, 700), "uint16", 77)
    with rasterio.open(path, "w", driver="GTiff", width=700, height=600, count=1,
                       dtype="uint16", tiled=True, blockxsize=256, blockysize=256,
                       compress="DEFLATE") as dst:
        dst.write(a, 1)
    for ext in (".aux.xml",):
        p = Path(str(path) + ext)
        if p.exists():
            p.unlink()
    tags = tiff_tags(path)
    assert 34735 not in tags and 322 in tags, sorted(tags)
    return {k: f"bad/{k}.tif" for k in
            ("truncated", "garbage", "offset_past_end", "unsupported_compression", "no_geokeys")}


# --------------------------------------------------------------------------------------
def generate(out: Path):
    t0 = time.time()
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "cogs").mkdir(parents=True)
    (tmp / "warp").mkdir()
    entries = []
    for seed, spec in enumerate(COGS):
        data = content(spec["shape"], spec["dtype"], 100 + seed,
                       nodata_corner=spec.get("corner", False), holes=spec.get("holes", 0),
                       lo=spec.get("lo", 1000.0), hi=spec.get("hi", 12000.0),
                       noise=spec.get("noise", 12.0))
        path = tmp / "cogs" / f"{spec['name']}.tif"
        write_tif(path, spec, data)
        entries.append(cog_entry(tmp, spec["name"], spec, path))
        if spec["name"] == DEFLATE_OLD_FROM:
            old = tmp / "cogs" / f"{DEFLATE_OLD_NAME}.tif"
            n = patch_compression(path, old, 8, 32946)
            assert n == 1 + len(entries[-1]["overviews"]), n
            e = cog_entry(tmp, DEFLATE_OLD_NAME, dict(spec, compression="deflate-old"), old)
            for w0, w1 in zip(entries[-1]["windows"], e["windows"]):
                assert (tmp / w0["file"]).read_bytes() == (tmp / w1["file"]).read_bytes()
            entries.append(e)
    warp_cases = []
    for seed, sc in enumerate(SCENES):
        spec = dict(sc, dtype="uint16", compression="deflate", predictor=2, nodata=0)
        # the 10 m and 60 m versions of an area share the smooth part of the content
        data = content(sc["shape"], "uint16", 200 + seed, nodata_corner=sc.get("corner", False),
                       holes=0, noise=12.0)
        path = tmp / "cogs" / f"{sc['name']}.tif"
        write_tif(path, spec, data)
        entries.append(cog_entry(tmp, sc["name"], spec, path))
        for case in warp_cases_for(sc):
            warp_cases.append(make_warp_case(tmp, sc, path, data, *case))
    # a small valid COG as the base of the broken files
    base_spec = dict(name="bad_base", epsg=32618, dtype="uint16", compression="deflate",
                     predictor=2, tile=256, nodata=0, origin=(600000, 5000000), res=10)
    base = tmp / "bad_base.tif"
    write_tif(base, base_spec, content((700, 800), "uint16", 99, holes=2))
    bad = make_bad(tmp, base)
    base.unlink()
    names = {e["name"] for e in entries}
    assert all(c["src"] in names for c in warp_cases)
    manifest = dict(generator=f"scripts/fixtures.py (rasterio {rasterio.__version__}, "
                              f"GDAL {rasterio.__gdal_version__})",
                    cogs=entries, bad=bad, warp_cases=warp_cases)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (tmp / ".stamp").write_text(SCRIPT_HASH + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"fixtures: wrote {len(entries)} cogs, {len(warp_cases)} warp cases, "
          f"{total / 1e6:.1f} MB to {out} in {time.time() - t0:.1f} s")


def full_size(d: Path):
    d.mkdir(parents=True, exist_ok=True)
    path = d / "full_10980_u16.tif"
    if path.exists():
        print(f"fixtures: {path} present, skipping")
        return
    t0 = time.time()
    n = 10980
    rng = np.random.default_rng(10980)
    y = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, n, dtype=np.float32)[None, :]
    a = (1500 + 7000 * (0.5 * x + 0.5 * y)).astype(np.float32)
    a += rng.normal(0, 150, size=(n, n)).astype(np.float32)
    a = np.clip(a, 1, 65535).astype(np.uint16)
    a[(n - np.arange(n))[:, None] + np.arange(n)[None, :] < n // 4] = 0  # no-data corner
    spec = dict(dtype="uint16", epsg=32618, origin=(600000, 5000040), res=10,
                compression="deflate", predictor=2, tile=1024, nodata=0)
    tmp = path.with_suffix(".tmp.tif")
    write_tif(tmp, spec, a)
    tmp.rename(path)
    print(f"fixtures: wrote {path} ({path.stat().st_size / 1e6:.0f} MB) "
          f"in {time.time() - t0:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None,
                    help="output dir (default $EOCUBE_FIXTURES or target/eocube-fixtures)")
    ap.add_argument("--force", action="store_true", help="regenerate even if up to date")
    ap.add_argument("--full-size", type=Path, metavar="DIR",
                    help="only write DIR/full_10980_u16.tif (benchmark input)")
    args = ap.parse_args()
    if args.full_size:
        full_size(args.full_size)
        return
    out = args.out or Path(os.environ.get("EOCUBE_FIXTURES") or ROOT / "target/eocube-fixtures")
    out = out.resolve()
    stamp = out / ".stamp"
    if (not args.force and stamp.exists() and stamp.read_text().strip() == SCRIPT_HASH
            and (out / "manifest.json").exists()):
        print(f"fixtures: up to date in {out}")
        return
    generate(out)


if __name__ == "__main__":
    sys.exit(main())
