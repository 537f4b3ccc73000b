//! Unit tests of the synthetic archive: determinism, zones, same-pass overlaps, the truth read
//! back through the COG reader, and the items through the catalog parser.

use std::sync::OnceLock;

use super::*;
use eocube::catalog::scenes_from_items;
use eocube::cog::{FetchConfig, Fetcher, RasterData};
use eocube::grid::PixelWindow;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eocube-synth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Three weeks over the demo region (zones 18 and 19) with 600 px (6 km) tiles.
fn small_spec() -> SynthSpec {
    SynthSpec {
        end: NaiveDate::from_ymd_opt(2023, 6, 20).unwrap(),
        scene_px: 600,
        tile_px: 256,
        bands: vec!["red".into(), "B03".into()],
        revisit_days: 5,
        ..SynthSpec::demo()
    }
}

/// One archive shared by the tests of this module.
fn small() -> &'static Archive {
    static A: OnceLock<Archive> = OnceLock::new();
    A.get_or_init(|| generate(&small_spec(), &scratch("small")).unwrap())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

#[test]
fn the_same_seed_writes_the_same_bytes() {
    let spec = SynthSpec { end: NaiveDate::from_ymd_opt(2023, 6, 6).unwrap(), scene_px: 300, ..small_spec() };
    let (a, b) = (scratch("det-a"), scratch("det-b"));
    let ra = generate(&spec, &a).unwrap();
    let rb = generate(&spec, &b).unwrap();
    assert_eq!(ra.items, rb.items);
    assert_eq!((ra.files, ra.scenes), (rb.files, rb.scenes));
    let (fa, fb) = (files_under(&a), files_under(&b));
    assert_eq!(fa.len(), ra.files);
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.strip_prefix(&a).unwrap(), y.strip_prefix(&b).unwrap());
        if x.file_name().unwrap() != "items-local.json" {
            assert!(std::fs::read(x).unwrap() == std::fs::read(y).unwrap(), "{} differs", x.display());
        }
    }
    // another seed: other clouds and timestamps
    let c = generate(&SynthSpec { seed: 7, ..spec }, &scratch("det-c")).unwrap();
    assert_ne!(c.items, ra.items);
    for d in [a, b, c.dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_bbox_across_the_zone_boundary_gives_scenes_in_both_zones() {
    let a = small();
    assert_eq!(a.zones, vec![18, 19]);
    let codes: BTreeSet<&str> = a.items.iter().map(|i| i["properties"]["proj:code"].as_str().unwrap()).collect();
    assert_eq!(codes.into_iter().collect::<Vec<_>>(), vec!["EPSG:32618", "EPSG:32619"]);
    assert!(a.scenes > 10 && a.files == a.scenes * 3 + 2, "{} scenes, {} files", a.scenes, a.files);
}

#[test]
fn neighbours_of_one_pass_overlap_on_the_same_datetime() {
    let a = small();
    let bb = |i: &Value| {
        let v: Vec<f64> = i["bbox"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        Bbox { west: v[0], south: v[1], east: v[2], north: v[3] }
    };
    let mut pairs = 0;
    for (k, x) in a.items.iter().enumerate() {
        for y in &a.items[k + 1..] {
            if x["properties"]["datetime"] == y["properties"]["datetime"] && bb(x).intersects(&bb(y)) {
                assert_ne!(x["id"], y["id"]);
                pairs += 1;
            }
        }
    }
    assert!(pairs > 10, "{pairs} overlapping pairs");
    let ids: HashSet<&str> = a.items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), a.items.len(), "ids are unique");
    // the passes are revisit_days apart
    let days: BTreeSet<&str> = a.items.iter().map(|i| &i["properties"]["datetime"].as_str().unwrap()[..10]).collect();
    assert_eq!(days.into_iter().collect::<Vec<_>>(), vec!["2023-06-01", "2023-06-06", "2023-06-11", "2023-06-16"]);
}

