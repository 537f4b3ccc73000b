#!/usr/bin/env python3
"""Write seed inputs for the fuzz targets, from real documents, before `cargo fuzz cmin`.

Run with the project's venv:  .venv/bin/python fuzz/seeds.py OUT_DIR [--cogs DIR ...]

OUT_DIR/<target>/ gets:
  cog_header    small GDAL (rasterio wheel) TIFFs, whole: COGs with overviews, an internal mask,
                BigTIFF, big-endian, sparse tiles, strips, PixelIsPoint, a rotated
                ModelTransformation, a geographic CRS, NaN nodata; LZW / ZSTD / DEFLATE.
                With --cogs, also the first 4 KB of every .tif under those directories (the
                header of a COG is at its start).
  stac_item     real Earth Search items (../shared/fixtures/stac), reduced to a few assets and
                written compactly, an ItemCollection of three, and STAC 1.1 variants.
  stac_page     the real search page reduced to two features, and pages with each kind of
                `next` link (GET, POST with body / merge / headers, relative href).
  spec_toml     configs like the README's.
  out_location  every form of `--out` the docs name, valid and not.
Small on purpose: libFuzzer runs faster on small inputs, and the corpora are committed.
"""

from __future__ import annotations

import argparse
import copy
import json
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine, from_origin

warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
ROOT = Path(__file__).resolve().parent.parent
STAC = ROOT.parent / "shared" / "fixtures" / "stac" / "earth-search-v1"
STAC_LOCAL = ROOT / "crates" / "eocube" / "tests" / "data" / "stac"


def tiffs(out: Path) -> None:
    h, w = 80, 96
    ramp = (np.arange(h * w).reshape(h, w) % 50 + 1).astype("uint16")
    ramp[:20, :24] = 0  # a nodata corner
    cog = dict(driver="COG", blocksize=32, overviews="AUTO", compress="DEFLATE", predictor=2)
    tiled = dict(driver="GTiff", tiled=True, blockxsize=32, blockysize=32)
    cases = {
        "cog_deflate_ovr": (ramp, dict(cog, nodata=0)),
        "cog_lzw_u8": (ramp.astype("uint8"), dict(cog, compress="LZW", nodata=0)),
        "cog_zstd_f32_nan": (ramp.astype("float32") / 7, dict(cog, compress="ZSTD", predictor=3, nodata=float("nan"))),
        "cog_bigtiff": (ramp, dict(cog, bigtiff="YES", nodata=0)),
        "cog_i16_geographic": (ramp.astype("int16") - 20, dict(cog, crs="EPSG:4326",
                                                               transform=from_origin(-72.1, 44.2, 1e-4, 1e-4))),
        "gtiff_mask": (ramp, dict(tiled, compress="DEFLATE")),
        "gtiff_bigendian": (ramp, dict(tiled, compress="DEFLATE", predictor=2, endianness="BIG", nodata=0)),
        "gtiff_sparse": (np.zeros((h, w), "uint16"), dict(tiled, sparse_ok=True, nodata=0)),
        "gtiff_strips": (ramp, dict(driver="GTiff", tiled=False, blockysize=7, compress="DEFLATE", nodata=0)),
        "gtiff_rotated": (ramp, dict(tiled, compress="DEFLATE", transform=Affine(10, 2, 500000, 1.5, -10, 4000000))),
        "gtiff_pixel_is_point": (ramp, dict(tiled, compress="LZW", nodata=65535)),
    }
    for name, (arr, profile) in cases.items():
        path = out / f"{name}.tif"
        base = dict(width=w, height=h, count=1, dtype=arr.dtype.name, crs="EPSG:32633",
                    transform=from_origin(500000, 4000000, 10, 10))
        base.update(profile)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            with rasterio.open(path, "w", **base) as dst:
                dst.write(arr, 1)
                if name == "gtiff_mask":
                    dst.write_mask((arr > 0).astype("uint8") * 255)
            if name == "gtiff_mask":
                with rasterio.open(path, "r+") as dst:
                    dst.build_overviews([2, 4])
            if name == "gtiff_pixel_is_point":
                with rasterio.open(path, "r+") as dst:
                    dst.update_tags(AREA_OR_POINT="Point")


