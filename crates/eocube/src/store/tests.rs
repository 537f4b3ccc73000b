use serde_json::{Value, json};

use super::meta::{array_docs, spatial_ref_attrs};
use super::*;
use crate::grid::{Affine, Crs, GeoBox, PixelWindow, Shape};
use crate::scratch::ScratchDir;

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
        values: crate::store::DataValues::default(),
    }
}

/// An empty directory for one test's cube, removed when the test ends.
fn tmp(name: &str) -> ScratchDir {
    ScratchDir::new(&format!("store-unit-{name}"))
}

fn job(t: usize, iy: usize, ix: usize) -> Job {
    Job { t, iy, ix }
}

/// Writes `data` as chunk `j` and records the job done with `record`, as a run does.
async fn write_done(cube: &Cube, j: Job, data: &[u16], shape: (usize, usize), record: Value) {
    let receipt = cube.write_chunk(j, data, shape).await.unwrap();
    cube.record(vec![Finished { job: j, receipt: Some(receipt), record }]).await.unwrap();
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
fn a_cube_of_aerosol_optical_thickness_states_its_own_scale_and_name() {
    let bands = vec!["aot".to_string()];
    let values = crate::store::DataValues::default().of_sensor("sentinel-2-c1-l2a", &bands);
    let docs = array_docs(&CubeLayout { bands, values, ..layout(ZarrFormat::V3) });
    let a = &docs[0].metadata["attributes"];
    assert_eq!((a["scale_factor"].as_f64(), a["add_offset"].as_f64()), (Some(0.001), Some(0.0)));
    assert_eq!(a["long_name"], "median aerosol optical thickness (aot)");
}

#[test]
fn v2_metadata_of_the_data_variable() {
    let docs = array_docs(&layout(ZarrFormat::V2));
    let m = &docs[0].metadata;
    assert_eq!(m["zarr_format"], 2);
    assert_eq!(m["dtype"], "<u2");
    assert_eq!(m["chunks"], json!([1, 64, 64, 3]));
    assert_eq!(m["fill_value"], 0);
    // Only the keys numcodecs 0.12 (zarr-python 2.17) takes: it refuses `checksum`.
    assert_eq!(m["compressor"], json!({"id": "zstd", "level": 5}));
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

#[tokio::test]
async fn edge_chunks_are_clipped_but_keep_their_offset() {
    let dir = tmp("edge");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).await.unwrap();
    assert_eq!(cube.chunk_shape(0, 0), Some((64, 64)));
    assert_eq!(cube.chunk_shape(2, 2), Some((150 - 128, 170 - 128)));
    assert_eq!(cube.chunk_shape(1, 2), Some((64, 42)));
    assert_eq!(cube.chunk_shape(3, 0), None);
    // The grid module agrees (offsets index * cs).
    let c = cube.layout().geobox.chunks(64).unwrap().chunk(2, 2).unwrap();
    assert_eq!((c.row_offset, c.col_offset), (128, 128));
    assert_eq!(cube.chunk_key(1, 2, 2), "rgb_median/c/1/2/2/0");
    // A wrong shape or length is refused.
    assert!(matches!(
        cube.write_chunk(job(0, 2, 2), &[1; 64 * 64 * 3], (64, 64)).await,
        Err(StoreError::BadChunk { .. })
    ));
    assert!(matches!(cube.write_chunk(job(0, 2, 2), &[1; 5], (22, 42)).await, Err(StoreError::BadChunk { .. })));
    cube.write_chunk(job(1, 2, 2), &vec![7; 22 * 42 * 3], (22, 42)).await.unwrap();
    assert!(dir.join("rgb_median/c/1/2/2/0").is_file());
    // All fill: not stored, and a previous chunk is removed.
    cube.write_chunk(job(1, 2, 2), &vec![0; 22 * 42 * 3], (22, 42)).await.unwrap();
    assert!(!dir.join("rgb_median/c/1/2/2/0").exists());
}

#[tokio::test]
async fn v2_chunk_keys_use_dots() {
    let dir = tmp("v2keys");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V2)).await.unwrap();
    assert_eq!(cube.chunk_key(1, 2, 0), "rgb_median/1.2.0.0");
    assert!(dir.join(".zgroup").is_file());
    let zattrs = read_json(&dir.join("rgb_median/.zattrs"));
    assert!(zattrs.get("_zarrs").is_none());
    cube.finish().await.unwrap();
    let zm = read_json(&dir.join(".zmetadata"));
    assert_eq!(zm["zarr_consolidated_format"], 1);
    assert_eq!(zm["metadata"]["time/.zattrs"]["_ARRAY_DIMENSIONS"], json!(["time"]));
}

