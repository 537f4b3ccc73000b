//! Unit tests of the catalog module against real Earth Search items (`tests/data/stac`).

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::*;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/stac").join(name)
}

fn read(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

const C1_COLLECTION: &str = "sentinel-2-c1-l2a_13TDE_2024-04_item-collection.json";
const C1_20EPT: &str = "sentinel-2-c1-l2a__S2B_T20EPT_20250731T131905_L2A.json";
const C1_24MWV: &str = "sentinel-2-c1-l2a__S2B_T24MWV_20250731T130245_L2A.json";
const OLD_13TDE: &str = "sentinel-2-l2a__S2A_13TDE_20231008_0_L2A.json";
const OLD_20EPT: &str = "sentinel-2-l2a__S2B_20EPT_20250731_0_L2A.json";
const SEARCH_PAGE: &str = "earthsearch_v1_search_page1_cql2_filter_cloud_lte40.json";

fn bands(b: &[&str]) -> Vec<String> {
    b.iter().map(|s| s.to_string()).collect()
}

fn c1_items() -> Vec<Value> {
    read(C1_COLLECTION)["features"].as_array().unwrap().clone()
}

fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, mi, s).unwrap()
}

/// The field and item of an InvalidItem error, or a panic naming what came instead.
fn invalid_field(r: Result<Scene, CatalogError>) -> (String, String, String) {
    match r {
        Err(CatalogError::InvalidItem { item, field, reason }) => (item, field, reason),
        other => panic!("expected InvalidItem, got {other:?}"),
    }
}

#[test]
fn every_sentinel2_l2a_fixture_item_parses_with_reflectance_and_scl() {
    let mut items = c1_items();
    for f in [C1_20EPT, C1_24MWV, OLD_13TDE, OLD_20EPT] {
        items.push(read(f));
    }
    let all = bands(&["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08"]);
    let all = [all, bands(&["nir09", "swir16", "swir22", "scl"])].concat();
    for item in &items {
        let s = parse_item(item, &all).unwrap_or_else(|e| panic!("{}: {e}", item["id"]));
        assert_eq!(s.assets.len(), all.len());
        for (band, a) in &s.assets {
            assert!(a.href.ends_with(".tif"), "{} {band}: {}", s.id, a.href);
            assert!(a.transform.is_some() && a.shape.is_some(), "{} {band}", s.id);
            assert_eq!(a.nodata, Some(0.0), "{} {band}", s.id);
        }
    }
    assert_eq!(items.len(), 14);
}

#[test]
fn every_item_of_the_search_page_parses_or_names_the_missing_band() {
    let page = read(SEARCH_PAGE);
    let features = page["features"].as_array().unwrap();
    let (mut l2a, mut l1c, mut s1) = (0, 0, 0);
    for f in features {
        let id = f["id"].as_str().unwrap();
        // every item, whatever its collection, has what a Scene needs apart from bands
        let bare = parse_item(f, &[]).unwrap();
        assert_eq!(bare.id, id);
        match f["collection"].as_str().unwrap() {
            "sentinel-2-c1-l2a" | "sentinel-2-l2a" => {
                let s = parse_item(f, &bands(&["red", "scl"])).unwrap();
                assert!([32720, 32724].contains(&s.epsg), "{id}: {}", s.epsg);
                l2a += 1;
            }
            "sentinel-2-l1c" => {
                // L1C has reflectance but no scene classification
                parse_item(f, &bands(&["red"])).unwrap();
                match parse_item(f, &bands(&["scl"])) {
                    Err(CatalogError::MissingBand { item, band, available }) => {
                        assert_eq!((item.as_str(), band.as_str()), (id, "scl"));
                        assert!(available.contains(&"red".to_string()));
                    }
                    other => panic!("{id}: {other:?}"),
                }
                l1c += 1;
            }
            "sentinel-1-grd" => {
                assert_eq!(bare.epsg, 4326);
                assert!(matches!(parse_item(f, &bands(&["red"])), Err(CatalogError::MissingBand { .. })));
                s1 += 1;
            }
            c => panic!("unexpected collection {c}"),
        }
    }
    assert_eq!((l2a, l1c, s1), (5, 2, 3));
}

#[test]
fn red_and_scl_assets_match_the_fixture_readme() {
    let item = &c1_items()[0];
    let s = parse_item(item, &bands(&["red", "scl"])).unwrap();
    assert_eq!(s.id, "S2A_T13TDE_20240422T174753_L2A");
    assert_eq!(s.collection.as_deref(), Some("sentinel-2-c1-l2a"));
    assert_eq!(s.epsg, 32613, "proj:epsg in the properties");
    assert_eq!(s.datetime, Utc.with_ymd_and_hms(2024, 4, 22, 17, 53, 2).unwrap() + chrono::Duration::milliseconds(36));
    assert_eq!(s.cloud_cover, Some(81.344962));
    assert_eq!(s.bbox, crate::grid::Bbox { west: -105.373, south: 39.661017, east: -104.884569, north: 40.650822 });

    let red = s.asset("red").unwrap();
    assert_eq!(red.key, "red");
    assert_eq!(red.shape, Some((10980, 10980)));
    let t = red.transform.unwrap();
    assert_eq!((t.a, t.b, t.d, t.e), (10.0, 0.0, 0.0, -10.0));
    assert_eq!((red.nodata, red.scale, red.offset), (Some(0.0), Some(0.0001), Some(-0.1)));
    assert_eq!(red.data_type.as_deref(), Some("uint16"));
    assert!(red.href.starts_with("https://") && red.href.ends_with("/B04.tif"), "{}", red.href);

    let scl = s.asset("scl").unwrap();
    assert_eq!(scl.shape, Some((5490, 5490)));
    assert_eq!(scl.transform.unwrap().a, 20.0);
    assert_eq!(scl.data_type.as_deref(), Some("uint8"));
    assert_eq!((scl.scale, scl.offset), (None, None));
    assert_eq!((t.c, t.f), (scl.transform.unwrap().c, scl.transform.unwrap().f), "same grid origin");
}