def compact(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def reduce_item(item: dict, keep=("red", "nir", "scl", "B04", "B08", "SCL", "visual")) -> dict:
    """The item with only a few assets and links (what the parser reads is all kept)."""
    item = copy.deepcopy(item)
    item["assets"] = {k: v for k, v in item.get("assets", {}).items() if k in keep}
    item["links"] = item.get("links", [])[:1]
    return item


def stac_items(out: Path) -> list[dict]:
    items = []
    for p in sorted(STAC.glob("*.json")):
        doc = json.loads(p.read_text())
        if doc.get("type") == "Feature":
            items.append(reduce_item(doc))
        elif doc.get("type") == "FeatureCollection" and "collection" not in p.name:
            items.extend(reduce_item(f) for f in doc["features"][:2])
    for i, item in enumerate(items):
        (out / f"item_{i}.json").write_bytes(compact(item))
    # STAC 1.1 spelling: proj:code and bands on the asset, no proj:epsg.
    v11 = copy.deepcopy(items[0])
    epsg = v11["properties"].pop("proj:epsg", 32613)
    v11["properties"]["proj:code"] = f"EPSG:{epsg}"
    for a in v11["assets"].values():
        if "raster:bands" in a:
            a["bands"] = a.pop("raster:bands")
    v11["stac_version"] = "1.1.0"
    (out / "item_stac11.json").write_bytes(compact(v11))
    # An antimeridian bbox, a null datetime with start_datetime, no geometry.
    odd = copy.deepcopy(items[1])
    odd["bbox"] = [179.5, -17.0, -179.5, -16.0]
    odd["properties"]["start_datetime"] = odd["properties"]["datetime"]
    odd["properties"]["datetime"] = None
    odd["geometry"] = None
    (out / "item_odd.json").write_bytes(compact(odd))
    coll = {"type": "FeatureCollection", "features": items[:3],
            "filter": {"op": "and", "args": [{"op": "<=", "args": [{"property": "eo:cloud_cover"}, 40]},
                                             {"op": "not", "args": [{"op": "isNull",
                                                                     "args": [{"property": "s2:processing_baseline"}]}]}]}}
    (out / "collection_filtered.json").write_bytes(compact(coll))
    (out / "array.json").write_bytes(compact(items[:2]))
    return items


def stac_pages(out: Path, items: list[dict]) -> None:
    page = json.loads((STAC_LOCAL / "earthsearch_v1_search_page1_cql2_filter_cloud_lte40.json").read_text())
    page["features"] = [reduce_item(f) for f in page["features"][:2]]
    (out / "earthsearch_page.json").write_bytes(compact(page))
    two = items[:2]
    links = {
        "get_next": {"rel": "next", "href": "https://stac.example/v1/search?token=abc", "type": "application/geo+json"},
        "relative_next": {"rel": "next", "href": "search?page=2"},
        "post_merge": {"rel": "next", "href": "https://stac.example/v1/search", "method": "POST",
                       "body": {"token": "next:2"}, "merge": True, "headers": {"Authorization": "Bearer x",
                                                                               "X-Many": ["a", "b"]}},
        "post_replace": {"rel": "next", "href": "https://stac.example/v1/search", "method": "post",
                         "body": {"next": "2"}, "merge": False},
    }
    for name, link in links.items():
        doc = {"type": "FeatureCollection", "features": two, "links": [{"rel": "self", "href": "x"}, link]}
        (out / f"page_{name}.json").write_bytes(compact(doc))
    (out / "page_empty.json").write_bytes(compact({"type": "FeatureCollection", "features": [], "links": None}))


TOMLS = {
    "readme": 'bbox = [-73.43, 42.72, -71.47, 45.02]\nstart = "2020-01-01"\nend = "2023-12-31"\n',
    "full": """bbox = [-72.05, 44.0, -71.95, 44.06]
start = "2023-05-17"
end = "2023-07-24"
time_step = "16D"
crs = "EPSG:32618"
resolution = "30"
chunk_size = 600
bands = ["red", "B08", "green"]
collection = "sentinel-2-c1-l2a"
stac_url = "https://earth-search.aws.element84.com/v1"
items = "items.json"
cloud_cover_max = 80.0
mask = "seed"
mask_dilation = 2
resampling = "nearest"
reducer = "median"
variable = "my_var"
zarr_format = 2
out = "s3://bucket/cubes/vermont.zarr"
workers = 4
all_chunks = true
""",
    "fraction_year": 'bbox = [10, 45, 11, 46]\nstart = "2019-02-28"\nend = "2024-02-29"\ntime_step = "1Y"\n'
                     'resolution = "1/7200"\nmask = "4,5,6,7,11"\nout = "icechunk:///data/r"\n',
    "south_utm": 'bbox = [-63.1, -30.1, -62.9, -29.9]\nstart = "2021-01-01"\nend = "2021-03-31"\n'
                 'crs = "EPSG:32720"\nresolution = 10\ntime_step = "3M"\nresampling = "average"\n',
}

LOCATIONS = [
    "cube.zarr", "/data/cube.zarr", "file:///data/cube.zarr", "file://localhost/data/c.zarr",
    "s3://my-bucket/cubes/vermont.zarr", "s3://bkt", "s3a://bkt/a/b/", "gs://my_bucket.x/a/cube.zarr/",
    "gcs://bkt", "az://cubes/v1/c.zarr", "azure://cubes", "abfss://cubes@acct1.dfs.core.windows.net/v1/c.zarr",
    "abfs://cubes@acct1.blob.core.windows.net/v1", "icechunk:///data/repo", "icechunk+s3://bucket/prefix/repo",
    "icechunk+gs://b/repo", "https://example.com/cube", "ftp://x/y", "dir/a://b", "s3://B/x", "s3://b-1/a/../c",
    "gs://b-1/c?x=1", "az://a--b/x", "file://host/x", "",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cogs", type=Path, action="append", default=[],
                    help="also the first 4 KB of every .tif under DIR (repeatable)")
    args = ap.parse_args()
    dirs = {t: args.out / t for t in ("cog_header", "stac_item", "stac_page", "spec_toml", "out_location")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    tiffs(dirs["cog_header"])
    for d in args.cogs:
        for p in sorted(d.rglob("*.tif")):
            (dirs["cog_header"] / f"head_{p.stem}.tif").write_bytes(p.read_bytes()[:4096])
    items = stac_items(dirs["stac_item"])
    stac_pages(dirs["stac_page"], items)
    for name, text in TOMLS.items():
        (dirs["spec_toml"] / f"{name}.toml").write_text(text)
    for i, loc in enumerate(LOCATIONS):
        (dirs["out_location"] / f"loc_{i:02}.txt").write_bytes(loc.encode())
    for t, d in dirs.items():
        files = list(d.iterdir())
        print(f"{t}: {len(files)} files, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