#[tokio::test]
async fn template_and_consolidated_metadata_v3() {
    let dir = tmp("v3meta");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).await.unwrap();
    let root = read_json(&dir.join("zarr.json"));
    assert_eq!(root["attributes"]["eocube_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(root["attributes"]["spec"]["collection"], "sentinel-2-l2a");
    assert!(root["attributes"]["created"].as_str().unwrap().ends_with('Z'));
    assert!(root.get("consolidated_metadata").is_none(), "consolidated only at finish");
    let arr = read_json(&dir.join("rgb_median/zarr.json"));
    assert!(arr["attributes"].get("_zarrs").is_none());
    assert!(dir.join("_eocube/plan.json").is_file());
    cube.finish().await.unwrap();
    let root = read_json(&dir.join("zarr.json"));
    let cm = &root["consolidated_metadata"];
    assert_eq!(cm["kind"], "inline");
    assert_eq!(cm["metadata"]["rgb_median"]["dimension_names"][1], "latitude");
    assert_eq!(cm["metadata"].as_object().unwrap().len(), 6);
}

#[tokio::test]
async fn ledger_round_trip() {
    assert_eq!(ledger::parse_key(&ledger::key(job(3, 14, 15))), Some(job(3, 14, 15)));
    assert_eq!(ledger::parse_key("_eocube/ledger/t1_y2.json"), None);
    assert_eq!(ledger::parse_key("_eocube/ledger/t1_y2_x3.json.tmp"), None);
    let dir = tmp("ledger");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).await.unwrap();
    assert!(cube.done_jobs().await.unwrap().is_empty());
    let done = |j: Job, record: Value| Finished { job: j, receipt: Some(Receipt::Stored), record };
    cube.record(vec![done(job(0, 1, 2), json!({"job": [0, 1, 2], "scenes": 4}))]).await.unwrap();
    // Recording a job twice (a retried task, a second collect) keeps one ledger entry.
    cube.record(vec![done(job(1, 0, 0), json!({"job": [1, 0, 0], "scenes": 0}))]).await.unwrap();
    cube.record(vec![done(job(1, 0, 0), json!({"job": [1, 0, 0], "scenes": 0}))]).await.unwrap();
    // A failed job is reported, not in the ledger.
    let failed = Finished { job: job(1, 1, 1), receipt: None, record: json!({"job": [1, 1, 1], "outcome": "failed"}) };
    cube.record(vec![failed]).await.unwrap();
    let reopened = Cube::open(&dir).await.unwrap();
    assert_eq!(reopened.done_jobs().await.unwrap(), BTreeSet::from([job(0, 1, 2), job(1, 0, 0)]));
    assert_eq!(reopened.ledger_record(job(0, 1, 2)).await.unwrap().unwrap()["scenes"], 4);
    assert_eq!(reopened.ledger_record(job(2, 0, 0)).await.unwrap(), None);
    let lines = reopened.report().await.unwrap();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[3]["job"], json!([1, 1, 1]));
    // Cubes made before batched reports kept one file; it is read first, a cut line skipped.
    std::fs::write(dir.join("_eocube/report.jsonl"), "{\"job\": [9, 9, 9]}\n{\"cut\": ").unwrap();
    let lines = reopened.report().await.unwrap();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["job"], json!([9, 9, 9]));
}

#[tokio::test]
async fn open_reads_the_layout_back_and_open_matching_refuses_another() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let dir = tmp(&format!("match-{format:?}"));
        let l = layout(format);
        Cube::create(&dir, &l).await.unwrap();
        assert_eq!(Cube::open(&dir).await.unwrap().layout(), &l);
        Cube::open_matching(&dir, &l).await.unwrap();
        let mut other = l.clone();
        other.bands.pop();
        match Cube::open_matching(&dir, &other).await {
            Err(StoreError::LayoutMismatch { field: "bands", .. }) => {}
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a different layout was accepted"),
        }
        let mut other = l.clone();
        other.attrs = json!({"collection": "landsat"});
        assert!(matches!(
            Cube::open_matching(&dir, &other).await,
            Err(StoreError::LayoutMismatch { field: "spec", .. })
        ));
        let mut other = l.clone();
        other.zarr_format = if format == ZarrFormat::V3 { ZarrFormat::V2 } else { ZarrFormat::V3 };
        assert!(matches!(Cube::open_matching(&dir, &other).await, Err(StoreError::LayoutMismatch { .. })));
        // create refuses to overwrite it.
        assert!(matches!(Cube::create(&dir, &l).await, Err(StoreError::AlreadyExists { .. })));
    }
}