#[test]
fn southern_items_are_in_utm_south_zones() {
    let a = parse_item(&read(C1_20EPT), &bands(&["red"])).unwrap();
    let b = parse_item(&read(C1_24MWV), &bands(&["red"])).unwrap();
    assert_eq!((a.epsg, b.epsg), (32720, 32724));
    assert_eq!(a.processing_baseline.as_deref(), Some("05.11"));
    assert!(a.bbox.north < 0.0 && b.bbox.north < 0.0);
    assert_eq!(a.boa_offset_applied, None, "Collection-1 items do not carry the flag");
}

#[test]
fn older_collection_item_says_boa_offset_applied_and_never_yields_jp2() {
    let item = read(OLD_13TDE);
    assert!(item["assets"]["red-jp2"].is_object(), "the fixture has jp2 copies");
    let s = parse_item(&item, &bands(&["red", "B04", "scl", "SCL"])).unwrap();
    assert_eq!(s.collection.as_deref(), Some("sentinel-2-l2a"));
    assert_eq!(s.boa_offset_applied, Some(true));
    assert_eq!(s.processing_baseline.as_deref(), Some("05.09"));
    // raster:bands still says offset -0.1 although the offset was removed from the data:
    // the flag, not the offset, is what radiometry must read
    assert_eq!(s.asset("red").unwrap().offset, Some(-0.1));
    for (band, a) in &s.assets {
        assert!(!a.key.ends_with("-jp2") && a.href.ends_with(".tif"), "{band}: {} {}", a.key, a.href);
    }
    assert_eq!(s.asset("B04"), s.asset("red"));

    // even when only a jp2 copy is left, it is not picked
    let mut only_jp2 = item.clone();
    only_jp2["assets"].as_object_mut().unwrap().remove("red");
    match parse_item(&only_jp2, &bands(&["red"])) {
        Err(CatalogError::MissingBand { item, band, available }) => {
            assert_eq!((item.as_str(), band.as_str()), ("S2A_13TDE_20231008_0_L2A", "red"));
            assert!(!available.iter().any(|k| k.ends_with("-jp2")), "{available:?}");
            assert!(available.contains(&"green".to_string()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn band_number_requests_resolve_to_earth_search_keys() {
    let item = &c1_items()[1];
    let req = bands(&["B04", "b04", "B4", "B8A", "b8a", "B08", "SCL", "scl", "Red", "B12", "B01"]);
    let s = parse_item(item, &req).unwrap();
    let keys: Vec<&str> = s.assets.iter().map(|(_, a)| a.key.as_str()).collect();
    assert_eq!(keys, ["red", "red", "red", "nir08", "nir08", "nir", "scl", "scl", "red", "swir22", "coastal"]);
    assert_eq!(band_aliases("nir08"), ["nir08", "B8A"]);
    assert_eq!(band_aliases("unknown"), ["unknown"]);
}

#[test]
fn earth_search_requests_resolve_to_band_number_keys_of_older_catalogs() {
    // rename the assets to the band-number style (B04, SCL) of older catalogs
    let mut item = c1_items()[2].clone();
    let assets = item["assets"].as_object_mut().unwrap();
    for (from, to) in [("red", "B04"), ("scl", "SCL"), ("nir08", "b8a")] {
        let a = assets.remove(from).unwrap();
        assets.insert(to.into(), a);
    }
    let s = parse_item(&item, &bands(&["red", "scl", "nir08", "B04"])).unwrap();
    let keys: Vec<&str> = s.assets.iter().map(|(_, a)| a.key.as_str()).collect();
    assert_eq!(keys, ["B04", "SCL", "b8a", "B04"]);
    assert_eq!(s.asset("red").unwrap().shape, Some((10980, 10980)));
}

#[test]
fn missing_band_names_the_item_and_its_keys() {
    let item = &c1_items()[0];
    match parse_item(item, &bands(&["red", "B10"])) {
        Err(e @ CatalogError::MissingBand { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("S2A_T13TDE_20240422T174753_L2A") && msg.contains("\"B10\""), "{msg}");
            assert!(msg.contains("\"scl\"") && msg.contains("\"red\""), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

/// A STAC 1.1 rendering of a 1.0 item: `proj:code` instead of `proj:epsg`, `bands` with
/// `raster:scale` / `raster:offset` instead of `raster:bands`, and (optionally) the projection
/// fields moved from the assets to the properties.
fn to_stac_1_1(item: &Value, proj_in_properties: bool) -> Value {
    let mut item = item.clone();
    item["stac_version"] = json!("1.1.0");
    let props = item["properties"].as_object_mut().unwrap();
    let epsg = props.remove("proj:epsg").unwrap();
    props.insert("proj:code".into(), json!(format!("EPSG:{epsg}")));
    for (_, a) in item["assets"].as_object_mut().unwrap().iter_mut() {
        let a = a.as_object_mut().unwrap();
        if let Some(Value::Array(rb)) = a.remove("raster:bands") {
            let bands: Vec<Value> = rb
                .into_iter()
                .map(|mut b| {
                    let b = b.as_object_mut().unwrap();
                    for k in ["scale", "offset"] {
                        if let Some(v) = b.remove(k) {
                            b.insert(format!("raster:{k}"), v);
                        }
                    }
                    Value::Object(b.clone())
                })
                .collect();
            a.insert("bands".into(), Value::Array(bands));
        }
    }
    if proj_in_properties {
        // the red band's grid moves to the item, where it applies to assets without their own
        let red = item["assets"]["red"].as_object_mut().unwrap();
        let (t, s) = (red.remove("proj:transform").unwrap(), red.remove("proj:shape").unwrap());
        item["properties"]["proj:transform"] = t;
        item["properties"]["proj:shape"] = s;
    }
    item
}

#[test]
fn stac_1_1_item_parses_the_same_as_1_0() {
    for item in [c1_items()[3].clone(), read(C1_20EPT), read(OLD_20EPT)] {
        let b = bands(&["red", "nir", "scl", "B8A"]);
        let v10 = parse_item(&item, &b).unwrap();
        let v11 = parse_item(&to_stac_1_1(&item, false), &b).unwrap();
        assert_eq!(v10, v11, "{}", v10.id);
    }
}

#[test]
fn projection_fields_in_properties_apply_to_assets_without_their_own() {
    let item = c1_items()[3].clone();
    let v11 = parse_item(&to_stac_1_1(&item, true), &bands(&["red"])).unwrap();
    let v10 = parse_item(&item, &bands(&["red"])).unwrap();
    assert_eq!(v11.asset("red"), v10.asset("red"));
}

#[test]
fn nine_number_transform_and_asset_level_epsg_are_accepted() {
    let mut item = c1_items()[0].clone();
    item["assets"]["red"]["proj:transform"] = json!([10, 0, 399960, 0, -10, 4500000, 0, 0, 1]);
    item["properties"].as_object_mut().unwrap().remove("proj:epsg");
    item["assets"]["red"]["proj:code"] = json!("epsg:32613");
    let s = parse_item(&item, &bands(&["red"])).unwrap();
    assert_eq!(s.epsg, 32613);
    assert_eq!(s.asset("red").unwrap().transform.unwrap().to_array(), [10.0, 0.0, 399960.0, 0.0, -10.0, 4500000.0]);
}

#[test]
fn malformed_items_give_typed_errors_naming_item_and_field() {
    let good = c1_items()[0].clone();
    let id = good["id"].as_str().unwrap().to_string();
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit)] = &[
        ("properties.datetime", |i| {
            i["properties"].as_object_mut().unwrap().remove("datetime");
        }),
        ("properties.datetime", |i| i["properties"]["datetime"] = json!("22 April 2024")),
        ("properties.datetime", |i| i["properties"]["datetime"] = json!(1713808382)),
        ("assets.red.proj:transform", |i| i["assets"]["red"]["proj:transform"] = json!([10, 0, 399960, 0, -10])),
        ("assets.red.proj:transform", |i| {
            i["assets"]["red"]["proj:transform"] = json!([10, 0, 399960, 0, -10, 4500000, 0, 1, 1])
        }),
        ("assets.red.proj:transform", |i| i["assets"]["red"]["proj:transform"] = json!("10,0,0,0,-10,0")),
        ("assets.red.proj:transform", |i| i["assets"]["red"]["proj:transform"][2] = json!("399960")),
        ("assets.red.proj:shape", |i| i["assets"]["red"]["proj:shape"] = json!([10980.5, 10980])),
        ("assets.red.proj:shape", |i| i["assets"]["red"]["proj:shape"] = json!([0, 10980])),
        ("assets.red.proj:shape", |i| i["assets"]["red"]["proj:shape"] = json!([10980])),
        ("properties.proj:epsg", |i| i["properties"]["proj:epsg"] = json!("32613")),
        ("properties.proj:epsg", |i| i["properties"]["proj:epsg"] = json!(-1)),
        ("properties.proj:epsg", |i| {
            i["properties"].as_object_mut().unwrap().remove("proj:epsg");
        }),
        ("properties.proj:code", |i| {
            i["properties"].as_object_mut().unwrap().remove("proj:epsg");
            i["properties"]["proj:code"] = json!("IAU_2015:30100");
        }),
        // red's own CRS overrides the item's, then scl (item CRS) disagrees with red
        ("assets.scl.proj:epsg", |i| i["assets"]["red"]["proj:epsg"] = json!(32614)),
        ("properties.eo:cloud_cover", |i| i["properties"]["eo:cloud_cover"] = json!("81%")),
        ("properties.earthsearch:boa_offset_applied", |i| {
            i["properties"]["earthsearch:boa_offset_applied"] = json!("yes")
        }),
        ("assets.red.href", |i| i["assets"]["red"]["href"] = json!(42)),
        ("assets.red.href", |i| {
            i["assets"]["red"].as_object_mut().unwrap().remove("href");
        }),
        ("assets.red", |i| i["assets"]["red"] = json!("B04.tif")),
        ("assets.red.raster:bands[0].nodata", |i| i["assets"]["red"]["raster:bands"][0]["nodata"] = json!("none")),
        ("assets.red.raster:bands[0].scale", |i| i["assets"]["red"]["raster:bands"][0]["scale"] = json!("0.0001")),
        ("assets.red.raster:bands[0].data_type", |i| i["assets"]["red"]["raster:bands"][0]["data_type"] = json!(16)),
        ("assets.red.raster:bands[0]", |i| i["assets"]["red"]["raster:bands"] = json!([0])),
        ("assets", |i| i["assets"] = json!([])),
        ("properties", |i| {
            i.as_object_mut().unwrap().remove("properties");
        }),
        ("properties", |i| i["properties"] = json!(null)),
        ("bbox", |i| i["bbox"] = json!([1, 2, 3])),
        ("bbox", |i| i["bbox"] = json!([-105, 95, -104, 96])),
        ("bbox", |i| {
            i["bbox"] = json!(null);
            i["geometry"] = json!({"type": "Point", "coordinates": [0, 0]});
        }),
        ("type", |i| i["type"] = json!("Collection")),
        ("collection", |i| i["collection"] = json!(["a"])),
    ];
    for (want, edit) in cases {
        let mut item = good.clone();
        edit(&mut item);
        let (item_id, field, reason) = invalid_field(parse_item(&item, &bands(&["red", "scl"])));
        assert_eq!(item_id, id);
        assert_eq!(&field, want, "reason: {reason}");
        assert!(!reason.is_empty());
    }
    // without an id, the error says so instead of naming one
    for (bad_id, want) in [(json!(null), "<no id>"), (json!(7), "<bad id>"), (json!(""), "<empty id>")] {
        let mut item = good.clone();
        if bad_id.is_null() {
            item.as_object_mut().unwrap().remove("id");
        } else {
            item["id"] = bad_id;
        }
        let (item_id, field, _) = invalid_field(parse_item(&item, &[]));
        assert_eq!((item_id.as_str(), field.as_str()), (want, "id"));
    }
    for not_an_item in [json!(null), json!([1]), json!("item")] {
        let (_, field, _) = invalid_field(parse_item(&not_an_item, &[]));
        assert_eq!(field, "item");
    }
}

#[test]
fn lenient_where_stac_allows() {
    let mut item = c1_items()[0].clone();
    // null datetime with a range: the range start is the scene time
    item["properties"]["datetime"] = Value::Null;
    item["properties"]["start_datetime"] = json!("2024-04-22T17:53:02Z");
    item["properties"]["end_datetime"] = json!("2024-04-22T17:53:10Z");
    // no bbox: bounds of the geometry
    item.as_object_mut().unwrap().remove("bbox");
    // nodata spelled as a string, extra fields anywhere
    item["assets"]["red"]["raster:bands"][0]["nodata"] = json!("nan");
    item["assets"]["red"]["x:extra"] = json!({"a": [1, 2]});
    item["properties"]["x:extra"] = json!(null);
    item.as_object_mut().unwrap().remove("collection");
    let s = parse_item(&item, &bands(&["red"])).unwrap();
    assert_eq!(s.datetime, utc(2024, 4, 22, 17, 53, 2));
    assert!(s.asset("red").unwrap().nodata.unwrap().is_nan());
    assert_eq!(s.collection, None);
    assert!((s.bbox.west - -105.373).abs() < 0.01 && (s.bbox.north - 40.650822).abs() < 0.01, "{:?}", s.bbox);

    // antimeridian bbox (west > east) widens to all longitudes rather than failing
    item["bbox"] = json!([179.5, -17.0, -179.5, -16.0]);
    assert_eq!(parse_item(&item, &[]).unwrap().bbox.west, -180.0);
}

#[test]
fn scenes_are_sorted_by_datetime_then_id_and_unique() {
    let mut items = c1_items();
    items.push(items[0].clone()); // a repeat, as live paging can produce
    let mut twin = items[4].clone();
    twin["id"] = json!("A_SAME_TIME_TWIN");
    items.push(twin);
    let scenes = scenes_from_items(&items, &bands(&["red"])).unwrap();
    assert_eq!(scenes.len(), 11);
    assert!(scenes.windows(2).all(|w| (w[0].datetime, &w[0].id) < (w[1].datetime, &w[1].id)));
    assert_eq!(scenes[0].id, "S2B_T13TDE_20240331T175111_L2A");
    let i = scenes.iter().position(|s| s.id == "A_SAME_TIME_TWIN").unwrap();
    assert_eq!(scenes[i + 1].id, "S2A_T13TDE_20240412T175055_L2A");
}

fn april() -> SearchRequest {
    SearchRequest::new(&["sentinel-2-c1-l2a"], utc(2024, 4, 1, 0, 0, 0), utc(2024, 4, 30, 23, 59, 59))
}

#[test]
fn search_request_body_and_query() {
    let mut r = april();
    r.limit = 2;
    r.max_cloud_cover = Some(40.0);
    r.bbox = Some(crate::grid::Bbox { west: -106.0, south: 40.0, east: -105.8, north: 40.2 });
    let body = r.to_body();
    assert_eq!(body["collections"], json!(["sentinel-2-c1-l2a"]));
    assert_eq!(body["datetime"], "2024-04-01T00:00:00Z/2024-04-30T23:59:59Z");
    assert_eq!(body["limit"], 2);
    assert_eq!(body["bbox"], json!([-106.0, 40.0, -105.8, 40.2]));
    assert_eq!(body["filter"], json!({"op": "<=", "args": [{"property": "eo:cloud_cover"}, 40.0]}));
    assert_eq!(body["filter-lang"], "cql2-json");
    assert!(body.get("intersects").is_none());

    r.filter = Some(json!({"op": "=", "args": [{"property": "s2:processing_baseline"}, "05.10"]}));
    assert_eq!(r.cql2_filter().unwrap()["op"], "and");
    let q: std::collections::HashMap<_, _> = r.to_query().into_iter().collect();
    assert_eq!(q["collections"], "sentinel-2-c1-l2a");
    assert_eq!(q["bbox"], "-106,40,-105.8,40.2");
    assert_eq!(q["filter-lang"], "cql2-json");
    assert_eq!(serde_json::from_str::<Value>(&q["filter"]).unwrap(), r.cql2_filter().unwrap());
}

#[test]
fn invalid_search_requests_are_refused_before_any_request() {
    type Edit = fn(&mut SearchRequest);
    let cases: &[(&str, Edit)] = &[
        ("collections", |r| r.collections.clear()),
        ("datetime", |r| r.datetime = (r.datetime.1, r.datetime.0)),
        ("limit", |r| r.limit = 0),
        ("intersects", |r| r.intersects = Some(json!({"type": "Point", "coordinates": [0, 0]}))),
        ("intersects", |r| r.intersects = Some(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}))),
        ("intersects", |r| {
            r.intersects = Some(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}))
        }),
        ("intersects", |r| {
            r.intersects = Some(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}));
            r.bbox = Some(crate::grid::Bbox { west: 0.0, south: 0.0, east: 1.0, north: 1.0 });
        }),
        ("bbox", |r| r.bbox = Some(crate::grid::Bbox { west: 1.0, south: 0.0, east: 0.0, north: 1.0 })),
        ("bbox", |r| r.bbox = Some(crate::grid::Bbox { west: 0.0, south: 0.0, east: 190.0, north: 1.0 })),
        ("max_cloud_cover", |r| r.max_cloud_cover = Some(f64::NAN)),
        ("max_cloud_cover", |r| r.max_cloud_cover = Some(140.0)),
        ("filter", |r| r.filter = Some(json!("eo:cloud_cover < 10"))),
    ];
    for (want, edit) in cases {
        let mut r = april();
        edit(&mut r);
        match r.validate() {
            Err(CatalogError::InvalidRequest { field, .. }) => assert_eq!(&field, want),
            other => panic!("{want}: {other:?}"),
        }
    }
}

/// A lon/lat rectangle as a GeoJSON Polygon.
fn polygon(w: f64, s: f64, e: f64, n: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
}

fn ids(scenes: &[Scene]) -> Vec<&str> {
    scenes.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn local_item_collection_filters_like_an_item_search() {
    let c = load_item_collection(data(C1_COLLECTION)).unwrap();
    assert_eq!(c.len(), 10);
    let b = bands(&["red", "scl"]);

    // April only: the 2024-03-31 item drops out
    let r = april();
    assert_eq!(c.search(&r, &b).unwrap().len(), 9);

    // + cloud cover <= 40: 0415 (22.0), 0412 (0.04), 0407 (0.88), 0405 (11.95), 0402 (0.12)
    let mut r = april();
    r.max_cloud_cover = Some(40.0);
    assert_eq!(
        ids(&c.search(&r, &b).unwrap()),
        [
            "S2A_T13TDE_20240402T174230_L2A",
            "S2A_T13TDE_20240405T175934_L2A",
            "S2B_T13TDE_20240407T174209_L2A",
            "S2A_T13TDE_20240412T175055_L2A",
            "S2A_T13TDE_20240415T180048_L2A",
        ]
    );

    // + a polygon in the west of the tile, which only the full-tile orbit (R141, 18:02) covers
    r.intersects = Some(polygon(-106.0, 40.0, -105.8, 40.2));
    let west = ["S2A_T13TDE_20240405T175934_L2A", "S2A_T13TDE_20240415T180048_L2A"];
    assert_eq!(ids(&c.search(&r, &b).unwrap()), west);
    // the same as a bbox
    r.bbox = r.intersects.take().map(|_| crate::grid::Bbox { west: -106.0, south: 40.0, east: -105.8, north: 40.2 });
    assert_eq!(ids(&c.search(&r, &b).unwrap()), west);

    // far away, another collection, or a window between acquisitions: nothing
    r.bbox = Some(crate::grid::Bbox { west: 10.0, south: 40.0, east: 11.0, north: 41.0 });
    assert!(c.search(&r, &b).unwrap().is_empty());
    let mut r = april();
    r.collections = vec!["sentinel-2-l2a".into()];
    assert!(c.search(&r, &b).unwrap().is_empty());
    let r = SearchRequest::new(&["sentinel-2-c1-l2a"], utc(2024, 4, 12, 17, 54, 0), utc(2024, 4, 15, 18, 0, 0));
    assert!(c.search(&r, &b).unwrap().is_empty());
    // bounds are inclusive, like the API's
    let t = parse_item(&c1_items()[4], &[]).unwrap().datetime;
    let r = SearchRequest::new(&["sentinel-2-c1-l2a"], t, t);
    assert_eq!(ids(&c.search(&r, &b).unwrap()), ["S2A_T13TDE_20240412T175055_L2A"]);
}

#[test]
fn local_cql2_filter_uses_three_valued_logic() {
    let c = load_item_collection(data(C1_COLLECTION)).unwrap();
    let mut r = april();
    let cc = |op: &str, x: f64| json!({"op": op, "args": [{"property": "eo:cloud_cover"}, x]});
    r.filter = Some(json!({"op": "or", "args": [cc("<", 0.1), cc(">", 95.0)]}));
    assert_eq!(c.matching_items(&r).unwrap().len(), 2); // 0.045 and 95.4
    r.filter = Some(json!({"op": "not", "args": [cc(">=", 1.0)]}));
    assert_eq!(c.matching_items(&r).unwrap().len(), 3); // 0.045, 0.88, 0.12
    // a missing property makes the comparison unknown: neither it nor its negation matches
    let missing = json!({"op": "=", "args": [{"property": "no:such"}, 1]});
    r.filter = Some(missing.clone());
    assert!(c.matching_items(&r).unwrap().is_empty());
    r.filter = Some(json!({"op": "not", "args": [missing.clone()]}));
    assert!(c.matching_items(&r).unwrap().is_empty());
    r.filter = Some(json!({"op": "isNull", "args": [{"property": "no:such"}]}));
    assert_eq!(c.matching_items(&r).unwrap().len(), 9);
    r.filter = Some(json!({"op": "=", "args": [{"property": "s2:processing_baseline"}, "05.10"]}));
    assert_eq!(c.matching_items(&r).unwrap().len(), 9);
    r.filter = Some(json!({"op": "s_intersects", "args": [{"property": "geometry"}, polygon(0.0, 0.0, 1.0, 1.0)]}));
    match c.matching_items(&r) {
        Err(CatalogError::InvalidRequest { field, reason }) => {
            assert_eq!(field, "filter");
            assert!(reason.contains("s_intersects"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn local_files_in_every_accepted_shape_and_bad_files_give_typed_errors() {
    // one item
    let one = load_item_collection(data(C1_20EPT)).unwrap();
    assert_eq!(one.len(), 1);
    // a JSON array of items, and the Earth Search search page (FeatureCollection, mixed collections)
    let dir = crate::scratch::ScratchDir::new("catalog-test");
    let arr = dir.join("array.json");
    std::fs::write(&arr, serde_json::to_string(&vec![read(C1_20EPT), read(OLD_20EPT)]).unwrap()).unwrap();
    let c = load_item_collection(&arr).unwrap();
    let r = SearchRequest::new(
        &["sentinel-2-c1-l2a", "sentinel-2-l2a"],
        utc(2025, 7, 31, 0, 0, 0),
        utc(2025, 8, 1, 0, 0, 0),
    );
    assert_eq!(
        ids(&c.search(&r, &bands(&["red"])).unwrap()),
        ["S2B_20EPT_20250731_0_L2A", "S2B_T20EPT_20250731T131905_L2A"]
    );
    let page = load_item_collection(data(SEARCH_PAGE)).unwrap();
    let mut r = r.clone();
    r.collections = vec!["sentinel-2-l1c".into()];
    assert_eq!(page.search(&r, &bands(&["red"])).unwrap().len(), 2);

    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    match load_item_collection(dir.join("missing.json")) {
        Err(CatalogError::File { path, .. }) => assert!(path.ends_with("missing.json")),
        other => panic!("{other:?}"),
    }
    for (name, text) in [
        ("truncated.json", "{\"type\": \"FeatureCollection\", \"features\": ["),
        ("collection.json", &std::fs::read_to_string(data("sentinel-2-c1-l2a_collection.json")).unwrap()),
        ("nofeatures.json", "{\"type\": \"FeatureCollection\"}"),
        ("features-not-array.json", "{\"type\": \"FeatureCollection\", \"features\": {\"a\": 1}}"),
        ("number.json", "42"),
    ] {
        match load_item_collection(write(name, text)) {
            Err(CatalogError::InvalidJson { url, .. }) => assert!(url.ends_with(name), "{url}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // An item that is no object names what is missing, as an item tree would.
    match load_item_collection(write("not-an-item.json", "{\"type\": \"FeatureCollection\", \"features\": [42]}")) {
        Err(CatalogError::InvalidItem { item, field, .. }) => {
            assert_eq!((item.as_str(), field.as_str()), ("<no id>", "properties"))
        }
        other => panic!("{other:?}"),
    }
    let mut bad = read(C1_20EPT);
    bad["properties"]["datetime"] = json!("yesterday");
    match load_item_collection(write("bad-item.json", &bad.to_string())) {
        Err(CatalogError::InvalidItem { item, field, .. }) => {
            assert_eq!((item.as_str(), field.as_str()), ("S2B_T20EPT_20250731T131905_L2A", "properties.datetime"));
        }
        other => panic!("{other:?}"),
    }
    bad = read(C1_20EPT);
    bad["geometry"] = json!({"type": "Polygon", "coordinates": [[[0, 0], "x", [1, 1]]]});
    assert!(matches!(
        load_item_collection(write("bad-geom.json", &bad.to_string())),
        Err(CatalogError::InvalidItem { field, .. }) if field == "geometry"
    ));
}

#[test]
fn polygon_intersection_counts_touching_and_containment() {
    use super::local::polygons_of_geojson;
    let p = |w, s, e, n| polygons_of_geojson(&polygon(w, s, e, n)).unwrap();
    let tile = p(0.0, 0.0, 10.0, 10.0);
    let check = |q: &[Vec<(f64, f64)>], want: bool| {
        let c = ItemCollection::from_json(
            std::path::Path::new("mem"),
            json!({"type": "Feature", "id": "x", "collection": "c", "properties": {"datetime": "2024-01-01T00:00:00Z"},
                   "geometry": {"type": "Polygon", "coordinates": [q[0].iter().map(|(x, y)| json!([x, y])).collect::<Vec<_>>()]}}),
        )
        .unwrap();
        let mut r = SearchRequest::new(&["c"], utc(2024, 1, 1, 0, 0, 0), utc(2024, 1, 1, 0, 0, 0));
        r.intersects = Some(polygon(0.0, 0.0, 10.0, 10.0));
        assert_eq!(c.matching_items(&r).unwrap().len() == 1, want, "{q:?}");
    };
    check(&tile, true);
    check(&p(2.0, 2.0, 3.0, 3.0), true); // inside
    check(&p(-5.0, -5.0, 15.0, 15.0), true); // around
    check(&p(10.0, 2.0, 12.0, 3.0), true); // touching an edge
    check(&p(10.5, 2.0, 12.0, 3.0), false);
    // a triangle whose bbox overlaps the tile but whose area does not
    let tri = vec![vec![(11.0, 0.0), (20.0, 0.0), (11.0, 11.0 - 0.5), (11.0, 0.0)]];
    check(&tri, false);
    let diag = vec![vec![(9.0, 12.0), (12.0, 9.0), (12.0, 12.0), (9.0, 12.0)]];
    check(&diag, false); // bbox overlaps the corner, the triangle does not reach it
}

// Items of the other catalogs eocube knows, in the shape each publishes (`tests/data/stac/shaped`).

const V0: &str = "shaped/earth-search-v0_sentinel-s2-l2a-cogs_S2A_13TDE_20210615_0_L2A.json";
const CDSE: &str = "shaped/cdse_sentinel-2-l2a_S2B_MSIL2A_20240415T174909_N0510_R141_T13TDE.json";
const PC: &str = "shaped/planetary-computer_sentinel-2-l2a_S2B_MSIL2A_20240415T174909_R141_T13TDE.json";

#[test]
fn earth_search_v0_item_parses_by_band_number() {
    let s = parse_item(&read(V0), &bands(&["red", "green", "blue", "nir08", "scl"])).unwrap();
    assert_eq!((s.epsg, s.collection.as_deref()), (32613, Some("sentinel-s2-l2a-cogs")));
    let keys: Vec<&str> = s.assets.iter().map(|(_, a)| a.key.as_str()).collect();
    assert_eq!(keys, ["B04", "B03", "B02", "B8A", "SCL"]);
    let red = s.asset("red").unwrap();
    assert!(red.href.ends_with("/sentinel-s2-l2a-cogs/13/T/DE/2021/6/S2A_13TDE_20210615_0_L2A/B04.tif"));
    assert_eq!(red.shape, Some((10980, 10980)));
    assert_eq!(s.asset("scl").unwrap().shape, Some((5490, 5490)));
    // no raster:bands in v0: nothing stated, nothing invented
    assert_eq!((red.nodata, red.scale, red.offset), (None, None, None));
    assert_eq!(s.processing_baseline.as_deref(), Some("03.00"));
    // v0 data never carries the offset: it is added back
    let rule = crate::fuse::offset_rule(s.processing_baseline.as_deref(), s.boa_offset_applied, "sentinel-s2-l2a-cogs");
    assert_eq!(rule.add, 1000);
}

#[test]
fn cdse_item_parses_per_resolution_keys_at_the_native_resolution() {
    let s = parse_item(&read(CDSE), &bands(&["B04", "nir08", "coastal", "scl"])).unwrap();
    assert_eq!(s.epsg, 32613, "from proj:code");
    let keys: Vec<&str> = s.assets.iter().map(|(_, a)| a.key.as_str()).collect();
    assert_eq!(keys, ["B04_10m", "B8A_20m", "B01_60m", "SCL_20m"]);
    let red = s.asset("B04").unwrap();
    assert_eq!(red.shape, Some((10980, 10980)));
    assert_eq!(red.transform.map(|t| t.a), Some(10.0));
    // STAC 1.1 with raster v2: nodata, data_type, scale and offset on the asset itself
    assert_eq!((red.nodata, red.scale, red.offset), (Some(0.0), Some(0.0001), Some(-0.1)));
    assert_eq!(red.data_type.as_deref(), Some("uint16"));
    assert_eq!(s.asset("scl").unwrap().data_type.as_deref(), Some("uint8"));
    assert_eq!(s.processing_baseline.as_deref(), Some("05.10"), "from processing:version");
    assert_eq!(crate::fuse::offset_to_add(s.processing_baseline.as_deref(), s.boa_offset_applied, "sentinel-2-l2a"), 0);
    assert!(red.href.starts_with("s3://eodata/") && red.href.ends_with("_B04_10m.jp2"), "{}", red.href);
}

#[test]
fn planetary_computer_item_parses_with_unsigned_hrefs() {
    let s = parse_item(&read(PC), &bands(&["red", "green", "blue", "scl"])).unwrap();
    assert_eq!((s.epsg, s.processing_baseline.as_deref()), (32613, Some("05.10")));
    let red = s.asset("red").unwrap();
    assert_eq!(red.key, "B04");
    assert!(red.href.starts_with("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/"), "{}", red.href);
    assert!(!red.href.contains('?'), "the catalog's hrefs are unsigned: signing is per request");
    assert_eq!(s.asset("scl").unwrap().shape, Some((5490, 5490)));
}

#[test]
fn a_band_missing_from_a_cdse_item_names_the_keys_it_has() {
    let mut item = read(CDSE);
    let assets = item["assets"].as_object_mut().unwrap();
    assets.retain(|k, _| !k.starts_with("B08"));
    match parse_item(&item, &bands(&["nir"])) {
        Err(CatalogError::MissingBand { band, available, .. }) => {
            assert_eq!(band, "nir");
            assert!(available.iter().any(|k| k == "B04_10m"), "{available:?}");
        }
        other => panic!("expected MissingBand, got {other:?}"),
    }
}

const LANDSAT: &str = "shaped/earth-search_landsat-c2-l2_LC09_L2SP_014029_20230612_02_T1.json";

#[test]
fn earth_search_landsat_item_parses_by_common_name_and_file_band_name() {
    let s = parse_item(&read(LANDSAT), &bands(&["red", "SR_B5", "swir16", "qa_pixel"])).unwrap();
    assert_eq!((s.epsg, s.collection.as_deref()), (32618, Some("landsat-c2-l2")));
    let keys: Vec<&str> = s.assets.iter().map(|(_, a)| a.key.as_str()).collect();
    assert_eq!(keys, ["red", "nir08", "swir16", "qa_pixel"]);
    let red = s.asset("red").unwrap();
    assert_eq!((red.nodata, red.scale, red.offset), (Some(0.0), Some(0.0000275), Some(-0.2)));
    assert_eq!(red.shape, Some((7811, 7681)));
    assert_eq!(red.transform.map(|t| t.a), Some(30.0));
    assert!(red.href.starts_with("s3://usgs-landsat/") && red.href.ends_with("_SR_B4.TIF"), "{}", red.href);
    let qa = s.asset("qa_pixel").unwrap();
    assert_eq!((qa.nodata, qa.data_type.as_deref()), (Some(1.0), Some("uint16")));
    // Landsat has no BOA offset to add
    let profile = crate::sensor::profile_for(s.collection.as_deref().unwrap_or_default());
    assert_eq!(profile.harmonization.offset_to_add(None, None, "landsat-c2-l2"), 0);
}

#[test]
fn a_landsat_item_without_qa_pixel_names_the_quality_band_and_the_fix() {
    let mut item = read(LANDSAT);
    item["assets"].as_object_mut().unwrap().remove("qa_pixel");
    let err = parse_item(&item, &bands(&["red", "qa_pixel"])).unwrap_err();
    assert!(matches!(err, CatalogError::MissingQuality { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("`qa_pixel`") && msg.contains("landsat-c2-l2") && msg.contains("--skip-bad-scenes"), "{msg}");
    assert!(msg.contains("qa_radsat"), "the assets it has are listed: {msg}");
}

#[test]
fn planetary_computer_landsat_item_parses_with_unsigned_blob_hrefs() {
    let pc = "shaped/planetary-computer_landsat-c2-l2_LC09_L2SP_014029_20230612_02_T1.json";
    let s = parse_item(&read(pc), &bands(&["red", "nir08", "qa_pixel"])).unwrap();
    assert_eq!((s.epsg, s.collection.as_deref()), (32618, Some("landsat-c2-l2")));
    let red = s.asset("red").unwrap();
    assert!(red.href.starts_with("https://landsateuwest.blob.core.windows.net/landsat-c2/"), "{}", red.href);
    assert!(!red.href.contains('?'), "the catalog's hrefs are unsigned: signing is per request");
    assert_eq!((red.scale, red.offset), (Some(0.0000275), Some(-0.2)));
    assert_eq!(s.asset("qa_pixel").unwrap().nodata, Some(1.0));
}

/// A job's search (`matching_items`, which keeps no counts) and the probe's census find the
/// same items, whichever step of the search drops them.
#[test]
fn local_search_and_census_agree_on_every_step() {
    let c = load_item_collection(data(C1_COLLECTION)).unwrap();
    let cc = |op: &str, x: f64| json!({"op": op, "args": [{"property": "eo:cloud_cover"}, x]});
    let mut requests = vec![april()];
    let mut r = april();
    r.filter = Some(cc("<", 1.0));
    requests.push(r);
    let mut r = april();
    r.intersects = Some(polygon(-106.0, 40.0, -105.8, 40.2));
    requests.push(r);
    let mut r = april();
    r.bbox = Some(crate::grid::Bbox { west: 10.0, south: 40.0, east: 11.0, north: 41.0 });
    requests.push(r);
    let mut r = april();
    r.collections = vec!["sentinel-2-l2a".into()];
    requests.push(r);
    requests.push(SearchRequest::new(&["sentinel-2-c1-l2a"], utc(2024, 4, 12, 17, 54, 0), utc(2024, 4, 15, 18, 0, 0)));
    let mut sizes = Vec::new();
    for r in &requests {
        let census = c.census(r).unwrap();
        let matching = c.matching_items(r).unwrap();
        assert_eq!(matching, census.matching, "{r:?}");
        sizes.push(matching.len());
    }
    // The requests cover a search that finds items and ones that find none.
    assert!(sizes[0] > sizes[1] && sizes[1] > 0 && sizes[3..].iter().all(|&n| n == 0), "{sizes:?}");
}

/// A file read from its text (items kept as text, parsed when a search returns them) gives the
/// same items as the same document handed over as a tree, filter included.
#[test]
fn items_read_as_text_equal_items_read_as_a_tree() {
    let from_text = load_item_collection(data(C1_COLLECTION)).unwrap();
    let from_tree = ItemCollection::from_json(std::path::Path::new("mem"), read(C1_COLLECTION)).unwrap();
    let mut r = april();
    let all = from_text.matching_items(&r).unwrap();
    assert!(all.len() > 2, "{}", all.len());
    assert_eq!(all, from_tree.matching_items(&r).unwrap());
    assert_eq!(all[0]["assets"], read(C1_COLLECTION)["features"][0]["assets"], "the whole item comes back");
    r.filter = Some(json!({"op": "<", "args": [{"property": "eo:cloud_cover"}, 1.0]}));
    let few = from_text.matching_items(&r).unwrap();
    assert!(!few.is_empty() && few.len() < all.len());
    assert_eq!(few, from_tree.matching_items(&r).unwrap());
}
