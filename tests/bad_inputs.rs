//! A catalogue of bad inputs (issue 13, items 4 and 6): flags, config files, STAC item JSON,
//! TIFF bytes, HTTP answers and store contents that a user (or the world) gets wrong, each run
//! through the real `eocube` binary with its asserted exit status and message, and, where
//! something was already written, a check that nothing of it is lost or changed.
//!
//! [`CASES`] is the table; docs/bad-inputs.md is rendered from it and checked here, so the two
//! cannot drift apart (`EOCUBE_BLESS=1 cargo test --test bad_inputs` rewrites the page). One test
//! per area runs that area's cases; a case that needs root (mounts) is skipped, saying so, when
//! the tests do not run as root.
//!
//! Needs the environment of `scripts/test.sh` (fixtures with the e2e archive, nginx, moto).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};

/// Where a bad input comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Area {
    Flags,
    Config,
    Items,
    Tiff,
    Http,
    Store,
}

impl Area {
    fn title(self) -> &'static str {
        match self {
            Area::Flags => "Flags",
            Area::Config => "Config files (`--config`)",
            Area::Items => "STAC items and what a catalog holds",
            Area::Tiff => "TIFF bytes",
            Area::Http => "HTTP answers",
            Area::Store => "Store contents",
        }
    }
}

/// One bad input.
struct Case {
    name: &'static str,
    area: Area,
    /// What is wrong (the table's "input").
    input: &'static str,
    /// The exit status.
    exit: i32,
    /// Each of these is in what eocube prints (stderr, then stdout); the table shows them.
    says: &'static [&'static str],
    /// What must survive, `run` checks it ("" when nothing was there).
    kept: &'static str,
    /// Makes the input, runs eocube, checks what must be kept; the output of the run to judge.
    run: fn(&Ctx) -> Output,
    /// Needs root (it mounts a file system).
    root: bool,
}

const fn case(
    name: &'static str,
    area: Area,
    input: &'static str,
    exit: i32,
    says: &'static [&'static str],
    run: fn(&Ctx) -> Output,
) -> Case {
    Case { name, area, input, exit, says, kept: "", run, root: false }
}

impl Case {
    const fn kept(mut self, kept: &'static str) -> Case {
        self.kept = kept;
        self
    }

    const fn root(mut self) -> Case {
        self.root = true;
        self
    }
}

/// `plan` over a small region with `extra` flags: no network, nothing written.
fn plan(c: &Ctx, extra: &[&str]) -> Output {
    let mut args = vec!["plan", "--bbox", "-73", "44", "-72", "45", "--start", "2020-01-01", "--end", "2020-03-31"];
    args.extend(extra);
    c.eocube(&args)
}