#[tokio::test]
async fn a_path_holding_something_else_is_refused() {
    let scratch = tmp("else");
    let dir = scratch.join("cube");
    assert!(matches!(Cube::open(&dir).await, Err(StoreError::NotFound { .. })));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    let e = Cube::open(&dir).await.err().unwrap();
    assert!(matches!(e, StoreError::NotACube { .. }), "{e}");
    assert!(e.to_string().contains(&dir.display().to_string()));
    // A Zarr group that eocube did not make.
    std::fs::write(dir.join("zarr.json"), r#"{"zarr_format":3,"node_type":"group","attributes":{}}"#).unwrap();
    let e = Cube::open(&dir).await.err().unwrap();
    assert!(e.to_string().contains("eocube_layout"), "{e}");
    assert!(matches!(Cube::create(&dir, &layout(ZarrFormat::V3)).await, Err(StoreError::AlreadyExists { .. })));
    // A file.
    let file = dir.join("notes.txt");
    assert!(matches!(Cube::open(&file).await, Err(StoreError::NotACube { .. })));
}

/// A build killed before its first object was in place leaves directories and a staging
/// file: a new cube is made there; a tree holding any other file is still refused.
#[tokio::test]
async fn a_tree_of_only_directories_and_staging_files_is_empty() {
    let scratch = tmp("killed-early");
    let dir = scratch.join("cube");
    std::fs::create_dir_all(dir.join("_eocube")).unwrap();
    std::fs::write(dir.join("_eocube").join("plan.json#7"), "{\"half").unwrap();
    let l = layout(ZarrFormat::V3);
    let (cube, resumed) =
        Cube::create_or_open(&OutLocation::parse(&dir).unwrap(), &l, &IcechunkOptions::default()).await.unwrap();
    assert!(!resumed);
    assert_eq!(cube.layout(), &l);
    assert!(!dir.join("_eocube").join("plan.json#7").exists(), "the staging file is removed");
    assert!(dir.join("zarr.json").is_file());

    let other = scratch.join("other");
    std::fs::create_dir_all(other.join("sub")).unwrap();
    std::fs::write(other.join("sub").join("notes.txt"), "hello").unwrap();
    assert!(matches!(Cube::create(&other, &l).await, Err(StoreError::AlreadyExists { .. })));
    let e = Cube::create_or_open(&OutLocation::parse(&other).unwrap(), &l, &IcechunkOptions::default()).await;
    assert!(matches!(e, Err(StoreError::NotACube { .. })), "{:?}", e.err());
    assert_eq!(std::fs::read_to_string(other.join("sub").join("notes.txt")).unwrap(), "hello");
}

#[tokio::test]
async fn invalid_layouts_are_refused() {
    let scratch = tmp("invalid");
    let dir = scratch.join("cube");
    let mut l = layout(ZarrFormat::V3);
    l.times.clear();
    assert!(matches!(Cube::create(&dir, &l).await, Err(StoreError::InvalidLayout { .. })));
    let mut l = layout(ZarrFormat::V3);
    l.variable = "time".into();
    assert!(matches!(Cube::create(&dir, &l).await, Err(StoreError::InvalidLayout { .. })));
    assert!(!dir.exists());
}

#[tokio::test]
async fn rewriting_a_chunk_gives_the_same_bytes() {
    let dir = tmp("idem");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).await.unwrap();
    let data: Vec<u16> = (0..64 * 64 * 3).map(|i| (i % 5000 + 1000) as u16).collect();
    cube.write_chunk(job(0, 0, 1), &data, (64, 64)).await.unwrap();
    let key = dir.join(cube.chunk_key(0, 0, 1));
    let first = std::fs::read(&key).unwrap();
    cube.write_chunk(job(0, 0, 1), &data, (64, 64)).await.unwrap();
    assert_eq!(first, std::fs::read(&key).unwrap());
}

