use serde_json::{Value, json};

use super::meta::{array_docs, spatial_ref_attrs};
use super::*;
use crate::grid::{Affine, Crs, GeoBox, Shape};

/// 150 x 170 px of 1/3600 degree in 64 px chunks: 3 x 3 chunks, the last row/column clipped.
fn layout(format: ZarrFormat) -> CubeLayout {
    let r = 1.0 / 3600.0;
    CubeLayout {
        geobox: GeoBox::new(Crs::wgs84(), Affine::north_up(-73.5, 41.0, r, r), Shape { ny: 150, nx: 170 }),
        chunk_size: 64,
        times: vec![19723, 19754],
        bands: vec!["red".into(), "green".into(), "blue".into()],
        variable: DEFAULT_VARIABLE.into(),
        zarr_format: format,
        attrs: json!({"collection": "sentinel-2-l2a"}),
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eocube-store-unit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn v3_metadata_of_the_data_variable() {
    let docs = array_docs(&layout(ZarrFormat::V3));
    let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["rgb_median", "time", "latitude", "longitude", "band", "spatial_ref"]);
    let m = &docs[0].metadata;
    assert_eq!(m["shape"], json!([2, 150, 170, 3]));
    assert_eq!(m["data_type"], "uint16");
    assert_eq!(m["fill_value"], 0);
    assert_eq!(m["chunk_grid"]["configuration"]["chunk_shape"], json!([1, 64, 64, 3]));
    assert_eq!(m["dimension_names"], json!(["time", "latitude", "longitude", "band"]));
    assert_eq!(m["codecs"][1]["name"], "zstd");
    let a = &m["attributes"];
    assert_eq!(a["grid_mapping"], "spatial_ref");
    assert_eq!(a["scale_factor"], 0.0001);
    assert_eq!(a["add_offset"], -0.1);
    assert_eq!(a["_FillValue"], 0, "v3 needs _FillValue as an attribute for xarray's mask");
    assert!(a.get("_ARRAY_DIMENSIONS").is_none());
    assert_eq!(docs[1].metadata["attributes"]["units"], "days since 1970-01-01");
    assert_eq!(docs[1].metadata["attributes"]["calendar"], "proleptic_gregorian");
    assert_eq!(docs[4].metadata["data_type"], "string");
    assert_eq!(docs[5].metadata["shape"], json!([]));
}

#[test]
fn v2_metadata_of_the_data_variable() {
    let docs = array_docs(&layout(ZarrFormat::V2));
    let m = &docs[0].metadata;
    assert_eq!(m["zarr_format"], 2);
    assert_eq!(m["dtype"], "<u2");
    assert_eq!(m["chunks"], json!([1, 64, 64, 3]));
    assert_eq!(m["fill_value"], 0);
    assert_eq!(m["compressor"]["id"], "zstd");
    assert_eq!(docs[0].attrs["_ARRAY_DIMENSIONS"], json!(["time", "latitude", "longitude", "band"]));
    assert!(docs[0].attrs.get("_FillValue").is_none(), "v2 carries the fill in .zarray only");
    // The time fill must not be a date a bin can have (xarray masks a v2 fill_value).
    assert_eq!(docs[1].metadata["fill_value"], json!(i64::MIN));
    assert_eq!(docs[1].attrs["_ARRAY_DIMENSIONS"], json!(["time"]));
    assert_eq!(docs[4].metadata["dtype"], "|O");
    assert_eq!(docs[5].attrs["_ARRAY_DIMENSIONS"], json!([]));
}

#[test]
fn projected_dims_and_utm_grid_mapping() {
    let mut l = layout(ZarrFormat::V3);
    l.geobox =
        GeoBox::new(Crs::from_epsg(32618).unwrap(), Affine::north_up(500000.0, 4500000.0, 10.0, 10.0), l.geobox.shape);
    let docs = array_docs(&l);
    assert_eq!(docs[0].metadata["dimension_names"], json!(["time", "y", "x", "band"]));
    assert_eq!(docs[2].metadata["attributes"]["units"], "metre");
    let a = spatial_ref_attrs(&l);
    assert_eq!(a["grid_mapping_name"], "transverse_mercator");
    assert_eq!(a["longitude_of_central_meridian"], -75.0);
    assert_eq!(a["GeoTransform"], "500000 10 0 4500000 0 -10");
    assert!(a["crs_wkt"].as_str().unwrap().contains("UTM zone 18N"));
    let g = spatial_ref_attrs(&layout(ZarrFormat::V3));
    assert_eq!(g["grid_mapping_name"], "latitude_longitude");
}

#[test]
fn edge_chunks_are_clipped_but_keep_their_offset() {
    let dir = tmp("edge");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).unwrap();
    assert_eq!(cube.chunk_shape(0, 0), Some((64, 64)));
    assert_eq!(cube.chunk_shape(2, 2), Some((150 - 128, 170 - 128)));
    assert_eq!(cube.chunk_shape(1, 2), Some((64, 42)));
    assert_eq!(cube.chunk_shape(3, 0), None);
    // The grid module agrees (offsets index * cs).
    let c = cube.layout().geobox.chunks(64).unwrap().chunk(2, 2).unwrap();
    assert_eq!((c.row_offset, c.col_offset), (128, 128));
    assert_eq!(cube.chunk_key(1, 2, 2), "rgb_median/c/1/2/2/0");
    // A wrong shape or length is refused.
    assert!(matches!(cube.write_chunk(0, 2, 2, &[1; 64 * 64 * 3], (64, 64)), Err(StoreError::BadChunk { .. })));
    assert!(matches!(cube.write_chunk(0, 2, 2, &[1; 5], (22, 42)), Err(StoreError::BadChunk { .. })));
    cube.write_chunk(1, 2, 2, &vec![7; 22 * 42 * 3], (22, 42)).unwrap();
    assert!(dir.join("rgb_median/c/1/2/2/0").is_file());
    // All fill: not stored, and a previous chunk is removed.
    cube.write_chunk(1, 2, 2, &vec![0; 22 * 42 * 3], (22, 42)).unwrap();
    assert!(!dir.join("rgb_median/c/1/2/2/0").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn v2_chunk_keys_use_dots() {
    let dir = tmp("v2keys");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V2)).unwrap();
    assert_eq!(cube.chunk_key(1, 2, 0), "rgb_median/1.2.0.0");
    assert!(dir.join(".zgroup").is_file());
    let zattrs = read_json(&dir.join("rgb_median/.zattrs"));
    assert!(zattrs.get("_zarrs").is_none());
    cube.finish().unwrap();
    let zm = read_json(&dir.join(".zmetadata"));
    assert_eq!(zm["zarr_consolidated_format"], 1);
    assert_eq!(zm["metadata"]["time/.zattrs"]["_ARRAY_DIMENSIONS"], json!(["time"]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn template_and_consolidated_metadata_v3() {
    let dir = tmp("v3meta");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).unwrap();
    let root = read_json(&dir.join("zarr.json"));
    assert_eq!(root["attributes"]["eocube_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(root["attributes"]["spec"]["collection"], "sentinel-2-l2a");
    assert!(root["attributes"]["created"].as_str().unwrap().ends_with('Z'));
    assert!(root.get("consolidated_metadata").is_none(), "consolidated only at finish");
    let arr = read_json(&dir.join("rgb_median/zarr.json"));
    assert!(arr["attributes"].get("_zarrs").is_none());
    assert!(dir.join("_eocube/plan.json").is_file());
    cube.finish().unwrap();
    let root = read_json(&dir.join("zarr.json"));
    let cm = &root["consolidated_metadata"];
    assert_eq!(cm["kind"], "inline");
    assert_eq!(cm["metadata"]["rgb_median"]["dimension_names"][1], "latitude");
    assert_eq!(cm["metadata"].as_object().unwrap().len(), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ledger_round_trip() {
    assert_eq!(ledger::parse_key(&ledger::key((3, 14, 15))), Some((3, 14, 15)));
    assert_eq!(ledger::parse_key("_eocube/ledger/t1_y2.json"), None);
    assert_eq!(ledger::parse_key("_eocube/ledger/t1_y2_x3.json.tmp"), None);
    let dir = tmp("ledger");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).unwrap();
    assert!(cube.done_jobs().unwrap().is_empty());
    cube.mark_done((0, 1, 2), &json!({"scenes": 4, "valid_pixels": 100})).unwrap();
    cube.mark_done((1, 0, 0), &json!({"scenes": 0})).unwrap();
    cube.mark_done((1, 0, 0), &json!({"scenes": 0})).unwrap();
    let reopened = Cube::open(&dir).unwrap();
    assert_eq!(reopened.done_jobs().unwrap(), HashSet::from([(0, 1, 2), (1, 0, 0)]));
    assert_eq!(reopened.ledger_record((0, 1, 2)).unwrap().unwrap()["scenes"], 4);
    assert_eq!(reopened.ledger_record((2, 0, 0)).unwrap(), None);
    cube.append_report(&json!({"job": [0, 1, 2], "ok": true})).unwrap();
    reopened.append_report(&json!({"job": [1, 0, 0], "ok": true})).unwrap();
    let report = std::fs::read_to_string(dir.join("_eocube/report.jsonl")).unwrap();
    let lines: Vec<Value> = report.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["job"], json!([1, 0, 0]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn open_reads_the_layout_back_and_open_matching_refuses_another() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let dir = tmp(&format!("match-{format:?}"));
        let l = layout(format);
        Cube::create(&dir, &l).unwrap();
        assert_eq!(Cube::open(&dir).unwrap().layout(), &l);
        Cube::open_matching(&dir, &l).unwrap();
        let mut other = l.clone();
        other.bands.pop();
        match Cube::open_matching(&dir, &other) {
            Err(StoreError::LayoutMismatch { field: "bands", .. }) => {}
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a different layout was accepted"),
        }
        let mut other = l.clone();
        other.attrs = json!({"collection": "landsat"});
        assert!(matches!(Cube::open_matching(&dir, &other), Err(StoreError::LayoutMismatch { field: "spec", .. })));
        let mut other = l.clone();
        other.zarr_format = if format == ZarrFormat::V3 { ZarrFormat::V2 } else { ZarrFormat::V3 };
        assert!(matches!(Cube::open_matching(&dir, &other), Err(StoreError::LayoutMismatch { .. })));
        // create refuses to overwrite it.
        assert!(matches!(Cube::create(&dir, &l), Err(StoreError::AlreadyExists { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_path_holding_something_else_is_refused() {
    let dir = tmp("else");
    assert!(matches!(Cube::open(&dir), Err(StoreError::NotFound { .. })));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    let e = Cube::open(&dir).err().unwrap();
    assert!(matches!(e, StoreError::NotACube { .. }), "{e}");
    assert!(e.to_string().contains(&dir.display().to_string()));
    // A Zarr group that eocube did not make.
    std::fs::write(dir.join("zarr.json"), r#"{"zarr_format":3,"node_type":"group","attributes":{}}"#).unwrap();
    let e = Cube::open(&dir).err().unwrap();
    assert!(e.to_string().contains("eocube_layout"), "{e}");
    assert!(matches!(Cube::create(&dir, &layout(ZarrFormat::V3)), Err(StoreError::AlreadyExists { .. })));
    // A file.
    let file = dir.join("notes.txt");
    assert!(matches!(Cube::open(&file), Err(StoreError::NotACube { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_layouts_are_refused() {
    let dir = tmp("invalid");
    let mut l = layout(ZarrFormat::V3);
    l.times.clear();
    assert!(matches!(Cube::create(&dir, &l), Err(StoreError::InvalidLayout { .. })));
    let mut l = layout(ZarrFormat::V3);
    l.variable = "time".into();
    assert!(matches!(Cube::create(&dir, &l), Err(StoreError::InvalidLayout { .. })));
    assert!(!dir.exists());
}

#[test]
fn rewriting_a_chunk_gives_the_same_bytes() {
    let dir = tmp("idem");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).unwrap();
    let data: Vec<u16> = (0..64 * 64 * 3).map(|i| (i % 5000 + 1000) as u16).collect();
    cube.write_chunk(0, 0, 1, &data, (64, 64)).unwrap();
    let key = dir.join(cube.chunk_key(0, 0, 1));
    let first = std::fs::read(&key).unwrap();
    cube.write_chunk(0, 0, 1, &data, (64, 64)).unwrap();
    assert_eq!(first, std::fs::read(&key).unwrap());
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.join("_eocube/tmp")).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cube_is_shared_across_worker_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Cube>();
}

#[test]
fn concurrent_workers_write_disjoint_chunks_and_one_report() {
    let dir = tmp("concurrent");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).unwrap();
    let jobs: Vec<JobId> = (0..2).flat_map(|t| (0..3).flat_map(move |iy| (0..3).map(move |ix| (t, iy, ix)))).collect();
    std::thread::scope(|s| {
        for part in jobs.chunks(5) {
            let cube = &cube;
            s.spawn(move || {
                for &(t, iy, ix) in part {
                    let (rows, cols) = cube.chunk_shape(iy, ix).unwrap();
                    cube.write_chunk(t, iy, ix, &vec![(t * 9 + iy * 3 + ix + 1) as u16; rows * cols * 3], (rows, cols))
                        .unwrap();
                    cube.mark_done((t, iy, ix), &json!({"ok": true})).unwrap();
                    cube.append_report(&json!({"job": [t, iy, ix], "pad": "x".repeat(200)})).unwrap();
                }
            });
        }
    });
    assert_eq!(cube.done_jobs().unwrap().len(), jobs.len());
    let report = std::fs::read_to_string(dir.join("_eocube/report.jsonl")).unwrap();
    assert_eq!(report.lines().filter(|l| serde_json::from_str::<Value>(l).is_ok()).count(), jobs.len());
    for &(t, iy, ix) in &jobs {
        assert!(dir.join(cube.chunk_key(t, iy, ix)).is_file());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_locations_parse_once() {
    let p = |s: &str| OutLocation::parse(s);
    assert_eq!(p("cube.zarr").unwrap(), OutLocation::Local("cube.zarr".into()));
    assert_eq!(p("/data/a b/cube.zarr").unwrap(), OutLocation::Local("/data/a b/cube.zarr".into()));
    assert_eq!(p("file:///data/cube.zarr").unwrap().local_path(), Some(Path::new("/data/cube.zarr")));
    assert_eq!(
        p("s3://bucket/a/cube.zarr").unwrap(),
        OutLocation::S3 { bucket: "bucket".into(), prefix: "a/cube.zarr".into() }
    );
    assert_eq!(p("s3a://bucket/").unwrap().to_string(), "s3://bucket");
    // Not a scheme: a relative path with "://" further in.
    assert_eq!(p("dir/x://y").unwrap(), OutLocation::Local("dir/x://y".into()));
    assert!(matches!(p("file://host/data"), Err(LocationError::Invalid { .. })));
    assert!(matches!(p(""), Err(LocationError::Invalid { .. })));
    assert!(matches!(p("s3://bucket/a//b"), Err(LocationError::Invalid { .. })));
    assert!(matches!(p("s3://bucket/a?x=1"), Err(LocationError::Invalid { .. })));
    assert!(matches!(p("icechunk+gs://b/r"), Err(LocationError::NotSupportedYet { .. })));
    assert_eq!(
        p("icechunk:///data/repo").unwrap(),
        OutLocation::Icechunk(location::IcechunkRepo::Local("/data/repo".into()))
    );
    assert_eq!(
        p("icechunk+s3://bucket/r/").unwrap(),
        OutLocation::Icechunk(location::IcechunkRepo::S3 { bucket: "bucket".into(), prefix: "r".into() })
    );
    assert!(matches!(p("icechunk://rel/repo"), Err(LocationError::Invalid { .. })));
    let e = p("ftp://h/c").unwrap_err().to_string();
    assert!(e.starts_with("--out ftp://h/c: unknown scheme \"ftp\"") && e.contains("s3://bucket/prefix"), "{e}");
    // create/open take URLs too; a bad one is refused before anything happens.
    assert!(matches!(Cube::create("gs://b/c", &layout(ZarrFormat::V3)), Err(StoreError::Location(_))));
    assert!(matches!(Cube::open("ftp://b/c"), Err(StoreError::Location(_))));
}

/// Icechunk: each job writes its chunk in a fork of the build branch's session; the fork is
/// merged only when the job is recorded done, so a job that fails after writing leaves nothing.
#[test]
fn icechunk_jobs_write_in_forks_merged_when_done() {
    let dir = tmp("ic-forks");
    let loc = OutLocation::parse(format!("icechunk://{}", dir.display())).unwrap();
    let l = layout(ZarrFormat::V3);
    let opts = IcechunkOptions::default();
    let (cube, resumed) = Cube::create_or_open_icechunk(&loc, &l, &opts).unwrap();
    assert!(!resumed);
    let chunk = |cube: &Cube, iy: usize, ix: usize, v: u16| {
        let (rows, cols) = cube.chunk_shape(iy, ix).unwrap();
        (vec![v; rows * cols * 3], (rows, cols))
    };
    // Six jobs at once from several threads, then one that writes but never ends.
    std::thread::scope(|s| {
        for iy in 0..2 {
            for ix in 0..3 {
                let cube = &cube;
                s.spawn(move || {
                    let (v, shape) = chunk(cube, iy, ix, 100 + (iy * 3 + ix) as u16);
                    cube.write_chunk(0, iy, ix, &v, shape).unwrap();
                    cube.mark_done((0, iy, ix), &json!({"scenes": 1})).unwrap();
                });
            }
        }
    });
    let (v, shape) = chunk(&cube, 2, 2, 9);
    cube.write_chunk(1, 2, 2, &v, shape).unwrap();
    assert!(cube.backend.get(&cube.chunk_key(1, 2, 2)).unwrap().is_none(), "not visible before the job is done");
    cube.checkpoint().unwrap();
    drop(cube);

    let (again, resumed) = Cube::create_or_open_icechunk(&loc, &l, &opts).unwrap();
    assert!(resumed);
    let done = again.done_jobs().unwrap();
    assert_eq!(done.len(), 6);
    for iy in 0..2 {
        for ix in 0..3 {
            assert!(done.contains(&(0, iy, ix)));
            assert!(again.backend.get(&again.chunk_key(0, iy, ix)).unwrap().is_some(), "chunk (0, {iy}, {ix})");
        }
    }
    assert!(again.backend.get(&again.chunk_key(1, 2, 2)).unwrap().is_none(), "the unfinished job left nothing");
    // An all-fill rewrite of a done job erases its chunk once merged.
    let (rows, cols) = again.chunk_shape(0, 0).unwrap();
    again.write_chunk(0, 0, 0, &vec![0; rows * cols * 3], (rows, cols)).unwrap();
    again.mark_done((0, 0, 0), &json!({"scenes": 0})).unwrap();
    assert!(again.backend.get(&again.chunk_key(0, 0, 0)).unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