const CASES: &[Case] = &[
    // ---- flags -----------------------------------------------------------------------------
    case("bbox-upside-down", Area::Flags, "`--bbox -73 45 -72 44` (south above north)", 1, &["--bbox -73 45 -72 44", "south must be less than north"], |c| {
        c.eocube(&["plan", "--bbox", "-73", "45", "-72", "44", "--start", "2020-01-01", "--end", "2020-01-31"])
    }),
    case("bbox-west-of-east", Area::Flags, "`--bbox -72 44 -73 45` (west east of east)", 1, &["--bbox -72 44 -73 45", "west must be less than east"], |c| {
        c.eocube(&["plan", "--bbox", "-72", "44", "-73", "45", "--start", "2020-01-01", "--end", "2020-01-31"])
    }),
    case("bbox-missing", Area::Flags, "no `--bbox`", 1, &["--bbox (missing): give the region as W S E N"], |c| {
        c.eocube(&["plan", "--start", "2020-01-01", "--end", "2020-01-31"])
    }),
    case("start-after-end", Area::Flags, "`--start 2021-01-01 --end 2020-03-31`", 1, &["--start 2021-01-01", "is after the end 2020-03-31"], |c| {
        plan(c, &["--start", "2021-01-01"])
    }),
    case("unknown-band", Area::Flags, "`--bands red,purple`", 1, &["--bands purple: unknown band", "SCL is read for the mask automatically"], |c| {
        plan(c, &["--bands", "red,purple"])
    }),
    case("landsat-scl-mask", Area::Flags, "`--collection landsat-c2-l2 --mask 4,5,6` (SCL classes on a Landsat cube)", 1, &["--mask 4,5,6", "Sentinel-2 SCL classes", "QA_PIXEL flags", "cloud_shadow:medium"], |c| {
        plan(c, &["--collection", "landsat-c2-l2", "--bands", "red,nir08", "--mask", "4,5,6"])
    }),
    case("landsat-flags-on-s2", Area::Flags, "`--mask cloud,shadow` on a Sentinel-2 cube", 1, &["--mask cloud,shadow", "Landsat QA_PIXEL flags", "4,5,6,7,11"], |c| {
        plan(c, &["--mask", "cloud,shadow"])
    }),
    case("landsat-temperature-band", Area::Flags, "`--collection landsat-c2-l2 --bands red,lwir11`", 1, &["--bands red,lwir11", "surface temperature", "cannot share a cube with red", "--bands lwir11"], |c| {
        plan(c, &["--collection", "landsat-c2-l2", "--bands", "red,lwir11"])
    }),
    case("unknown-crs", Area::Flags, "`--crs EPSG:999999`", 1, &["--crs EPSG:999999: unknown CRS", "give an EPSG code such as EPSG:4326"], |c| plan(c, &["--crs", "EPSG:999999"])),
    case("resolution-zero", Area::Flags, "`--resolution 0`", 1, &["--resolution 0: must be a number greater than 0"], |c| plan(c, &["--resolution", "0"])),
    case("resolution-negative", Area::Flags, "`--resolution -0.001`", 1, &["--resolution -0.001: must be a number greater than 0"], |c| {
        plan(c, &["--resolution", "-0.001"])
    }),
    case("resolution-word", Area::Flags, "`--resolution fine`", 1, &["--resolution fine", "is not a number or a fraction such as 1/3600"], |c| {
        plan(c, &["--resolution", "fine"])
    }),
    case("chunk-size-zero", Area::Flags, "`--chunk-size 0`", 1, &["--chunk-size 0: must be a positive integer number of pixels"], |c| plan(c, &["--chunk-size", "0"])),
    case("chunk-size-negative", Area::Flags, "`--chunk-size -3`", 1, &["--chunk-size -3: must be a positive integer number of pixels"], |c| {
        plan(c, &["--chunk-size", "-3"])
    }),
    case("chunk-size-fraction", Area::Flags, "`--chunk-size 12.5` (clap: not an integer)", 2, &["invalid value '12.5' for '--chunk-size <CHUNK_SIZE>'"], |c| {
        plan(c, &["--chunk-size", "12.5"])
    }),
    case("time-step-weeks", Area::Flags, "`--time-step 2W`", 1, &["--time-step 2W", "the unit must be D, M or Y"], |c| plan(c, &["--time-step", "2W"])),
    case("mask-class-13", Area::Flags, "`--mask 4,5,13` (SCL has classes 0-11)", 1, &["--mask 4,5,13", "class 13 does not exist (SCL classes are 0 to 11)"], |c| {
        plan(c, &["--mask", "4,5,13"])
    }),
    case("reducer-unknown", Area::Flags, "`--reducer foo`", 1, &["--reducer foo: unknown reducer \"foo\"", "valid reducers: median, mean, min, max, std, count, geomedian, quantiles:Q1,Q2,..."], |c| {
        plan(c, &["--reducer", "foo"])
    }),
    case("reducer-quantile-above-1", Area::Flags, "`--reducer quantiles:1.5`", 1, &["--reducer quantiles:1.5", "1.5 is outside [0, 1]", "e.g. quantiles:0.1,0.5,0.9"], |c| {
        plan(c, &["--reducer", "quantiles:1.5"])
    }),
    case("reducer-quantiles-unordered", Area::Flags, "`--reducer quantiles:0.9,0.1`", 1, &["--reducer quantiles:0.9,0.1", "0.1 does not come after 0.9"], |c| {
        plan(c, &["--reducer", "quantiles:0.9,0.1"])
    }),
    case("stac-url-not-a-url", Area::Flags, "`--stac-url 'not a url'`", 1, &["--stac-url not a url: must be an http(s):// URL of a STAC API"], |c| {
        plan(c, &["--stac-url", "not a url"])
    }),
    case("catalog-unknown", Area::Flags, "`--catalog usgs`", 1, &["--catalog usgs: unknown catalog; give one of earth-search, earth-search-v0, cdse, planetary-computer"], |c| {
        plan(c, &["--catalog", "usgs"])
    }),
    case("sas-token-url-without-planetary-computer", Area::Flags, "`--sas-token-url` with Earth Search", 1, &["--sas-token-url http://127.0.0.1:1/token: only the planetary-computer catalog signs its assets", "give `catalog planetary-computer` with it"], |c| {
        plan(c, &["--sas-token-url", "http://127.0.0.1:1/token"])
    }),
    case("sas-token-url-not-a-url", Area::Flags, "`--catalog planetary-computer --sas-token-url token`", 1, &["--sas-token-url token: must be an http(s):// URL of a SAS token API"], |c| {
        plan(c, &["--catalog", "planetary-computer", "--sas-token-url", "token"])
    }),
    case("zarr-format-4", Area::Flags, "`--zarr-format 4`", 1, &["--zarr-format 4: must be 2 or 3"], |c| plan(c, &["--zarr-format", "4"])),
    case("unknown-subcommand", Area::Flags, "`eocube frobnicate`", 2, &["unrecognized subcommand 'frobnicate'"], |c| c.eocube(&["frobnicate"])),
    case("missing-argument", Area::Flags, "`eocube info` without the href", 2, &["the following required arguments were not provided", "<HREF>"], |c| c.eocube(&["info"])),
    case(
        "out-unknown-scheme",
        Area::Flags,
        "`--out ftp://x/y`",
        1,
        &["--out ftp://x/y: unknown scheme"],
        |c| c.build(&["--out", "ftp://x/y"]),
    ),
    case(
        "icechunk-zarr-v2",
        Area::Flags,
        "`--zarr-format 2 --out icechunk:///dir` (Icechunk is Zarr v3)",
        1,
        &["--out icechunk://", "Icechunk stores Zarr v3 only; drop `zarr-format` 2"],
        |c| {
            let out = c.dir.join("repo");
            let o = c.build(&["--zarr-format", "2", "--out", &format!("icechunk://{}", out.display())]);
            assert!(!out.exists(), "the repository was created");
            o
        },
    ),
    case("timeout-zero", Area::Flags, "`--timeout 0`", 1, &["--timeout 0: must be a positive number of seconds"], |c| c.build_out(&["--timeout", "0"])),
    case("workers-zero", Area::Flags, "`--workers 0`", 1, &["--workers 0: must be at least 1"], |c| c.build_out(&["--workers", "0"])),
    case("commit-every-zero", Area::Flags, "`--commit-every 0`", 1, &["--commit-every 0: give at least 1 job between commits"], |c| {
        c.build_out(&["--commit-every", "0"])
    }),
    case("index-unknown", Area::Flags, "`--index ndvi,foo`", 1, &["--index ndvi,foo: unknown index \"foo\"", "the built-in indices are ndvi, ndwi, nbr, ndmi, ndbi, savi", "name=expression"], |c| {
        plan(c, &["--index", "ndvi,foo"])
    }),
    case("index-unknown-band", Area::Flags, "`--index 'x=(nir-rde)/2'` (no band `rde`)", 1, &["--index x=(nir-rde)/2: index x: unknown band \"rde\"", "at character 6: (nir-^rde)/2"], |c| {
        plan(c, &["--index", "x=(nir-rde)/2"])
    }),
    case("index-bad-syntax", Area::Flags, "`--index 'x=(nir-red'`", 1, &["--index x=(nir-red: index x: expected a closing ')', found the end at character 9"], |c| {
        plan(c, &["--index", "x=(nir-red"])
    }),
    case("index-duplicate", Area::Flags, "`--index ndvi --index NDVI`", 1, &["--index ndvi,NDVI: index ndvi is given twice; give each index once"], |c| {
        plan(c, &["--index", "ndvi", "--index", "NDVI"])
    }),
    case("index-bad-name", Area::Flags, "`--index '1x=nir'`", 1, &["--index 1x=nir: \"1x\" is not a usable index name", "starting with a letter"], |c| {
        plan(c, &["--index", "1x=nir"])
    }),
    case("index-geomedian", Area::Flags, "`--index ndvi --reducer geomedian`", 1, &["--index ndvi: the geomedian reducer", "has no per-index form", "another reducer (e.g. median)"], |c| {
        plan(c, &["--index", "ndvi", "--reducer", "geomedian"])
    }),
    case("index-clashes-with-variable", Area::Flags, "`--index ndvi --variable ndvi_median`", 1, &["--index ndvi: its variable ndvi_median clashes"], |c| {
        plan(c, &["--index", "ndvi", "--variable", "ndvi_median"])
    }),
    // ---- config ----------------------------------------------------------------------------
    case("config-misspelled-key", Area::Config, "`chunksize = 3` in the file", 1, &["--config", "unknown field `chunksize`, expected one of"], |c| {
        c.with_config("bbox = [1, 2, 3, 4]\nchunksize = 3\n")
    }),
    case("config-wrong-type", Area::Config, "`chunk_size = \"big\"`", 1, &["--config", "invalid type: string \"big\", expected i64"], |c| {
        c.with_config("bbox = [-73, 44, -72, 45]\nchunk_size = \"big\"\n")
    }),
    case("config-index-unknown", Area::Config, "`index = [\"ndvi\", \"ndvj\"]`", 1, &["index ndvi,ndvj: unknown index \"ndvj\""], |c| {
        c.with_config("bbox = [-73, 44, -72, 45]\nstart = \"2020-01-01\"\nend = \"2020-01-31\"\nindex = [\"ndvi\", \"ndvj\"]\n")
    }),
    case("config-not-toml", Area::Config, "a file that is not TOML", 1, &["--config", "not a valid eocube config: TOML parse error"], |c| {
        c.with_config("{\"bbox\": [1, 2, 3, 4]}\n")
    }),
    case("config-missing", Area::Config, "`--config` naming no file", 1, &["--config", "cannot read it: No such file or directory"], |c| {
        c.eocube(&["plan", "--config", &c.dir.join("none.toml").display().to_string()])
    }),
    // ---- STAC items and what a catalog holds ---------------------------------------------------
    case("items-file-missing", Area::Items, "`--items` naming no file", 1, &["--items", "cannot read the item collection"], |c| {
        c.build_items(&c.dir.join("none.json"), &[])
    }),
    case("items-not-json", Area::Items, "an items file that is not JSON", 1, &["--items", "did not answer valid STAC JSON"], |c| {
        let p = c.dir.join("items.json");
        std::fs::write(&p, "<html>items</html>").expect("write");
        c.build_items(&p, &[])
    }),
    case(
        "items-not-a-collection",
        Area::Items,
        "a JSON object of type `Catalog`",
        1,
        &["--items", "expected a FeatureCollection of STAC items"],
        |c| {
            let p = c.dir.join("items.json");
            std::fs::write(&p, r#"{"type": "Catalog", "id": "x", "links": []}"#).expect("write");
            c.build_items(&p, &[])
        },
    ),
    case("item-without-datetime", Area::Items, "an item with `datetime: null` and no range", 1, &["--items", "datetime"], |c| {
        let p = c.items_with(|items| items[0]["properties"]["datetime"] = Value::Null);
        c.build_items(&p, &[])
    }),
    case("item-point-geometry", Area::Items, "an item whose geometry is a Point", 1, &["--items", "geometry"], |c| {
        let p = c.items_with(|items| items[0]["geometry"] = json!({"type": "Point", "coordinates": [-72.0, 44.0]}));
        c.build_items(&p, &[])
    }),
    case(
        "items-of-another-collection",
        Area::Items,
        "`--collection sentinel-2-l2a`; the 12 items are of `e2e-s2-l2a`",
        1,
        &["--collection sentinel-2-l2a: 0 of 12 items", "they are of: e2e-s2-l2a (12)"],
        |c| c.build_out(&["--collection", "sentinel-2-l2a"]).checked_absent(&c.out()),
    ),
    case(
        "band-no-item-has",
        Area::Items,
        "`--bands rededge1`; the items have red, green, blue, nir, scl, swir16, swir22, coastal",
        1,
        &["--bands rededge1: no item has this band (asset `rededge1` or `B05` or `B05_20m`", "the items have: blue, coastal, green, nir, red, scl, swir16, swir22"],
        |c| c.build_out(&["--bands", "rededge1"]).checked_absent(&c.out()),
    ),
    case(
        "asset-keys-not-understood",
        Area::Items,
        "items whose assets are Landsat's `SR_B4`, `QA_PIXEL`, ... (no profile for them yet)",
        1,
        &["--collection e2e-s2-l2a: no item has an asset eocube understands", "SR_B4", "B04_10m, SCL_20m: Copernicus Data Space"],
        |c| {
            let p = c.items_with(|items| {
                for it in items.iter_mut() {
                    let assets = it["assets"].as_object().cloned().unwrap_or_default();
                    let landsat = |k: &str| match k {
                        "red" => "SR_B4".to_string(),
                        "green" => "SR_B3".to_string(),
                        "blue" => "SR_B2".to_string(),
                        "nir" => "SR_B5".to_string(),
                        "scl" => "QA_PIXEL".to_string(),
                        other => format!("X_{other}"),
                    };
                    it["assets"] = Value::Object(assets.into_iter().map(|(k, v)| (landsat(&k), v)).collect());
                }
            });
            c.build_items(&p, &[])
        },
    ),
    case(
        "no-scl",
        Area::Items,
        "items without an `scl` asset",
        1,
        &["--collection e2e-s2-l2a: no item has the scene classification (SCL)"],
        |c| {
            let p = c.items_with(|items| {
                for it in items.iter_mut() {
                    if let Some(a) = it["assets"].as_object_mut() {
                        a.remove("scl");
                    }
                }
            });
            c.build_items(&p, &[])
        },
    ),
    case(
        "dates-without-scenes",
        Area::Items,
        "`--start 2020-01-01 --end 2020-03-31`; the items are of 2023",
        1,
        &["--items", "no item of collection e2e-s2-l2a intersects", "date from 2023-05-12 to 2023-07-27"],
        |c| c.build_out(&["--start", "2020-01-01", "--end", "2020-03-31"]).checked_absent(&c.out()),
    ),
    case(
        "bbox-without-scenes",
        Area::Items,
        "a bbox in the Alps; the items are in Vermont",
        1,
        &["--items", "the bbox 10 45 10.1 45.1", "miss the bbox", "`allow-empty`"],
        |c| c.build_at(&["--bbox", "10", "45", "10.1", "45.1"]).checked_absent(&c.out()),
    ),
    case(
        "cloud-filter-drops-all",
        Area::Items,
        "`--cloud-cover-max 0`; every item has clouds",
        1,
        &["with eo:cloud_cover <= 0", "none passes the filter", "`cloud-cover-max`"],
        |c| c.build_out(&["--cloud-cover-max", "0"]).checked_absent(&c.out()),
    ),
    case(
        "allow-empty-over-nothing",
        Area::Items,
        "the Alps bbox with `--allow-empty`",
        0,
        &["warning: items", "warning: empty: 0 scenes found in", "empty: 0 scenes found in"],
        |c| {
            let o = c.build_at(&["--bbox", "10", "45", "10.1", "45.1", "--allow-empty"]);
            c.then_status(o)
        },
    ),
    case(
        "allow-empty-in-config",
        Area::Items,
        "`allow_empty = true` in the config file, the Alps bbox",
        0,
        &["warning: empty: 0 scenes found in"],
        |c| {
            let cfg = c.dir.join("cube.toml");
            std::fs::write(&cfg, "allow_empty = true\n").expect("write");
            c.build_at(&["--bbox", "10", "45", "10.1", "45.1", "--config", &cfg.display().to_string()])
        },
    ),
    case(
        "jobs-find-no-data",
        Area::Items,
        "items whose footprints claim a region their rasters do not cover",
        1,
        &["empty: 20 scenes found in 6 jobs, none with data", "not published", "--allow-empty", "complete: no (every job is done but none found data"],
        |c| {
            // Every footprint grown 0.2 degree east: the probe and the jobs find the scenes
            // there, their rasters have nothing.
            let p = c.items_with(|items| {
                for it in items.iter_mut() {
                    it["geometry"] = json!({"type": "Polygon", "coordinates": [[[-72.1, 43.95], [-71.6, 43.95], [-71.6, 44.12], [-72.1, 44.12], [-72.1, 43.95]]]});
                    it["bbox"] = json!([-72.1, 43.95, -71.6, 44.12]);
                }
            });
            let east = ["--bbox", "-71.75", "44.0", "-71.7", "44.03"];
            let o = c.build_items_at(&p, &east, &[]);
            let o = c.then_status(o);
            // The jobs are kept: the same build with --allow-empty only publishes.
            let again = c.build_items_at(&p, &east, &["--allow-empty"]);
            let (so, se) = text(&again);
            assert!(again.status.success() && so.contains("done before"), "rerun with --allow-empty:\n{so}\n{se}");
            o
        },
    )
    .kept("the done jobs: the rerun with `--allow-empty` runs none and publishes"),
    // ---- TIFF bytes --------------------------------------------------------------------------
    case("tiff-truncated", Area::Tiff, "`eocube info` on a COG cut at 40 %", 1, &["truncated file", "the file is incomplete", "bad/truncated.tif"], |c| {
        c.info_bad("truncated")
    }),
    case("tiff-garbage", Area::Tiff, "`eocube info` on 50 000 random bytes", 1, &["not a TIFF file", "bad/garbage.tif"], |c| c.info_bad("garbage")),
    case(
        "tiff-offset-past-end",
        Area::Tiff,
        "`eocube info` on a COG whose first tile offset is past the end",
        1,
        &["past the end of the file", "bad/offset_past_end.tif"],
        |c| c.info_bad("offset_past_end"),
    ),
    case(
        "tiff-unsupported-compression",
        Area::Tiff,
        "`eocube info` on a COG with Compression = 65000",
        1,
        &["unsupported compression 65000", "gdal_translate", "bad/unsupported_compression.tif"],
        |c| c.info_bad("unsupported_compression"),
    ),
    case("tiff-no-geokeys", Area::Tiff, "`eocube info` on a tiled TIFF without GeoKeys", 1, &["no GeoKeyDirectory", "bad/no_geokeys.tif"], |c| {
        c.info_bad("no_geokeys")
    }),
    case(
        "scene-garbage",
        Area::Tiff,
        "a build whose scene's `red` asset is random bytes",
        1,
        &["not a TIFF file", "garbage.tif", "jobs failed; run the same command again"],
        |c| c.build_with_red("garbage"),
    ),
    case(
        "scene-truncated",
        Area::Tiff,
        "a build whose scene's `red` asset is a truncated COG",
        1,
        &["truncated.tif", "jobs failed"],
        |c| c.build_with_red("truncated"),
    ),
    // ---- HTTP answers ------------------------------------------------------------------------
    case("cog-404", Area::Http, "`eocube info` on a URL the server answers 404", 1, &["/no/such/file.tif", "not found: the server answered 404"], |c| {
        c.eocube(&["info", &format!("{}/no/such/file.tif", common::http_base())])
    }),
    case("href-ftp", Area::Http, "`eocube info ftp://...`", 1, &["unsupported scheme \"ftp\""], |c| {
        c.eocube(&["info", "ftp://example.org/a.tif"])
    }),
    case(
        "stac-unreachable",
        Area::Http,
        "`--stac-url http://127.0.0.1:1` (nothing listens)",
        1,
        &["--stac-url http://127.0.0.1:1", "cannot reach the STAC API"],
        |c| c.build_api("http://127.0.0.1:1", &[]).checked_absent(&c.out()),
    ),
    case(
        "stac-landing-404",
        Area::Http,
        "a STAC URL whose landing page answers 404",
        1,
        &["--stac-url", "answered HTTP 404"],
        |c| c.build_api(&fake_api(|_, _| (404, "text/plain", "no".into())), &[]).checked_absent(&c.out()),
    ),
    case(
        "stac-landing-not-json",
        Area::Http,
        "a STAC URL that answers an HTML page",
        1,
        &["--stac-url", "did not answer valid STAC JSON"],
        |c| c.build_api(&fake_api(|_, _| (200, "text/html", "<html>hello</html>".into())), &[]),
    ),
    case(
        "stac-landing-no-search",
        Area::Http,
        "a STAC catalog without item search (a static catalog)",
        1,
        &["--stac-url", "offers no item search"],
        |c| c.build_api(&fake_api(|_, _| (200, "application/json", r#"{"type": "Catalog", "links": []}"#.into())), &[]),
    ),
    case(
        "stac-search-500",
        Area::Http,
        "a STAC API whose search answers 500 every time",
        1,
        &["--stac-url", "answered HTTP 500"],
        |c| c.build_api(&fake_api(|_, path| api_or(path, (500, "text/plain", "boom".into()))), &[]),
    ),
    case(
        "stac-search-not-features",
        Area::Http,
        "a STAC API whose search answers JSON without `features`",
        1,
        &["--stac-url", "no `features` array"],
        |c| c.build_api(&fake_api(|_, path| api_or(path, (200, "application/json", r#"{"type": "Feature"}"#.into()))), &[]),
    ),
    case(
        "stac-ignores-collections",
        Area::Http,
        "a STAC API that answers items of another collection",
        1,
        &["--stac-url", "which the search did not ask for", "the server ignored `collections`"],
        |c| {
            c.build_api(
                &fake_api(|_, path| api_or(path, (200, "application/geo+json", e2e_page(Some("other"), None)))),
                &[],
            )
        },
    ),
    case(
        "stac-paging-loop",
        Area::Http,
        "a STAC API whose `next` link repeats the page",
        1,
        &["paging loop", "jobs failed"],
        |c| {
            c.build_api(
                &fake_api(|_, path| api_or(path, (200, "application/geo+json", e2e_page(None, Some("search"))))),
                &[],
            )
        },
    ),
    case(
        "stac-no-collection",
        Area::Http,
        "`--collection nope` on the test STAC API (pgstac)",
        1,
        &["--collection nope: the STAC API at", "has no such collection; it has: e2e-s2-l2a"],
        |c| c.build_api(&common::e2e_stac_url(), &["--collection", "nope"]).checked_absent(&c.out()),
    ),
    case(
        "stac-no-scenes",
        Area::Http,
        "dates with no scene on the test STAC API",
        1,
        &["--stac-url", "the STAC API found none; the collection covers 2023-05-01"],
        |c| c.build_api(&common::e2e_stac_url(), &["--start", "2020-05-17", "--end", "2020-07-24"]),
    ),
    // ---- store contents ------------------------------------------------------------------------
    case("out-is-a-file", Area::Store, "`--out` naming a file", 1, &["is not an eocube cube: it is a file"], |c| {
        let f = c.dir.join("notes.txt");
        std::fs::write(&f, "mine").expect("write");
        let o = c.build(&["--out", &f.display().to_string()]);
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "mine");
        o
    })
    .kept("the file"),
    case(
        "out-is-a-foreign-directory",
        Area::Store,
        "`--out` naming a directory of other files",
        1,
        &["is not an eocube cube: no Zarr group metadata"],
        |c| {
            std::fs::create_dir_all(c.out()).expect("mkdir");
            std::fs::write(c.out().join("notes.txt"), "mine").expect("write");
            let o = c.build_out(&[]);
            assert_eq!(common::files_under(&c.out()).len(), 1, "something was added");
            o
        },
    )
    .kept("the directory, nothing added"),
    case(
        "out-holds-another-cube",
        Area::Store,
        "`--out` holding a cube of another spec (`--chunk-size 64` over 128)",
        1,
        &["has a different chunk size (on disk: 128, requested: 64)"],
        |c| {
            c.built();
            let before = c.snapshot();
            let o = c.build_items(&c.e2e_items(), &["--chunk-size", "64"]);
            c.assert_unchanged(&before);
            o
        },
    )
    .kept("the cube, byte for byte"),
    case(
        "cube-from-a-newer-eocube",
        Area::Store,
        "a cube whose `eocube_layout` has `layout_version: 2` (a later eocube)",
        1,
        &["written by eocube 9.1.0 in cube layout version 2", "upgrade eocube"],
        |c| {
            c.built();
            let doc_path = c.out().join("zarr.json");
            let mut doc: Value = serde_json::from_slice(&std::fs::read(&doc_path).expect("zarr.json")).expect("JSON");
            doc["attributes"]["eocube_layout"]["layout_version"] = json!(2);
            doc["attributes"]["eocube_version"] = json!("9.1.0");
            std::fs::write(&doc_path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
            let before = c.snapshot();
            let o = c.build_out(&[]);
            let status = c.eocube(&["status", &c.out().display().to_string()]);
            assert_eq!(status.status.code(), Some(1), "status of a newer cube");
            assert!(text(&status).1.contains("upgrade eocube"), "{}", text(&status).1);
            c.assert_unchanged(&before);
            o
        },
    )
    .kept("the cube, byte for byte (build and status refuse it)"),
    case(
        "cube-metadata-corrupt",
        Area::Store,
        "a cube whose `zarr.json` is not JSON",
        1,
        &["is not an eocube cube: zarr.json is not JSON"],
        |c| {
            c.built();
            std::fs::write(c.out().join("zarr.json"), "garbage").expect("write");
            let before = c.snapshot();
            let o = c.build_out(&[]);
            c.assert_unchanged(&before);
            o
        },
    )
    .kept("every other file of the cube"),
    case("status-of-nothing", Area::Store, "`eocube status` of a path that does not exist", 1, &["no cube at"], |c| {
        c.eocube(&["status", &c.out().display().to_string()])
    }),
    case(
        "overviews-of-an-unfinished-cube",
        Area::Store,
        "`eocube overviews` on a cube whose build failed",
        1,
        &["finish the build first"],
        |c| {
            let o = c.build_with_red("garbage");
            assert_eq!(o.status.code(), Some(1), "the build should fail");
            c.eocube(&["overviews", &c.out().display().to_string(), "--quiet"])
        },
    ),
    case(
        "out-under-a-file",
        Area::Store,
        "`--out /etc/passwd/x` (a path under a file)",
        1,
        &["--out /etc/passwd/x: I/O error", "Not a directory"],
        |c| c.build(&["--out", "/etc/passwd/x"]),
    ),
    case(
        "permission-denied",
        Area::Store,
        "`--out` in a directory the user may not write (run as `nobody`)",
        1,
        &["Permission denied"],
        |c| {
            let parent = c.dir.join("locked");
            std::fs::create_dir_all(&parent).expect("mkdir");
            let out = parent.join("cube.zarr");
            let args = common::e2e_items_build_args(&out, &c.e2e_items(), &["--chunk-size", "128", "--quiet"]);
            let o = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_eocube")])
                .args(&args)
                .output()
                .expect("running setpriv");
            assert!(!out.exists(), "the cube was created");
            o
        },
    )
    .root(),
    case(
        "read-only-file-system",
        Area::Store,
        "`--out` on a read-only file system (a tmpfs mounted `ro`)",
        1,
        &["Read-only file system"],
        |c| {
            let mnt = Mount::new(&c.dir, "ro,size=1m");
            c.build(&["--out", &mnt.path.join("cube.zarr").display().to_string()])
        },
    )
    .root(),
    case(
        "disk-full",
        Area::Store,
        "`--out` on a 120 KB tmpfs: the disk fills mid-build; then grown to 4 MB and resumed",
        1,
        &["No space left on device", "recording finished jobs failed"],
        |c| {
            let mnt = Mount::new(&c.dir, "size=120k");
            let out = mnt.path.join("cube.zarr");
            let o = c.build(&["--out", &out.display().to_string()]);
            // What is in the ledger is whole: the resumed build equals a build that never failed.
            mnt.remount("size=4m");
            let again = c.build(&["--out", &out.display().to_string()]);
            assert!(again.status.success(), "resume after the disk grew: {}", text(&again).1);
            let reference = c.built();
            assert!(reference != out);
            for sub in ["rgb_median", "time", "latitude", "longitude", "band"] {
                let (a, b) = (common::files_under(&out.join(sub)), common::files_under(&reference.join(sub)));
                assert!(a == b, "{sub} differs from a build that never ran out of space");
            }
            o
        },
    )
    .kept("the jobs recorded before the disk filled; the resumed cube equals an uninterrupted build")
    .root(),
    case(
        "icechunk-branch-moved",
        Area::Store,
        "an Icechunk build whose `main` another build moved before it finished",
        1,
        &["the branch \"main\" changed while the cube was being built", "eocube abort"],
        |c| {
            let repo = format!("icechunk://{}", c.dir.join("repo").display());
            // Build A: one scene's red file is missing, so A fails with its jobs on its build branch.
            let original = c.e2e_item_red();
            let later = c.dir.join("later-red.tif");
            let href = later.display().to_string();
            let items = c.items_with(|items| used_item(items)["assets"]["red"]["href"] = json!(href));
            let a = c.build_items(&items, &["--out", &repo]);
            assert_eq!(a.status.code(), Some(1), "A should fail first: {}", text(&a).1);
            // Build B, another cube, moves `main`.
            let b = c.build_items(&c.e2e_items(), &["--out", &repo, "--bands", "nir,red"]);
            assert!(b.status.success(), "B: {}", text(&b).1);
            let main_b = c.log(&repo);
            // The file appears: A finishes on its build branch but may not move `main`.
            std::fs::copy(&original, &later).expect("copy red.tif");
            let o = c.build_items(&items, &["--out", &repo]);
            assert_eq!(c.log(&repo), main_b, "main moved");
            o
        },
    )
    .kept("`main` at the other build's version"),
    case(
        "s3-credentials-stop-working",
        Area::Store,
        "`--out s3://...` whose credentials stop being accepted mid-build (a moto that enforces signatures after 60 requests); then resumed with good keys",
        1,
        &["access denied", "check the credentials"],
        |c| {
            let moto = AuthMoto::start(45);
            let url = format!("s3://{}/cube", moto.bucket);
            let build = |key: &str, secret: &str| {
                let args =
                    common::e2e_items_build_args(Path::new(&url), &c.e2e_items(), &["--chunk-size", "128", "--quiet"]);
                Command::new(env!("CARGO_BIN_EXE_eocube"))
                    .args(&args)
                    .env("AWS_ENDPOINT_URL", &moto.endpoint)
                    .env("AWS_ACCESS_KEY_ID", key)
                    .env("AWS_SECRET_ACCESS_KEY", secret)
                    .env("AWS_REGION", "us-east-1")
                    .env("AWS_ALLOW_HTTP", "true")
                    .output()
                    .expect("running eocube")
            };
            // Keys moto stops accepting once it checks signatures: credentials that expire.
            let o = build("expiring", "expiring");
            let ledger = moto.keys("cube/_eocube/ledger/");
            assert!(!ledger.is_empty(), "nothing was recorded before the credentials stopped working");
            // Resumed with good keys: the cube equals a local build of the same spec.
            let (key, secret) = (moto.key_id.clone(), moto.secret.clone());
            let again = build(&key, &secret);
            assert!(again.status.success(), "resume with good keys: {}", text(&again).1);
            let reference = c.build_out(&[]);
            assert!(reference.status.success(), "the local build: {}", text(&reference).1);
            let differ = moto.differences("cube/rgb_median/", &c.out().join("rgb_median"));
            assert!(differ.is_empty(), "the resumed S3 cube differs from a local build: {differ:?}");
            o
        },
    )
    .kept("the jobs recorded before; resumed with good keys, the same chunks as a local build"),
];

// ---------------------------------------------------------------------------------------------

/// A case's scratch directory and the ways to run eocube in it.
struct Ctx {
    dir: PathBuf,
}

/// An e2e item that the build uses (2023-06-03, inside the dates; the first items of the file
/// are "wild" scenes outside them, which no job reads).
fn used_item(items: &mut [Value]) -> &mut Value {
    items.iter_mut().find(|i| i["id"].as_str().is_some_and(|id| id.contains("20230603"))).expect("the 2023-06-03 item")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

trait Checked {
    /// `self`, after checking that the build wrote nothing at `out`.
    fn checked_absent(self, out: &Path) -> Self;
}

impl Checked for Output {
    fn checked_absent(self, out: &Path) -> Output {
        assert!(!out.exists(), "{} was created by a refused build", out.display());
        self
    }
}

impl Ctx {
    fn eocube(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_eocube")).args(args).current_dir(&self.dir).output().expect("running eocube")
    }

    fn out(&self) -> PathBuf {
        self.dir.join("cube.zarr")
    }

    fn e2e_items(&self) -> PathBuf {
        common::e2e_dir().join("items-local.json")
    }

    /// `eocube build` of the e2e archive from `items` (chunks of 128 px: 9 jobs), `extra` flags,
    /// then `--out` (unless `extra` has one).
    fn build_items(&self, items: &Path, extra: &[&str]) -> Output {
        let mut flags = vec!["--chunk-size", "128", "--quiet"];
        flags.extend(extra);
        let mut args = common::e2e_items_build_args(&self.out(), items, &flags);
        if extra.contains(&"--out") {
            args.truncate(args.len() - 2);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.eocube(&args)
    }

    /// [`Ctx::build_items`] with the e2e items and `extra`, which must hold `--out`.
    fn build(&self, extra: &[&str]) -> Output {
        assert!(extra.contains(&"--out"), "build(): give --out");
        self.build_items(&self.e2e_items(), extra)
    }

    /// [`Ctx::build_items`] with the e2e items into `cube.zarr`.
    fn build_out(&self, extra: &[&str]) -> Output {
        self.build_items(&self.e2e_items(), extra)
    }

    /// The e2e build with its bbox replaced by the one in `bbox_and_extra` (`--bbox W S E N ...`).
    fn build_at(&self, bbox_and_extra: &[&str]) -> Output {
        self.build_items_at(&self.e2e_items(), &bbox_and_extra[..5], &bbox_and_extra[5..])
    }

    fn build_items_at(&self, items: &Path, bbox: &[&str], extra: &[&str]) -> Output {
        assert_eq!(bbox[0], "--bbox");
        let m = common::e2e_manifest();
        let mut args: Vec<String> = vec!["build".into()];
        args.extend(bbox.iter().map(|s| s.to_string()));
        for (flag, key) in [("--start", "start"), ("--end", "end"), ("--collection", "collection")] {
            args.push(flag.into());
            args.push(m[key].as_str().expect("manifest").into());
        }
        args.extend(["--items".into(), items.display().to_string(), "--chunk-size".into(), "128".into()]);
        args.extend(["--quiet".into(), "--out".into(), self.out().display().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.eocube(&args)
    }

    /// The e2e items with `edit` applied, written to `items.json` here.
    fn items_with(&self, edit: impl FnOnce(&mut Vec<Value>)) -> PathBuf {
        let mut doc: Value =
            serde_json::from_slice(&std::fs::read(self.e2e_items()).expect("items-local.json")).expect("JSON");
        let mut features = doc["features"].as_array().cloned().expect("features");
        edit(&mut features);
        doc["features"] = Value::Array(features);
        let p = self.dir.join("items.json");
        std::fs::write(&p, doc.to_string()).expect("writing items.json");
        p
    }

    /// `plan --config FILE` with `toml` in the file.
    fn with_config(&self, toml: &str) -> Output {
        let cfg = self.dir.join("cube.toml");
        std::fs::write(&cfg, toml).expect("write config");
        self.eocube(&["plan", "--config", &cfg.display().to_string(), "--start", "2020-01-01", "--end", "2020-01-31"])
    }

    /// `eocube info` on one of the broken fixture files.
    fn info_bad(&self, kind: &str) -> Output {
        self.eocube(&["info", &common::bad(kind).display().to_string()])
    }

    /// The e2e build with the `red` asset of one item pointing at a broken fixture file.
    fn build_with_red(&self, kind: &str) -> Output {
        let href = common::bad(kind).display().to_string();
        let p = self.items_with(|items| used_item(items)["assets"]["red"]["href"] = json!(href));
        self.build_items(&p, &[])
    }

    /// The e2e build from the STAC API at `url` (`extra` may override the collection and dates).
    fn build_api(&self, url: &str, extra: &[&str]) -> Output {
        let m = common::e2e_manifest();
        let mut args: Vec<String> = vec!["build".into(), "--bbox".into()];
        args.extend(m["bbox"].as_array().expect("bbox").iter().map(|v| v.to_string()));
        for (flag, key) in [("--start", "start"), ("--end", "end"), ("--collection", "collection")] {
            args.push(flag.into());
            args.push(m[key].as_str().expect("manifest").into());
        }
        for a in ["--stac-url", url, "--chunk-size", "128", "--quiet", "--retries", "0", "--out"] {
            args.push(a.into());
        }
        args.push(self.out().display().to_string());
        for pair in extra.chunks(2) {
            match args.iter().position(|a| a == pair[0]) {
                Some(i) => args[i + 1] = pair[1].to_string(),
                None => args.extend(pair.iter().map(|s| s.to_string())),
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.eocube(&args)
    }

    /// Builds the e2e cube at `cube.zarr` (must succeed); returns its path.
    fn built(&self) -> PathBuf {
        let o = self.build_out(&[]);
        assert!(o.status.success(), "the reference build failed: {}", text(&o).1);
        self.out()
    }

    /// The local path of the red COG of [`used_item`].
    fn e2e_item_red(&self) -> PathBuf {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(self.e2e_items()).expect("items-local.json")).expect("JSON");
        let mut items = doc["features"].as_array().cloned().expect("features");
        PathBuf::from(used_item(&mut items)["assets"]["red"]["href"].as_str().expect("href"))
    }

    /// `eocube log REPO --json`: the versions of `main`.
    fn log(&self, repo: &str) -> Value {
        let o = self.eocube(&["log", repo, "--json"]);
        assert!(o.status.success(), "eocube log: {}", text(&o).1);
        serde_json::from_slice(&o.stdout).expect("log --json")
    }

    /// Every file of the cube at `cube.zarr`, with its bytes.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        common::files_under(&self.out())
    }

    /// The cube at `cube.zarr` holds exactly the files of `before`, byte for byte.
    fn assert_unchanged(&self, before: &BTreeMap<String, Vec<u8>>) {
        let now = self.snapshot();
        let changed: Vec<&String> = now.keys().chain(before.keys()).filter(|k| now.get(*k) != before.get(*k)).collect();
        assert!(changed.is_empty(), "the refused command changed {changed:?}");
    }

    /// `o`, with the output of `eocube status` on the cube appended to its stdout.
    fn then_status(&self, mut o: Output) -> Output {
        let s = self.eocube(&["status", &self.out().display().to_string()]);
        o.stdout.extend_from_slice(b"\n--- eocube status ---\n");
        o.stdout.extend_from_slice(&s.stdout);
        o.stderr.extend_from_slice(&s.stderr);
        o
    }
}

// ---------------------------------------------------------------------------------------------

/// A fake STAC API on a free port: every request gets `answer(method, path)` as `(status,
/// content type, body)`, then the connection is closed. Returns its URL.
fn fake_api(answer: fn(&str, &str) -> (u16, &'static str, String)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.trim().eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let (status, ctype, text) = answer(&method, &path);
                let mut out = &stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
    url
}

/// A STAC API's landing page (with item search) at `/`, no collections, `other` for the rest.
fn api_or(path: &str, other: (u16, &'static str, String)) -> (u16, &'static str, String) {
    match path {
        "/" => (
            200,
            "application/json",
            r#"{"type": "Catalog", "id": "fake", "conformsTo": ["https://api.stacspec.org/v1.0.0/item-search"], "links": [{"rel": "search", "href": "search"}]}"#.into(),
        ),
        p if p.starts_with("/collections") => (404, "text/plain", "no collections here".into()),
        _ => other,
    }
}

/// A search page of the e2e items, their collection replaced by `collection`, with a `next`
/// link to `next` when given.
fn e2e_page(collection: Option<&str>, next: Option<&str>) -> String {
    static ITEMS: OnceLock<Vec<Value>> = OnceLock::new();
    let items = ITEMS.get_or_init(|| {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(common::e2e_dir().join("items-local.json")).expect("items"))
                .expect("JSON");
        doc["features"].as_array().cloned().expect("features")
    });
    let mut features = items.clone();
    if let Some(c) = collection {
        for f in &mut features {
            f["collection"] = json!(c);
        }
    }
    let links = match next {
        Some(href) => json!([{"rel": "next", "href": href, "method": "GET"}]),
        None => json!([]),
    };
    json!({"type": "FeatureCollection", "features": features, "links": links}).to_string()
}

/// A moto of this test's own that checks signatures after its first `free` requests, with a
/// bucket and an IAM user whose keys it accepts (made within the free requests).
struct AuthMoto {
    child: std::process::Child,
    endpoint: String,
    bucket: String,
    key_id: String,
    secret: String,
}

impl AuthMoto {
    fn start(free: u32) -> AuthMoto {
        let (child, endpoint) = common::start_auth_moto(free);
        let bucket = "eocube-bad".to_string();
        let (key_id, secret) = common::auth_moto_user(&endpoint, &bucket);
        AuthMoto { child, endpoint, bucket, key_id, secret }
    }

    /// The objects under `prefix` that differ from the files under `local` (by relative key),
    /// or are missing on either side; read with the good keys.
    fn differences(&self, prefix: &str, local: &Path) -> Vec<String> {
        let script = r#"
import sys, os, boto3
from botocore.config import Config
ep, bucket, prefix, key, secret, local = sys.argv[1:7]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1", aws_access_key_id=key,
                  aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))
remote = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        remote[o["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
files = {}
for root, _, names in os.walk(local):
    for n in names:
        p = os.path.join(root, n)
        files[os.path.relpath(p, local)] = open(p, "rb").read()
for k in sorted(set(remote) | set(files)):
    if remote.get(k) != files.get(k):
        print(k)
"#;
        let local = local.display().to_string();
        let args = [self.endpoint.as_str(), &self.bucket, prefix, &self.key_id, &self.secret, &local];
        common::run_python(script, &args, "comparing the auth moto's objects").lines().map(str::to_string).collect()
    }

    /// The keys under `prefix`, listed with the good keys, sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let script = r#"
import sys, boto3
from botocore.config import Config
ep, bucket, prefix, key, secret = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1", aws_access_key_id=key,
                  aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        print(o["Key"])
"#;
        let out = common::run_python(
            script,
            &[&self.endpoint, &self.bucket, prefix, &self.key_id, &self.secret],
            "listing the auth moto",
        );
        let mut keys: Vec<String> = out.lines().map(str::to_string).collect();
        keys.sort();
        keys
    }
}

impl Drop for AuthMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmpfs mounted under a case's directory (root only), unmounted when dropped.
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn new(dir: &Path, options: &str) -> Mount {
        let path = dir.join("mnt");
        std::fs::create_dir_all(&path).expect("mkdir");
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(&path).status();
        assert!(ok.is_ok_and(|s| s.success()), "mount -t tmpfs -o {options} failed");
        Mount { path }
    }

    fn remount(&self, options: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,{options}")]).arg(&self.path).status();
        assert!(ok.is_ok_and(|s| s.success()), "remount {options} failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Runs every case of `area`; fails listing each case whose status or message is not the table's.
fn run_area(area: Area) {
    let mut failures = Vec::new();
    for c in CASES.iter().filter(|c| c.area == area) {
        if c.root && !is_root() {
            println!("SKIPPED {}: needs root to mount a small file system (the tests run as root in CI)", c.name);
            continue;
        }
        let dir = common::scratch_dir(&format!("bad-{}", c.name));
        let ctx = Ctx { dir: dir.clone() };
        let t0 = std::time::Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (c.run)(&ctx)));
        let o = match result {
            Ok(o) => o,
            Err(e) => {
                let msg =
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                failures.push(format!("{}: its check failed: {}", c.name, msg.unwrap_or_default()));
                continue;
            }
        };
        let (stdout, stderr) = text(&o);
        let all = format!("{stderr}{stdout}");
        println!(
            "{} -> {:?} in {:.1} s: {}",
            c.name,
            o.status.code(),
            t0.elapsed().as_secs_f64(),
            stderr.lines().next().unwrap_or("")
        );
        let mut wrong = Vec::new();
        if o.status.code() != Some(c.exit) {
            wrong.push(format!("exit {:?}, the table says {}", o.status.code(), c.exit));
        }
        for s in c.says {
            if !all.contains(s) {
                wrong.push(format!("does not say {s:?}"));
            }
        }
        if all.contains("panicked") || all.contains("RUST_BACKTRACE") {
            wrong.push("panicked".into());
        }
        if c.exit == 1 && !stderr.contains("error: ") {
            wrong.push("no `error: ` line".into());
        }
        // A refused flag is named first, as the user typed it.
        if c.area == Area::Flags && c.exit == 1 && !stderr.starts_with(&format!("error: {}", c.says[0])) {
            wrong.push(format!("the message does not start with `error: {}`", c.says[0]));
        }
        if wrong.is_empty() {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            failures.push(format!("{}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", c.name, wrong.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} case(s) of {area:?} failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn flags() {
    run_area(Area::Flags);
}

#[test]
fn config_files() {
    run_area(Area::Config);
}

#[test]
fn stac_items_and_catalogs() {
    run_area(Area::Items);
}

#[test]
fn tiff_bytes() {
    run_area(Area::Tiff);
}

#[test]
fn http_answers() {
    run_area(Area::Http);
}

#[test]
fn store_contents() {
    run_area(Area::Store);
}

// ---------------------------------------------------------------------------------------------

const DOC_HEAD: &str = "# Bad inputs

What eocube says when an input is wrong: flags, config files, STAC items, TIFF bytes, HTTP
answers and store contents. Every row is a case of `tests/bad_inputs.rs`, which runs the real
`eocube` binary on that input and asserts the exit status and that each quoted piece of the
message is printed; where something was already written, it also checks that it is kept as it
was (\"kept\"). This page is generated from the test's table (`EOCUBE_BLESS=1 cargo test --test
bad_inputs docs` rewrites it; the test fails when they differ).

Exit status: 0 done, 1 refused or failed (a line starting `error: ` says why and what to do), 2
a usage error from the argument parser, 130 interrupted (Ctrl-C). Messages name settings as
flags (`--bbox`); inside a message, settings are written as in a config file (`allow-empty`).
";

const DOC_TAIL: &str = "
## Tested elsewhere

Bad inputs whose tests need more than one command line, kept with the feature they exercise:

- a scene file that is missing (exit 1 naming the file; `--skip-bad-scenes` leaves it out with a
  warning), a job over `--timeout` (retried, then exit 1), Ctrl-C (exit 130, resumable),
  `eocube extend` to an earlier end (\"never shrinks\"): `tests/cli.rs`;
- invalid settings of `eocube build` against the real STAC API and a dead one, with `--out` never
  created: `tests/build.rs` (`invalid_input_exits_1_...`);
- S3: a missing bucket, refused credentials, an unreachable endpoint, a prefix holding another
  cube, none modifying anything: `tests/storage.rs`; AWS profiles that are missing or need a
  role, unsigned requests, a missing Azure container and a wrong Azure key: `tests/cloud.rs`;
- two Icechunk builds into one repository at once, the same build twice at once:
  `tests/icechunk.rs`;
- engine flags given to the wrong executor: `tests/engines.rs` (`engine_flags_are_checked`).
";

/// docs/bad-inputs.md, from [`CASES`].
fn render_doc() -> String {
    let mut doc = String::from(DOC_HEAD);
    doc += &format!("\n{} cases.\n", CASES.len());
    for area in [Area::Flags, Area::Config, Area::Items, Area::Tiff, Area::Http, Area::Store] {
        let cases: Vec<&Case> = CASES.iter().filter(|c| c.area == area).collect();
        if cases.is_empty() {
            continue;
        }
        doc += &format!("\n## {}\n\n| case | input | message | exit | kept |\n|---|---|---|---|---|\n", area.title());
        for c in cases {
            let says: Vec<String> =
                c.says.iter().map(|s| format!("`{}`", s.replace('`', "'").replace('|', "\\|"))).collect();
            let root = if c.root { " (root)" } else { "" };
            doc += &format!(
                "| {}{root} | {} | {} | {} | {} |\n",
                c.name,
                c.input.replace('|', "\\|"),
                says.join(" … "),
                c.exit,
                c.kept
            );
        }
    }
    doc + DOC_TAIL
}

#[test]
fn docs_bad_inputs_is_the_catalogue() {
    let names: std::collections::HashSet<&str> = CASES.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), CASES.len(), "case names are unique");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/bad-inputs.md");
    let want = render_doc();
    if std::env::var("EOCUBE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).expect("writing docs/bad-inputs.md");
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(got == want, "docs/bad-inputs.md is not the catalogue of tests/bad_inputs.rs: rerun with EOCUBE_BLESS=1");
}