#[test]
fn items_parse_and_hrefs_rebase() {
    let a = small();
    let bands: Vec<String> = ["red", "green", "scl"].map(String::from).to_vec();
    let scenes = scenes_from_items(&a.items, &bands).unwrap();
    assert_eq!(scenes.len(), a.scenes);
    let s = &scenes[0];
    assert_eq!(s.collection.as_deref(), Some(COLLECTION));
    assert_eq!(s.processing_baseline.as_deref(), Some("05.11"));
    let red = s.asset("red").unwrap();
    assert_eq!((red.nodata, red.scale, red.offset), (Some(0.0), Some(0.0001), Some(-0.1)));
    assert_eq!(red.data_type.as_deref(), Some("uint16"));
    assert_eq!(red.shape, Some((600, 600)));
    assert_eq!(s.asset("scl").unwrap().shape, Some((300, 300)));
    assert!(red.href.starts_with("sentinel-2-c1-l2a/") && red.href.ends_with("/red.tif"), "{}", red.href);

    let mut items = a.items.clone();
    rebase_hrefs(&mut items, "http://127.0.0.1:8080/");
    let h = items[0]["assets"]["red"]["href"].as_str().unwrap().to_string();
    assert!(h.starts_with("http://127.0.0.1:8080/sentinel-2-c1-l2a/"), "{h}");
    rebase_hrefs(&mut items, "/elsewhere");
    assert_eq!(items[0]["assets"]["red"]["href"], h.as_str(), "absolute hrefs are left alone");

    let local = eocube::catalog::load_item_collection(a.dir.join("items-local.json")).unwrap();
    assert_eq!(local.len(), a.scenes);
    let text = std::fs::read_to_string(a.dir.join("items-local.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    for f in doc["features"].as_array().unwrap() {
        for asset in f["assets"].as_object().unwrap().values() {
            assert!(Path::new(asset["href"].as_str().unwrap()).is_file(), "{}", asset["href"]);
        }
    }
}

/// Lon/lat of pixel centre `(r, c)` of `gb`, exactly.
fn lonlat(gb: &GeoBox, r: usize, c: usize) -> (f64, f64) {
    let (x, y) = gb.affine.apply(c as f64 + 0.5, r as f64 + 0.5);
    Transformer::new(&gb.crs, &Crs::wgs84()).transform(x, y).unwrap()
}

#[test]
fn clear_pixels_equal_the_truth_and_nodata_agrees() {
    let a = small();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fetcher = Fetcher::new(FetchConfig::default());
    let red = band_index("red").unwrap();
    let (mut checked, mut nodata, mut cloudy) = (0, 0, 0);
    for item in a.items.iter().step_by(7) {
        let href = |k: &str| a.dir.join(item["assets"][k]["href"].as_str().unwrap()).to_string_lossy().into_owned();
        let date =
            NaiveDate::parse_from_str(&item["properties"]["datetime"].as_str().unwrap()[..10], "%Y-%m-%d").unwrap();
        let (refl, scl, gb) = rt.block_on(async {
            let r = fetcher.open(&href("red")).await.unwrap();
            let s = fetcher.open(&href("scl")).await.unwrap();
            let full = |n| PixelWindow { row: 0, col: 0, height: n, width: n };
            let rd = r.read_window(0, full(600)).await.unwrap();
            let sd = s.read_window(0, full(300)).await.unwrap();
            (rd.data, sd.data, rd.geobox)
        });
        let (RasterData::U16(refl), RasterData::U8(scl)) = (refl, scl) else { panic!("data types") };
        for r in (0..600).step_by(13) {
            for c in (0..600).step_by(11) {
                let (v, s) = (refl[r * 600 + c], scl[(r / 2) * 300 + c / 2]);
                assert_eq!(v == 0, s == 0, "reflectance 0 exactly where SCL is 0 ({r}, {c})");
                match s {
                    0 => nodata += 1,
                    2 | 4 | 5 | 6 | 7 | 11 => {
                        let (lon, lat) = lonlat(&gb, r, c);
                        // interpolated lon/lat may fall on the other side of a cell edge
                        let near_edge = |d: f64| {
                            let f = d / CELL_DEG;
                            (f - f.round()).abs() * CELL_DEG < 1e-7
                        };
                        if near_edge(lon) || near_edge(lat) {
                            continue;
                        }
                        assert_eq!(v, truth(red, date.year(), date.month(), lon, lat), "{} ({r}, {c})", item["id"]);
                        checked += 1;
                    }
                    _ => cloudy += 1,
                }
            }
        }
    }
    assert!(checked > 1000 && cloudy > 50, "checked {checked}, cloudy {cloudy}, nodata {nodata}");
}

#[test]
fn the_truth_varies_by_month_and_looks_like_land() {
    let (red, nir) = (band_index("B04").unwrap(), band_index("nir").unwrap());
    let mut differs = 0;
    for k in 0..200 {
        let (lon, lat) = (-72.15 + 0.0015 * k as f64, 44.0 + 0.0007 * k as f64);
        let (jan, jul) = (truth(red, 2023, 1, lon, lat), truth(red, 2023, 7, lon, lat));
        assert!((1000..=5000).contains(&jan) && (1000..=5000).contains(&jul));
        differs += usize::from(jan != jul);
        // constant within a cell
        let (ci, cj) = cell_of(lon, lat);
        let centre = ((ci as f64 + 0.5) * CELL_DEG, (cj as f64 + 0.5) * CELL_DEG);
        assert_eq!(truth(nir, 2023, 7, lon, lat), truth(nir, 2023, 7, centre.0, centre.1));
    }
    assert!(differs > 150, "{differs}");
}

#[test]
fn bad_specs_name_the_field() {
    let d = SynthSpec::demo();
    let field = |s: SynthSpec| match s.validate() {
        Err(SynthError::InvalidSpec { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(SynthSpec { scene_px: 0, ..d.clone() }), "scene_px");
    assert_eq!(field(SynthSpec { scene_px: 10982, ..d.clone() }), "scene_px");
    assert_eq!(field(SynthSpec { bbox: Bbox { south: 45.0, ..d.bbox }, ..d.clone() }), "bbox");
    assert_eq!(field(SynthSpec { end: NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(), ..d.clone() }), "end");
    assert_eq!(field(SynthSpec { bands: vec!["bogus".into()], ..d.clone() }), "bands");
    assert_eq!(field(SynthSpec { bands: vec!["scl".into()], ..d.clone() }), "bands");
    assert_eq!(field(SynthSpec { tile_px: 100, ..d.clone() }), "tile_px");
    assert!(d.validate().is_ok());
    assert!(SynthSpec::full_size(d.bbox, d.start, d.end).validate().is_ok());
    let world = SynthSpec { bbox: Bbox { west: -170.0, south: -60.0, east: 170.0, north: 60.0 }, scene_px: 100, ..d };
    let e = generate(&world, &scratch("world")).unwrap_err().to_string();
    assert!(e.contains("bbox") && e.contains("tiles"), "{e}");
}

#[test]
fn a_non_empty_out_dir_is_refused() {
    let dir = scratch("nonempty");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("x"), b"x").unwrap();
    let e = generate(&small_spec(), &dir).unwrap_err();
    assert!(matches!(e, SynthError::OutDirNotEmpty { .. }) && e.to_string().contains("eocube-synth"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