#[tokio::test]
async fn an_all_fill_chunk_is_not_stored_and_removes_what_was_there() {
    let dir = tmp("fill");
    let cube = Cube::create(&dir, &layout(ZarrFormat::V3)).await.unwrap();
    for j in [job(0, 0, 1), job(1, 1, 1)] {
        let (rows, cols) = cube.chunk_shape(j.iy, j.ix).unwrap();
        let (key, bytes) = cube.encode_chunk(j, &vec![0; rows * cols * 3], (rows, cols)).unwrap();
        assert_eq!(key, cube.chunk_key(j.t, j.iy, j.ix));
        assert_eq!(bytes, None, "{key}");
        // Any other value is stored.
        let mut one = vec![0; rows * cols * 3];
        one[rows * cols * 3 - 1] = 1;
        assert!(cube.encode_chunk(j, &one, (rows, cols)).unwrap().1.is_some());
    }
    let key = dir.join(cube.chunk_key(0, 0, 1));
    cube.write_chunk(job(0, 0, 1), &vec![7; 64 * 64 * 3], (64, 64)).await.unwrap();
    assert!(key.exists());
    // A rerun that finds nothing leaves fill, not the old values.
    cube.write_chunk(job(0, 0, 1), &vec![0; 64 * 64 * 3], (64, 64)).await.unwrap();
    assert!(!key.exists());
}

#[test]
fn a_cube_is_shared_across_worker_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Cube>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_write_disjoint_chunks_and_one_report() {
    let dir = tmp("concurrent");
    let cube = Arc::new(Cube::create(&dir, &layout(ZarrFormat::V3)).await.unwrap());
    let jobs: Vec<Job> = (0..2).flat_map(|t| (0..3).flat_map(move |iy| (0..3).map(move |ix| job(t, iy, ix)))).collect();
    let tasks: Vec<_> = jobs
        .chunks(5)
        .map(|part| {
            let (cube, part) = (Arc::clone(&cube), part.to_vec());
            tokio::spawn(async move {
                for j in part {
                    let (rows, cols) = cube.chunk_shape(j.iy, j.ix).unwrap();
                    let v = vec![(j.t * 9 + j.iy * 3 + j.ix + 1) as u16; rows * cols * 3];
                    let record = json!({"job": [j.t, j.iy, j.ix], "pad": "x".repeat(200)});
                    write_done(&cube, j, &v, (rows, cols), record).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(cube.done_jobs().await.unwrap().len(), jobs.len());
    assert_eq!(cube.report().await.unwrap().len(), jobs.len());
    for j in &jobs {
        assert!(dir.join(cube.chunk_key(j.t, j.iy, j.ix)).is_file());
    }
}

#[tokio::test]
async fn output_locations_parse_once() {
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
    assert!(e.starts_with("out ftp://h/c: unknown scheme \"ftp\"") && e.contains("s3://bucket/prefix"), "{e}");
    // create/open take URLs too; a bad one is refused before anything happens.
    assert!(matches!(Cube::create("gs://b/c", &layout(ZarrFormat::V3)).await, Err(StoreError::Location(_))));
    assert!(matches!(Cube::open("ftp://b/c").await, Err(StoreError::Location(_))));
}

/// A build killed while it created an Icechunk repository leaves only the first commit's snapshot
/// (the `main` branch is written after it): the next build creates the repository over it.
/// Anything else in the prefix is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_icechunk_creation_is_created_again_and_a_foreign_prefix_refused() {
    let whole = tmp("ic-whole");
    let l = layout(ZarrFormat::V3);
    let opts = IcechunkOptions::default();
    let url = |d: &Path| OutLocation::parse(format!("icechunk://{}", d.display())).unwrap();
    drop(Cube::create_or_open(&url(&whole), &l, &opts).await.unwrap());
    // The first commit of every repository has this fixed id; a killed creation leaves it alone.
    let initial = whole.join("snapshots").join(::icechunk::format::snapshot::Snapshot::INITIAL_SNAPSHOT_ID.to_string());
    assert!(initial.exists(), "{}", initial.display());

    let killed = tmp("ic-killed");
    std::fs::create_dir_all(killed.join("snapshots")).unwrap();
    std::fs::copy(&initial, killed.join("snapshots").join(initial.file_name().unwrap())).unwrap();
    // Killed while the branch was being written: its directory and a half-written staging file.
    std::fs::create_dir_all(killed.join("refs").join("branch.main")).unwrap();
    std::fs::write(killed.join("refs").join("branch.main").join("ref.json#1"), "{\"snap").unwrap();
    let (cube, resumed) = Cube::create_or_open(&url(&killed), &l, &opts).await.unwrap();
    assert!(!resumed);
    drop(cube);
    assert!(killed.join("refs").join("branch.main").join("ref.json").exists(), "the main branch was written");

    let foreign = tmp("ic-foreign");
    std::fs::create_dir_all(foreign.join("snapshots")).unwrap();
    std::fs::copy(&initial, foreign.join("snapshots").join(initial.file_name().unwrap())).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let e = Cube::create_or_open(&url(&foreign), &l, &opts).await.err().unwrap();
    assert!(e.to_string().contains("clean prefixes"), "{e}");
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "mine");
}

/// Icechunk: each job writes its chunk in a fork of the build branch's session; the fork is
/// merged only when the job is recorded done, so a job that fails after writing leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icechunk_jobs_write_in_forks_merged_when_done() {
    let dir = tmp("ic-forks");
    let loc = OutLocation::parse(format!("icechunk://{}", dir.display())).unwrap();
    let l = layout(ZarrFormat::V3);
    let opts = IcechunkOptions::default();
    let (cube, resumed) = Cube::create_or_open(&loc, &l, &opts).await.unwrap();
    assert!(!resumed);
    let cube = Arc::new(cube);
    let chunk = |cube: &Cube, iy: usize, ix: usize, v: u16| {
        let (rows, cols) = cube.chunk_shape(iy, ix).unwrap();
        (vec![v; rows * cols * 3], (rows, cols))
    };
    // Six jobs at once, then one that writes but never ends.
    let mut tasks = Vec::new();
    for iy in 0..2 {
        for ix in 0..3 {
            let cube = Arc::clone(&cube);
            let (v, shape) = chunk(&cube, iy, ix, 100 + (iy * 3 + ix) as u16);
            tasks.push(tokio::spawn(async move {
                write_done(&cube, job(0, iy, ix), &v, shape, json!({"scenes": 1})).await;
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (v, shape) = chunk(&cube, 2, 2, 9);
    cube.write_chunk(job(1, 2, 2), &v, shape).await.unwrap();
    let key = cube.chunk_key(1, 2, 2);
    assert!(cube.store().read(&key).await.unwrap().is_none(), "not visible before the job is done");
    cube.checkpoint().await.unwrap();
    drop(cube);

    let (again, resumed) = Cube::create_or_open(&loc, &l, &opts).await.unwrap();
    assert!(resumed);
    let done = again.done_jobs().await.unwrap();
    assert_eq!(done.len(), 6);
    for iy in 0..2 {
        for ix in 0..3 {
            assert!(done.contains(&job(0, iy, ix)));
            let key = again.chunk_key(0, iy, ix);
            assert!(again.store().read(&key).await.unwrap().is_some(), "chunk (0, {iy}, {ix})");
        }
    }
    let key = again.chunk_key(1, 2, 2);
    assert!(again.store().read(&key).await.unwrap().is_none(), "the unfinished job left nothing");
    // An all-fill rewrite of a done job erases its chunk once merged.
    let (rows, cols) = again.chunk_shape(0, 0).unwrap();
    write_done(&again, job(0, 0, 0), &vec![0; rows * cols * 3], (rows, cols), json!({"scenes": 0})).await;
    assert!(again.store().read(&again.chunk_key(0, 0, 0)).await.unwrap().is_none());
}

/// The value a test cube holds at (t, row, col, band): distinct everywhere, never fill.
fn probe(t: usize, r: usize, c: usize, b: usize) -> u16 {
    (1 + t * 7 + r * 3 + c * 5 + b * 11) as u16
}

/// A finished cube of `layout(format)` whose every chunk holds [`probe`] except chunk (0, 1, 1),
/// left unwritten (all fill).
async fn finished_probe_cube(format: ZarrFormat, name: &str) -> (ScratchDir, CubeLayout) {
    let dir = tmp(name);
    let l = layout(format);
    let cube = Cube::create(&dir, &l).await.unwrap();
    for t in 0..2 {
        for iy in 0..3 {
            for ix in 0..3 {
                if (t, iy, ix) == (0, 1, 1) {
                    continue;
                }
                let (rows, cols) = cube.chunk_shape(iy, ix).unwrap();
                let mut data = Vec::with_capacity(rows * cols * 3);
                for r in 0..rows {
                    for c in 0..cols {
                        for b in 0..3 {
                            data.push(probe(t, iy * 64 + r, ix * 64 + c, b));
                        }
                    }
                }
                cube.write_chunk(job(t, iy, ix), &data, (rows, cols)).await.unwrap();
            }
        }
    }
    cube.finish().await.unwrap();
    (dir, l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_reads_windows_across_chunks_edges_and_fill() {
    use view::{ChunkCache, CubeView, Resolved, VersionRef};
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let (dir, l) = finished_probe_cube(format, &format!("view-{format:?}")).await;
        let loc = OutLocation::parse(&dir).unwrap();
        let cache = ChunkCache::new(64 << 20);
        let v = CubeView::open(&loc, &VersionRef::Default, cache.clone()).await.unwrap();
        assert_eq!(v.resolved(), &Resolved::Plain);
        assert!(!v.has_pyramid());
        assert_eq!(v.levels().len(), 1);
        assert_eq!(v.layout().geobox, l.geobox);
        // A window over four chunks, the unwritten one, and past the grid's bottom-right edge.
        let w = PixelWindow { row: 50, col: 60, height: 110, width: 120 };
        for (t, band) in [(0, 0), (0, 2), (1, 1)] {
            let got = v.read(0, t, band, w).await.unwrap();
            for (i, &g) in got.iter().enumerate() {
                let (r, c) = (50 + i / 120, 60 + i % 120);
                let want = if r >= 150 || c >= 170 || (t == 0 && (64..128).contains(&r) && (64..128).contains(&c)) {
                    0
                } else {
                    probe(t, r, c, band)
                };
                assert_eq!(g, want, "{format:?} t {t} band {band} at ({r}, {c})");
            }
        }
        // A window entirely outside reads as fill without touching the store.
        let outside = v.read(0, 0, 0, PixelWindow { row: -10, col: 500, height: 4, width: 4 }).await.unwrap();
        assert_eq!(outside, vec![0; 16]);
        // Reading again is answered from the cache.
        let (_, misses) = cache.stats();
        v.read(0, 0, 0, w).await.unwrap();
        assert_eq!(cache.stats().1, misses, "no new misses");
        assert!(v.read(1, 0, 0, w).await.is_err(), "no level 1");
        assert!(v.read(0, 2, 0, w).await.is_err(), "no time step 2");
        assert!(v.read(0, 0, 3, w).await.is_err(), "no band 3");
        let named = CubeView::open(&loc, &VersionRef::Named("v1".into()), cache.clone()).await.unwrap_err();
        assert!(named.to_string().contains("plain Zarr cube, which has one version"), "{named}");
    }
}

#[tokio::test]
async fn a_view_refuses_an_unfinished_cube_and_foreign_codecs() {
    use view::{ChunkCache, CubeView, VersionRef};
    let dir = tmp("view-unfinished");
    Cube::create(&dir, &layout(ZarrFormat::V3)).await.unwrap();
    let loc = OutLocation::parse(&dir).unwrap();
    let e = CubeView::open(&loc, &VersionRef::Default, ChunkCache::new(1 << 20)).await.unwrap_err();
    assert!(e.to_string().contains("has not finished"), "{e}");
    let (dir, _) = finished_probe_cube(ZarrFormat::V3, "view-codec").await;
    let doc = dir.join("rgb_median/zarr.json");
    let text = std::fs::read_to_string(&doc).unwrap().replace("\"zstd\"", "\"blosc\"");
    std::fs::write(&doc, text).unwrap();
    let loc = OutLocation::parse(&dir).unwrap();
    let e = CubeView::open(&loc, &VersionRef::Default, ChunkCache::new(1 << 20)).await.unwrap_err();
    assert!(e.to_string().contains("not uint16 with the zstd codec"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_icechunk_view_pins_a_snapshot_a_tag_or_a_branch() {
    use view::{ChunkCache, CubeView, Resolved, VersionRef};
    let dir = tmp("ic-view");
    let loc = OutLocation::parse(format!("icechunk://{}", dir.display())).unwrap();
    let l = layout(ZarrFormat::V3);
    let opts = IcechunkOptions { tag: Some("v1".into()), ..Default::default() };
    let (cube, _) = Cube::create_or_open(&loc, &l, &opts).await.unwrap();
    let (rows, cols) = cube.chunk_shape(0, 0).unwrap();
    write_done(&cube, job(0, 0, 0), &vec![42; rows * cols * 3], (rows, cols), json!({"scenes": 1})).await;
    cube.finish().await.unwrap();
    let cache = ChunkCache::new(1 << 20);
    let open = async |v: VersionRef| CubeView::open(&loc, &v, cache.clone()).await;
    let main = open(VersionRef::Default).await.unwrap();
    let Resolved::Branch { name, snapshot } = main.resolved().clone() else { panic!("{:?}", main.resolved()) };
    assert_eq!(name, "main");
    let w = PixelWindow { row: 0, col: 0, height: 2, width: 2 };
    assert_eq!(main.read(0, 0, 1, w).await.unwrap(), vec![42; 4]);
    let tag = open(VersionRef::Named("v1".into())).await.unwrap();
    assert_eq!(tag.resolved(), &Resolved::Tag { name: "v1".into(), snapshot: snapshot.clone() });
    let snap = open(VersionRef::Named(snapshot.clone())).await.unwrap();
    assert_eq!(snap.resolved(), &Resolved::Snapshot { snapshot: snapshot.clone() });
    assert_eq!(snap.read(0, 0, 1, w).await.unwrap(), vec![42; 4]);
    let e = open(VersionRef::Named("nope".into())).await.unwrap_err().to_string();
    assert!(e.contains("no snapshot, tag or branch \"nope\"") && e.contains("[main]") && e.contains("[v1]"), "{e}");
    let versions = view::versions(&loc).await.unwrap().unwrap();
    assert_eq!(versions.branches, vec![("main".to_string(), snapshot.clone())]);
    assert_eq!(versions.tags, vec![("v1".to_string(), snapshot.clone())]);
    assert_eq!(versions.snapshots.first().map(|v| v.snapshot.as_str()), Some(snapshot.as_str()));
}

#[test]
fn a_median_cube_keeps_the_layout_record_and_arrays_of_before_reducers() {
    let l = layout(ZarrFormat::V3);
    let record = serde_json::to_value(LayoutRecord::of(&l)).unwrap();
    for key in ["quantiles", "valid_count", "layout_version"] {
        assert!(record.get(key).is_none(), "{key} in {record}");
    }
    let names: Vec<String> = array_docs(&l).into_iter().map(|d| d.name).collect();
    assert_eq!(names, [DEFAULT_VARIABLE, "time", "latitude", "longitude", "band", "spatial_ref"]);
    // A record without the new keys (every cube before reducers) reads as a median cube's.
    let back: LayoutRecord = serde_json::from_value(record).unwrap();
    assert_eq!(back, LayoutRecord::of(&l));
}

#[tokio::test]
async fn a_quantile_cube_with_count_writes_both_chunks_and_reads_its_values_back() {
    let reducer: crate::reduce::Reducer = "quantiles:0.1,0.9".parse().unwrap();
    let attrs = json!({"reducer": "quantiles:0.1,0.9", "with_count": true});
    let l = CubeLayout { values: DataValues::of(&reducer, true), attrs, ..layout(ZarrFormat::V3) };
    let docs = array_docs(&l);
    let data = &docs[0];
    assert_eq!(data.dims, ["time", "latitude", "longitude", "band", "quantile"]);
    assert_eq!(data.metadata["shape"], json!([2, 150, 170, 3, 2]));
    assert_eq!(data.metadata["attributes"]["eocube:reducer"], "quantiles:0.1,0.9");
    let count = docs.iter().find(|d| d.name == VALID_COUNT_VARIABLE).unwrap();
    assert_eq!(count.dims, ["time", "latitude", "longitude"]);
    assert!(count.metadata["attributes"].get("_FillValue").is_none(), "a count of 0 is data");
    let dir = tmp("quantiles");
    let cube = Cube::create(&dir, &l).await.unwrap();
    assert_eq!(cube.chunk_key(1, 2, 2), "rgb_median/c/1/2/2/0/0");
    assert_eq!(cube.count_chunk_key(1, 2, 2).as_deref(), Some("valid_count/c/1/2/2"));
    let (rows, cols) = (22, 42);
    let values: Vec<u16> = (0..rows * cols * 3 * 2).map(|i| (i % 5000) as u16 + 1).collect();
    assert!(cube.encode_chunk(job(1, 2, 2), &values[..rows * cols * 3], (rows, cols)).is_err(), "one value per band");
    let chunks = vec![
        cube.encode_chunk(job(1, 2, 2), &values, (rows, cols)).unwrap(),
        cube.encode_count_chunk(job(1, 2, 2), &vec![3; rows * cols], (rows, cols)).unwrap(),
    ];
    cube.store().write_chunks(job(1, 2, 2), chunks).await.unwrap();
    assert!(dir.join("rgb_median/c/1/2/2/0/0").is_file() && dir.join("valid_count/c/1/2/2").is_file());
    // Reopened from disk: the same layout (reducer from the spec attribute, quantiles and count
    // from the record).
    let reopened = Cube::open(dir.to_str().unwrap()).await.unwrap();
    assert_eq!(reopened.layout().values, l.values);
    // A spec naming other quantiles than the record is not this eocube's cube.
    let other = CubeLayout { attrs: json!({"reducer": "quantiles:0.2,0.9"}), ..l.clone() };
    assert!(matches!(Cube::check_matching(reopened, &other), Err(StoreError::LayoutMismatch { .. })));
}

#[tokio::test]
async fn an_index_cube_writes_one_variable_per_index_and_reads_its_layout_back() {
    let reducer: crate::reduce::Reducer = "quantiles:0.5,0.9".parse().unwrap();
    let attrs = json!({"reducer": "quantiles:0.5,0.9", "index": ["ndvi=(nir-red)/(nir+red)", "x=red*2"]});
    let values = DataValues::of(&reducer, false).with_indices(vec!["ndvi_quantiles".into(), "x_quantiles".into()]);
    let l = CubeLayout { values, attrs, ..layout(ZarrFormat::V3) };
    let docs = array_docs(&l);
    let ndvi = docs.iter().find(|d| d.name == "ndvi_quantiles").unwrap();
    assert_eq!(ndvi.dims, ["time", "latitude", "longitude", "quantile"]);
    assert_eq!(ndvi.metadata["shape"], json!([2, 150, 170, 2]));
    let a = &ndvi.metadata["attributes"];
    assert_eq!((a["scale_factor"].as_f64(), a["add_offset"].as_f64()), (Some(0.0001), Some(-3.2768)));
    assert_eq!((a["_FillValue"].as_u64(), a["valid_range"].clone()), (Some(0), json!([1, 65535])));
    assert_eq!(a["eocube:index"], "ndvi=(nir-red)/(nir+red)");
    assert!(a["long_name"].as_str().unwrap().starts_with("quantiles of normalized difference vegetation index"));
    let dir = tmp("indices");
    let cube = Cube::create(&dir, &l).await.unwrap();
    assert_eq!(cube.index_chunk_keys(1, 2, 2), ["ndvi_quantiles/c/1/2/2/0", "x_quantiles/c/1/2/2/0"]);
    let (rows, cols) = (22, 42);
    assert!(cube.encode_index_chunk(job(1, 2, 2), 0, &vec![7; rows * cols], (rows, cols)).is_err(), "two quantiles");
    assert!(cube.encode_index_chunk(job(1, 2, 2), 2, &vec![7; rows * cols * 2], (rows, cols)).is_err(), "no third");
    let chunk = cube.encode_index_chunk(job(1, 2, 2), 1, &vec![7; rows * cols * 2], (rows, cols)).unwrap();
    cube.store().write_chunks(job(1, 2, 2), vec![chunk]).await.unwrap();
    assert!(dir.join("x_quantiles/c/1/2/2/0").is_file());
    let reopened = Cube::open(dir.to_str().unwrap()).await.unwrap();
    assert_eq!(reopened.layout().values, l.values);
    let fewer = CubeLayout { values: l.values.clone().with_indices(vec!["ndvi_quantiles".into()]), ..l.clone() };
    assert!(matches!(Cube::check_matching(reopened, &fewer), Err(StoreError::LayoutMismatch { .. })));
    let clash = CubeLayout { values: l.values.clone().with_indices(vec!["valid_count".into()]), ..l.clone() };
    assert!(matches!(Cube::create(tmp("clash"), &clash).await, Err(StoreError::InvalidLayout { .. })));
}
