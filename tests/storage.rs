//! The storage conformance suite (issues 4 and 9): one set of checks of the `CubeStore` contract
//! run against every back end a cube can live on: plain Zarr on a local directory, `s3://` on the
//! test moto server (a fresh bucket per test) and `az://` on Azurite, and Icechunk repositories
//! on local disk and on moto. The checks go through the store (what a reader of the cube sees);
//! where plain Zarr promises more about its objects (one report object per batch, no consolidated
//! metadata before the finish), that is checked on the objects themselves. Then `eocube build --out s3://...` end to end (byte-identical to a local
//! build, SIGKILL and resume, zarr-python + xarray reading it through s3fs), then the refusals
//! (missing bucket, refused credentials, unreachable endpoint, another cube, bad schemes).
//!
//! Needs the environment of `scripts/test.sh` (`scripts/servers.sh start`: moto, fixtures with
//! the e2e archive, the venv with s3fs); without it the tests fail, they never skip.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eocube::store::{
    Cube, CubeLayout, DEFAULT_VARIABLE, Finished, IcechunkOptions, Job, OutLocation, Receipt, StoreError, ZarrFormat,
};
use eocube::{Affine, Crs, GeoBox, Shape};
use serde_json::{Value, json};

const CS: usize = 64;

/// One runtime for the store calls of the checks (the store API is async).
fn block<F: std::future::Future>(f: F) -> F::Output {
    static RT: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
    });
    RT.block_on(f)
}

fn job(t: usize, iy: usize, ix: usize) -> Job {
    Job { t, iy, ix }
}

/// Records `j` done (its chunk written) with `record` as its ledger record and report line.
fn mark_done(cube: &Cube, j: Job, record: Value) {
    done_with(cube, j, Receipt::Stored, record);
}

/// Records `j` done with the receipt of its chunk write (an Icechunk change set merges here).
fn done_with(cube: &Cube, j: Job, receipt: Receipt, record: Value) {
    block(cube.record(vec![Finished { job: j, receipt: Some(receipt), record }])).unwrap();
}

/// Writes the chunk and records its job done with the write's receipt: a chunk a reader sees.
fn write_done(cube: &Cube, t: usize, iy: usize, ix: usize, v: &[u16], shape: (usize, usize)) {
    let receipt = write(cube, t, iy, ix, v, shape).unwrap();
    done_with(cube, job(t, iy, ix), receipt, json!({"t": t, "iy": iy, "ix": ix}));
}

/// What a reader of `cube`'s store sees at `key` (for Icechunk: the build's session).
fn visible(cube: &Cube, key: &str) -> Option<Vec<u8>> {
    block(cube.store().read(key)).unwrap().map(|b| b.to_vec())
}

/// Records `j` as failed: a report line, no ledger entry.
fn report_line(cube: &Cube, j: Job, record: Value) {
    block(cube.record(vec![Finished { job: j, receipt: None, record }])).unwrap();
}

fn write(cube: &Cube, t: usize, iy: usize, ix: usize, v: &[u16], shape: (usize, usize)) -> Result<Receipt, StoreError> {
    block(cube.write_chunk(job(t, iy, ix), v, shape))
}

// ---------------------------------------------------------------------------------------------
// Back ends under test
// ---------------------------------------------------------------------------------------------

/// The cube's S3 and Azure options come from the environment (as for `eocube build`): point
/// `AWS_ENDPOINT_URL` at the test moto and object_store's Azure emulator switch at the test
/// Azurite once, before any test reads them.
fn s3_env() -> common::S3Env {
    static SET: Once = Once::new();
    let s3 = common::s3();
    SET.call_once(|| {
        // SAFETY: every test calls this first; the Once makes the others wait until the writes
        // are done, and nothing in this binary reads the environment concurrently.
        if std::env::var("AWS_ENDPOINT_URL").ok().is_none_or(|v| v.is_empty()) {
            unsafe { std::env::set_var("AWS_ENDPOINT_URL", &s3.endpoint) };
        }
        unsafe {
            std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
            std::env::set_var("AZURITE_BLOB_STORAGE_URL", common::azurite());
        }
    });
    s3
}

/// A fresh bucket on the test moto.
fn fresh_bucket(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    s3_env().create_bucket(&format!("eocube-st-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// Every object of the test moto's `bucket` under `prefix`, by key relative to the prefix.
fn s3_objects(bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    common::objects_under(&s3_env().store(bucket), prefix)
}

/// One back end of the conformance suite: where a cube goes and how to see every object of it.
struct Target {
    name: &'static str,
    out: String,
    /// The S3 bucket or the Azure container.
    bucket: Option<String>,
}

impl Target {
    fn local(name: &str) -> Target {
        let dir = common::scratch_dir(&format!("storage-{name}"));
        Target { name: "local", out: dir.join("cube.zarr").display().to_string(), bucket: None }
    }

    fn s3(name: &str) -> Target {
        let bucket = fresh_bucket(name);
        Target { name: "s3", out: format!("s3://{bucket}/cubes/{name}.zarr"), bucket: Some(bucket) }
    }

    fn icechunk_local(name: &str) -> Target {
        let dir = common::scratch_dir(&format!("storage-ic-{name}"));
        Target { name: "ic-local", out: format!("icechunk://{}", dir.join("repo").display()), bucket: None }
    }

    fn icechunk_s3(name: &str) -> Target {
        let bucket = fresh_bucket(&format!("ic-{name}"));
        Target { name: "ic-s3", out: format!("icechunk+s3://{bucket}/repos/{name}"), bucket: Some(bucket) }
    }

    fn icechunk(&self) -> bool {
        self.out.starts_with("icechunk")
    }

    /// Icechunk stores Zarr v3 only.
    fn formats(&self) -> &'static [ZarrFormat] {
        if self.icechunk() { &[ZarrFormat::V3] } else { &[ZarrFormat::V3, ZarrFormat::V2] }
    }

    /// A container on the test Azurite; eocube reaches it through object_store's emulator
    /// switch, set for this process by [`s3_env`].
    fn azure(name: &str) -> Target {
        s3_env();
        let container = common::fresh_container(&common::azurite(), name);
        Target { name: "azure", out: format!("az://{container}/cubes/{name}.zarr"), bucket: Some(container) }
    }

    fn at(&self, sub: &str) -> String {
        format!("{}-{sub}", self.out)
    }

    /// Every object at `out` as stored (for Icechunk: the repository's own files).
    fn objects(&self, out: &str) -> BTreeMap<String, Vec<u8>> {
        use eocube::store::IcechunkRepo;
        match (&self.bucket, OutLocation::parse(out).expect("location")) {
            (Some(bucket), OutLocation::S3 { prefix, .. }) => s3_objects(bucket, &prefix),
            (_, OutLocation::Local(dir)) => common::files_under(&dir),
            (_, OutLocation::Icechunk(IcechunkRepo::Local(dir))) => common::files_under(&dir),
            (Some(bucket), OutLocation::Icechunk(IcechunkRepo::S3 { prefix, .. })) => s3_objects(bucket, &prefix),
            (Some(container), OutLocation::Azure { prefix, .. }) => {
                common::objects_under(&common::az_store(&common::azurite(), container), &prefix)
            }
            _ => panic!("bad target"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The conformance checks
// ---------------------------------------------------------------------------------------------

/// 150 x 100 px in 64 px chunks: 3 x 2 chunks, the last row (22 px) and column (36 px) clipped.
fn layout(format: ZarrFormat) -> CubeLayout {
    let r = 1.0 / 3600.0;
    CubeLayout {
        geobox: GeoBox::new(
            Crs::wgs84(),
            Affine::north_up(-266_400.0 * r, 146_700.0 * r, r, r),
            Shape { ny: 150, nx: 100 },
        ),
        chunk_size: CS,
        times: vec![19723, 19754],
        bands: vec!["red".into(), "green".into(), "blue".into()],
        variable: DEFAULT_VARIABLE.into(),
        zarr_format: format,
        attrs: json!({"collection": "sentinel-2-l2a", "suite": "storage"}),
        values: eocube::store::DataValues::default(),
    }
}

fn data(cube: &Cube, t: usize, iy: usize, ix: usize) -> (Vec<u16>, (usize, usize)) {
    let (rows, cols) = cube.chunk_shape(iy, ix).expect("chunk in grid");
    let v = (0..rows * cols * 3).map(|i| (1 + (t * 977 + iy * 131 + ix * 17 + i) % 50000) as u16).collect();
    (v, (rows, cols))
}

/// Writes the same cube on any back end: every chunk but (1, 2, 1), whose all-fill write must
/// erase a chunk written just before; ledger and report for each.
fn write_standard(cube: &Cube) {
    for t in 0..2 {
        for iy in 0..3 {
            for ix in 0..2 {
                let (v, shape) = data(cube, t, iy, ix);
                write_done(cube, t, iy, ix, &v, shape);
            }
        }
    }
    let (rows, cols) = cube.chunk_shape(2, 1).unwrap();
    write_done(cube, 1, 2, 1, &vec![0; rows * cols * 3], (rows, cols));
}

type Check = fn(&Target);

fn check_template(t: &Target) {
    for &format in t.formats() {
        let out = t.at(&format!("template-{format:?}"));
        let l = layout(format);
        let cube = block(Cube::create(&out, &l)).unwrap();
        assert!(!block(cube.is_consolidated()).unwrap());
        let want: &[&str] = match format {
            ZarrFormat::V3 => &["zarr.json", "rgb_median/zarr.json", "time/zarr.json", "band/zarr.json", "time/c/0"],
            ZarrFormat::V2 => &[".zgroup", ".zattrs", "rgb_median/.zarray", "time/.zarray", "time/0", "spatial_ref/0"],
        };
        for k in want {
            assert!(visible(&cube, k).is_some(), "{}: {k} missing from the template", t.name);
        }
        assert!(visible(&cube, &cube.chunk_key(0, 0, 0)).is_none(), "no data chunk");
        if format == ZarrFormat::V3 {
            let root: Value = serde_json::from_slice(&visible(&cube, "zarr.json").unwrap()).unwrap();
            assert!(root.get("consolidated_metadata").is_none(), "consolidated only at finish");
        }
        assert_eq!(block(Cube::open(&out)).unwrap().layout(), &l);
        if !t.icechunk() {
            let objs = t.objects(&out);
            assert!(objs.contains_key("_eocube/plan.json"), "{}: no plan document: {:?}", t.name, objs.keys());
            assert!(!objs.keys().any(|k| k.starts_with("rgb_median/c/") || k.starts_with("rgb_median/0")));
            assert!(!objs.contains_key(".zmetadata"));
            assert!(matches!(block(Cube::create(&out, &l)), Err(StoreError::AlreadyExists { .. })));
        }
    }
}

fn check_chunks(t: &Target) {
    let out = t.at("chunks");
    let cube = block(Cube::create(&out, &layout(ZarrFormat::V3))).unwrap();
    let edge = cube.chunk_key(0, 2, 1);
    assert_eq!(edge, "rgb_median/c/0/2/1/0");
    let (v, shape) = data(&cube, 0, 2, 1);
    assert_eq!(shape, (22, 36), "edge chunk is clipped");
    write_done(&cube, 0, 2, 1, &v, shape);
    let (v0, shape0) = data(&cube, 0, 0, 0);
    write_done(&cube, 0, 0, 0, &v0, shape0);
    let first = visible(&cube, &edge).expect("edge chunk stored");
    assert!(visible(&cube, &cube.chunk_key(0, 0, 0)).is_some());
    // An all-fill write erases; rewriting gives the same bytes.
    write_done(&cube, 0, 2, 1, &vec![0; 22 * 36 * 3], (22, 36));
    assert!(visible(&cube, &edge).is_none(), "an all-fill chunk erases");
    write_done(&cube, 0, 2, 1, &v, shape);
    assert_eq!(visible(&cube, &edge).unwrap(), first, "rewrite is byte-identical");
    // An all-fill chunk where nothing was is fine too; bad shapes are refused.
    write_done(&cube, 1, 1, 1, &vec![0; 64 * 36 * 3], (64, 36));
    assert!(visible(&cube, &cube.chunk_key(1, 1, 1)).is_none());
    assert!(matches!(write(&cube, 0, 2, 1, &[1; 10], (22, 36)), Err(StoreError::BadChunk { .. })));
    assert!(matches!(write(&cube, 0, 3, 0, &[1; 10], (1, 1)), Err(StoreError::BadChunk { .. })));
    if !t.icechunk() {
        // Plain Zarr: a chunk is visible as soon as it is written, before its job is recorded.
        let (v, shape) = data(&cube, 1, 0, 1);
        write(&cube, 1, 0, 1, &v, shape).unwrap();
        assert!(t.objects(&out).contains_key("rgb_median/c/1/0/1/0"));
    } else {
        // Icechunk: a write is the job's own until its receipt is recorded.
        let (v, shape) = data(&cube, 1, 0, 1);
        let receipt = write(&cube, 1, 0, 1, &v, shape).unwrap();
        assert!(visible(&cube, &cube.chunk_key(1, 0, 1)).is_none(), "an unrecorded write is not seen");
        done_with(&cube, job(1, 0, 1), receipt, json!({}));
        assert!(visible(&cube, &cube.chunk_key(1, 0, 1)).is_some());
    }
}

fn check_ledger(t: &Target) {
    let out = t.at("ledger");
    let cube = block(Cube::create(&out, &layout(ZarrFormat::V3))).unwrap();
    assert!(block(cube.done_jobs()).unwrap().is_empty());
    mark_done(&cube, job(0, 1, 1), json!({"scenes": 4}));
    mark_done(&cube, job(1, 2, 0), json!({"scenes": 0}));
    mark_done(&cube, job(1, 2, 0), json!({"scenes": 0}));
    assert_eq!(block(cube.done_jobs()).unwrap().len(), 2);
    // Durable once checkpointed: another process opening the cube sees them.
    block(cube.checkpoint()).unwrap();
    let again = block(Cube::open(&out)).unwrap();
    assert_eq!(block(again.done_jobs()).unwrap(), [job(0, 1, 1), job(1, 2, 0)].into_iter().collect());
    assert_eq!(block(again.ledger_record(job(0, 1, 1))).unwrap().unwrap()["scenes"], 4);
    assert_eq!(block(again.ledger_record(job(1, 0, 0))).unwrap(), None);
}

fn check_report(t: &Target) {
    let out = t.at("report");
    let cube = block(Cube::create(&out, &layout(ZarrFormat::V3))).unwrap();
    assert!(block(cube.report()).unwrap().is_empty());
    for i in 0..5 {
        report_line(&cube, job(0, 0, i), json!({"job": [0, 0, i], "n": i}));
    }
    // Concurrent writers (processes of a run, a coordinator and a collect): every record lands.
    std::thread::scope(|s| {
        for w in 0..4 {
            let cube = &cube;
            s.spawn(move || {
                for i in 0..5 {
                    report_line(cube, job(1, w, i), json!({"job": [1, w, i], "pad": "x".repeat(300)}));
                }
            });
        }
    });
    block(cube.checkpoint()).unwrap();
    let report = block(block(Cube::open(&out)).unwrap().report()).unwrap();
    assert_eq!(report.len(), 25);
    let first: Vec<Value> = report[..5].iter().map(|r| r["n"].clone()).collect();
    assert_eq!(first, [0, 1, 2, 3, 4].map(|i| json!(i)), "records come back in order");
    if t.icechunk() {
        return;
    }
    let objs = t.objects(&out);
    // One object per recorded batch, on every back end (object stores cannot append).
    assert_eq!(objs.keys().filter(|k| k.starts_with("_eocube/report/")).count(), 25, "one object per batch");
    assert!(!objs.contains_key("_eocube/report.jsonl"));
}

fn check_reopen(t: &Target) {
    for &format in t.formats() {
        let out = t.at(&format!("reopen-{format:?}"));
        let l = layout(format);
        let cube = block(Cube::create(&out, &l)).unwrap();
        write_standard(&cube);
        block(cube.checkpoint()).unwrap();
        let before = t.objects(&out);
        let cube = block(Cube::open_matching(&out, &l)).unwrap();
        assert_eq!(block(cube.done_jobs()).unwrap().len(), 12);
        let mut other = l.clone();
        other.bands.pop();
        assert!(matches!(
            block(Cube::open_matching(&out, &other)),
            Err(StoreError::LayoutMismatch { field: "bands", .. })
        ));
        let mut other = l.clone();
        other.attrs = json!({"collection": "landsat"});
        let e = block(Cube::open_matching(&out, &other)).err().expect("another spec is refused");
        assert!(matches!(e, StoreError::LayoutMismatch { field: "spec", .. }), "{e}");
        assert!(e.to_string().contains(&out), "{e} names the location");
        let loc = OutLocation::parse(&out).unwrap();
        let ic = IcechunkOptions::default();
        // Icechunk: another cube may be built beside an unfinished one (on its own build branch);
        // the target refuses it once a cube is published there (check_finish).
        if !t.icechunk() {
            assert!(matches!(block(Cube::create_or_open(&loc, &other, &ic)), Err(StoreError::LayoutMismatch { .. })));
        }
        let (_, resumed) = block(Cube::create_or_open(&loc, &l, &ic)).unwrap();
        assert!(resumed);
        assert_eq!(t.objects(&out), before, "refusals and reopening modify nothing");
    }
}

fn check_finish(t: &Target) {
    for &format in t.formats() {
        let out = t.at(&format!("finish-{format:?}"));
        let cube = block(Cube::create(&out, &layout(format))).unwrap();
        write_standard(&cube);
        let reader = block(Cube::open(&out)).unwrap();
        assert!(!block(reader.is_consolidated()).unwrap(), "a reader of an unfinished cube sees the template");
        block(cube.finish()).unwrap();
        let done = block(Cube::open(&out)).unwrap();
        assert!(block(done.is_consolidated()).unwrap());
        assert_eq!(block(done.done_jobs()).unwrap().len(), 12, "the ledger survives the finish");
        match format {
            // Icechunk keeps every node's metadata in its snapshot: nothing to consolidate.
            ZarrFormat::V3 if t.icechunk() => {
                let mut other = layout(format);
                other.attrs = json!({"collection": "landsat"});
                let loc = OutLocation::parse(&out).unwrap();
                let refused = block(Cube::create_or_open(&loc, &other, &IcechunkOptions::default()));
                assert!(matches!(refused, Err(StoreError::LayoutMismatch { .. })), "another cube over a published one");
            }
            ZarrFormat::V3 => {
                let root: Value = serde_json::from_slice(&visible(&done, "zarr.json").unwrap()).unwrap();
                assert_eq!(root["consolidated_metadata"]["metadata"].as_object().unwrap().len(), 6);
            }
            ZarrFormat::V2 => assert!(visible(&done, ".zmetadata").is_some()),
        }
        assert!(visible(&done, &done.chunk_key(1, 2, 1)).is_none(), "the all-fill write erased");
        let (v, _) = data(&done, 0, 1, 1);
        assert!(visible(&done, &done.chunk_key(0, 1, 1)).is_some_and(|b| !b.is_empty()) && !v.is_empty());
    }
}

const CHECKS: [(&str, Check); 6] = [
    ("template", check_template),
    ("chunks", check_chunks),
    ("ledger", check_ledger),
    ("report", check_report),
    ("reopen", check_reopen),
    ("finish", check_finish),
];

/// Run every check, print one matrix row, fail if any failed.
fn conformance(t: &Target) {
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(t)));
        let ok = r.is_ok();
        println!(
            "conformance {:<6} {name:<9} {} ({:.2} s)",
            t.name,
            if ok { "pass" } else { "FAIL" },
            t0.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "{}: failed checks {failed:?}", t.name);
}

#[test]
fn conformance_local() {
    conformance(&Target::local("conf"));
}

#[test]
fn conformance_s3() {
    conformance(&Target::s3("conf"));
}

#[test]
fn conformance_azure() {
    conformance(&Target::azure("conf"));
}

#[test]
fn conformance_icechunk_local() {
    conformance(&Target::icechunk_local("conf"));
}

#[test]
fn conformance_icechunk_s3() {
    s3_env();
    conformance(&Target::icechunk_s3("conf"));
}

/// The root group documents hold the creation time; everything else must be equal byte for byte.
/// The bytes of `key` without the group's `created` time (seconds: two cubes made a moment
/// apart may differ there), also inside v2's consolidated `.zmetadata`.
fn without_created(key: &str, bytes: &[u8]) -> Vec<u8> {
    if key == "zarr.json" || key == ".zattrs" || key == ".zmetadata" {
        let mut v: Value = serde_json::from_slice(bytes).unwrap();
        let attrs = match key {
            "zarr.json" => &mut v["attributes"],
            ".zmetadata" => &mut v["metadata"][".zattrs"],
            _ => &mut v,
        };
        attrs.as_object_mut().unwrap().remove("created");
        serde_json::to_vec(&v).unwrap()
    } else {
        bytes.to_vec()
    }
}

#[test]
fn the_same_cube_is_byte_identical_on_every_back_end() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let (local, s3) = (Target::local("ident"), Target::s3("ident"));
        let mut got = Vec::new();
        for t in [&local, &s3] {
            let cube = block(Cube::create(&t.out, &layout(format))).unwrap();
            write_standard(&cube);
            block(cube.finish()).unwrap();
            got.push(t.objects(&t.out));
        }
        let strip = |m: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
            m.iter()
                .filter(|(k, _)| !k.starts_with("_eocube/report") && !k.starts_with("_eocube/tmp"))
                .map(|(k, v)| (k.clone(), without_created(k, v)))
                .collect()
        };
        let (a, b) = (strip(&got[0]), strip(&got[1]));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{format:?}: same objects");
        for (k, v) in &a {
            assert!(&b[k] == v, "{format:?}: {k} differs between local disk and S3");
        }
        let chunks =
            a.keys().filter(|k| k.starts_with("rgb_median/") && !k.ends_with("json") && !k.contains(".z")).count();
        println!("{format:?}: {} objects, {chunks} data chunks identical on local disk and S3", a.len());
        assert_eq!(chunks, 11);
    }
}

// ---------------------------------------------------------------------------------------------
// eocube build --out s3://... end to end
// ---------------------------------------------------------------------------------------------

fn e2e_args(out: &str, extra: &[&str]) -> Vec<String> {
    let m = common::e2e_manifest();
    let items = common::e2e_dir().join("items-local.json");
    let mut args: Vec<String> = vec!["build".into(), "--bbox".into()];
    args.extend(m["bbox"].as_array().expect("bbox").iter().map(|v| v.to_string()));
    for (flag, key) in [("--start", "start"), ("--end", "end"), ("--collection", "collection")] {
        args.push(flag.into());
        args.push(m[key].as_str().expect(key).into());
    }
    args.extend(["--items".into(), items.display().to_string(), "--quiet".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--out".into(), out.into()]);
    args
}

/// `eocube` with the S3 options of the test moto in its environment (and `env` on top).
fn eocube(args: &[String], env: &[(&str, &str)]) -> Command {
    let s3 = s3_env();
    let mut c = Command::new(env!("CARGO_BIN_EXE_eocube"));
    c.args(args).env("AWS_ENDPOINT_URL", &s3.endpoint);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(args: &[String], env: &[(&str, &str)]) -> std::process::Output {
    let t0 = Instant::now();
    let out = eocube(args, env).output().expect("running eocube");
    println!("eocube {} -> {} in {:.1} s", args.join(" "), out.status, t0.elapsed().as_secs_f64());
    out
}

fn run_ok(args: &[String]) {
    common::assert_ok(&run(args, &[]), args);
}

fn data_chunks(objs: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    objs.iter().filter(|(k, _)| k.starts_with("rgb_median/c/")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn assert_same_chunks(local: &BTreeMap<String, Vec<u8>>, s3: &BTreeMap<String, Vec<u8>>, what: &str) {
    let (a, b) = (data_chunks(local), data_chunks(s3));
    assert!(!a.is_empty(), "{what}: the local build wrote no chunk");
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: chunk keys");
    for (k, v) in &a {
        assert!(&b[k] == v, "{what}: {k} differs");
    }
    for k in ["time/c/0", "latitude/c/0", "longitude/c/0", "band/c/0", "rgb_median/zarr.json"] {
        assert_eq!(local.get(k), s3.get(k), "{what}: {k}");
    }
    println!("{what}: {} chunk objects byte-identical", a.len());
}

fn ledger_count(bucket: &str, prefix: &str) -> usize {
    s3_objects(bucket, &format!("{prefix}/_eocube/ledger")).len()
}

/// Build the e2e cube locally and on S3 (same spec), compare every chunk object, read both with
/// xarray (S3 through s3fs), then kill a build on S3 with SIGKILL midway and resume it.
#[test]
fn build_on_s3_matches_local_resumes_after_sigkill_and_reads_in_xarray() {
    let flags = ["--resampling", "nearest", "--chunk-size", "64", "--workers", "2"];
    let dir = common::scratch_dir("storage-e2e");
    let local = dir.join("cube.zarr");
    run_ok(&e2e_args(&local.display().to_string(), &flags));
    let local_objs = common::files_under(&local);

    let bucket = fresh_bucket("e2e");
    let url = format!("s3://{bucket}/cubes/e2e.zarr");
    let t0 = Instant::now();
    run_ok(&e2e_args(&url, &flags));
    let s3_secs = t0.elapsed().as_secs_f64();
    let s3_objs = s3_objects(&bucket, "cubes/e2e.zarr");
    assert_same_chunks(&local_objs, &s3_objs, "local vs s3 build");
    println!("conformance s3          build       pass ({s3_secs:.2} s)");
    println!("conformance s3          bytes       pass");
    let jobs = ledger_count(&bucket, "cubes/e2e.zarr");
    let reports = s3_objs.keys().filter(|k| k.starts_with("_eocube/report/")).count();
    assert!((1..=jobs).contains(&reports), "report objects: one per recorded batch, {reports} for {jobs} jobs");
    println!("s3 build: {jobs} jobs in {s3_secs:.1} s, {} objects", s3_objs.len());

    // eocube status on the S3 cube.
    let st = eocube(&["status".into(), url.clone(), "--json".into()], &[]).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let st: Value = serde_json::from_slice(&st.stdout).expect("status --json");
    assert_eq!((st["done"].as_u64(), st["complete"].as_bool()), (Some(jobs as u64), Some(true)), "{st}");

    // A second run resumes: nothing to do, nothing rewritten.
    run_ok(&e2e_args(&url, &flags));
    assert_same_chunks(&local_objs, &s3_objects(&bucket, "cubes/e2e.zarr"), "after a no-op resume");

    let t0 = Instant::now();
    python_reads_the_same(&local, &bucket, "cubes/e2e.zarr");
    println!("conformance s3          read-back   pass ({:.2} s)", t0.elapsed().as_secs_f64());
    let t_kill = Instant::now();

    // SIGKILL midway, then resume.
    let flags1 = ["--resampling", "nearest", "--chunk-size", "64", "--workers", "1"];
    let killed = format!("s3://{bucket}/cubes/killed.zarr");
    let args = e2e_args(&killed, &flags1);
    let mut child = eocube(&args, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning eocube build");
    let before = format!("3 of {jobs} jobs were in the ledger");
    let at_kill =
        common::kill_when(&mut child, 3, Duration::from_secs(120), Duration::from_millis(20), &before, || {
            ledger_count(&bucket, "cubes/killed.zarr")
        });
    let before = s3_objects(&bucket, "cubes/killed.zarr");
    let done_before = before.keys().filter(|k| k.starts_with("_eocube/ledger/")).count();
    assert!(done_before < jobs, "every job was done before the kill: cannot test resume");
    let root: Value = serde_json::from_slice(&before["zarr.json"]).unwrap();
    assert!(root.get("consolidated_metadata").is_none(), "an interrupted cube is not consolidated");
    println!("killed after {at_kill} ledger objects ({done_before} at exit) of {jobs}");
    let t0 = Instant::now();
    run_ok(&args);
    println!("resume on s3: {:.1} s", t0.elapsed().as_secs_f64());
    let after = s3_objects(&bucket, "cubes/killed.zarr");
    assert_eq!(after.keys().filter(|k| k.starts_with("_eocube/ledger/")).count(), jobs);
    for (k, v) in before.iter().filter(|(k, _)| k.starts_with("_eocube/ledger/")) {
        assert_eq!(&after[k], v, "{k}: a job done before the kill was redone");
    }
    assert_same_chunks(&local_objs, &after, "local vs s3 after SIGKILL + resume");
    println!("conformance s3          kill+resume pass ({:.2} s)", t_kill.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

/// zarr-python 3 + xarray open the S3 cube through s3fs and see the same dataset as the local one.
fn python_reads_the_same(local: &Path, bucket: &str, prefix: &str) {
    let s3 = s3_env();
    let script = r#"
import sys, json
import numpy as np, xarray as xr, rioxarray  # noqa: F401
local, url, endpoint, key, secret = sys.argv[1:6]
opts = {"endpoint_url": endpoint, "key": key, "secret": secret}
a = xr.open_zarr(local)
b = xr.open_zarr(url, storage_options=opts)
assert dict(a.sizes) == dict(b.sizes), (a.sizes, b.sizes)
for name in ["time", "latitude", "longitude", "band"]:
    assert np.array_equal(a[name].values, b[name].values), name
assert a.attrs["spec"] == b.attrs["spec"]
assert a["spatial_ref"].attrs["crs_wkt"] == b["spatial_ref"].attrs["crs_wkt"]
ra = xr.open_zarr(local, mask_and_scale=False)["rgb_median"].values
rb = xr.open_zarr(url, storage_options=opts, mask_and_scale=False)["rgb_median"].values
assert ra.dtype == rb.dtype == np.uint16 and np.array_equal(ra, rb)
assert (ra > 0).sum() > 0
xr.testing.assert_equal(a, b)
attrs = lambda ds: {k: v for k, v in ds.attrs.items() if k != "created"}
assert attrs(a) == attrs(b), (attrs(a), attrs(b))
for v in a.variables:
    assert a[v].attrs == b[v].attrs, v
assert a.rio.crs == b.rio.crs and b.rio.crs.to_epsg() == 4326, (a.rio.crs, b.rio.crs)
print(json.dumps({"sizes": dict(b.sizes), "valid": int((rb > 0).sum()), "crs": b.rio.crs.to_epsg()}))
print("all checks passed")
"#;
    let url = format!("s3://{bucket}/{prefix}");
    let local = local.display().to_string();
    let what = format!("xarray read-back of {url}");
    let stdout = common::run_python(script, &[&local, &url, &s3.endpoint, &s3.access_key, &s3.secret_key], &what);
    println!("xarray: {stdout}");
    assert!(stdout.contains("all checks passed"), "{what}:\n{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bucket_that_does_not_exist_is_refused() {
    s3_env();
    let url = format!("s3://eocube-no-such-bucket-{}/cube", std::process::id());
    let e = block(Cube::create(&url, &layout(ZarrFormat::V3))).err().expect("refused");
    assert!(matches!(e, StoreError::NoBucket { .. }), "{e}");
    assert!(e.to_string().contains("does not exist") && e.to_string().contains(&url), "{e}");
    assert!(matches!(block(Cube::open(&url)), Err(StoreError::NoBucket { .. })));
    let out = run(&e2e_args(&url, &["--chunk-size", "64"]), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("--out") && err.contains("does not exist"), "{err}");
    // Nothing was created: the bucket is still missing.
    assert!(matches!(block(Cube::open(&url)), Err(StoreError::NoBucket { .. })));
}

#[test]
fn an_unreachable_endpoint_is_refused_quickly() {
    s3_env();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    let out = run(&e2e_args("s3://some-bucket/cube", &["--chunk-size", "64"]), &[("AWS_ENDPOINT_URL", &endpoint)]);
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("--out") && err.contains("does not answer") && err.contains("AWS_ENDPOINT_URL"), "{err}");
    assert!(secs < 45.0, "took {secs:.1} s to give up");
}

/// A second moto that checks signatures (`INITIAL_NO_AUTH_ACTION_COUNT=0`): made-up keys are
/// refused, the message says so and never shows the secret.
#[test]
fn wrong_credentials_are_refused_and_never_printed() {
    s3_env();
    let (mut server, endpoint) = common::start_auth_moto(0);
    let secret = "wrong-secret-Zq9xK2";
    let out = run(
        &e2e_args("s3://some-bucket/cube", &["--chunk-size", "64"]),
        &[("AWS_ENDPOINT_URL", &endpoint), ("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONG"), ("AWS_SECRET_ACCESS_KEY", secret)],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("--out") && err.contains("access denied"), "{err}");
    assert!(!err.contains(secret), "the secret key was printed: {err}");
}

#[test]
fn another_cube_on_s3_is_refused_without_modification() {
    let t = Target::s3("other");
    let cube = block(Cube::create(&t.out, &layout(ZarrFormat::V3))).unwrap();
    write_standard(&cube);
    let before = t.objects(&t.out);
    let out = run(&e2e_args(&t.out, &["--chunk-size", "64"]), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("--out") && err.contains("different"), "{err}");
    // Something that is not a cube at all.
    let not_cube = format!("s3://{}/notes", t.bucket.as_deref().unwrap());
    let out = run(&["status".into(), format!("{}/cubes", not_cube)], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(t.objects(&t.out), before, "the refusal modified the cube");
}

#[test]
fn output_urls_are_parsed_and_bad_schemes_refused() {
    let ok = |s: &str| OutLocation::parse(s).unwrap();
    assert_eq!(ok("cube.zarr"), OutLocation::Local("cube.zarr".into()));
    assert_eq!(ok("file:///data/cube.zarr"), OutLocation::Local("/data/cube.zarr".into()));
    assert_eq!(ok("s3://b-1/a/b.zarr/"), OutLocation::S3 { bucket: "b-1".into(), prefix: "a/b.zarr".into() });
    assert_eq!(ok("s3://bucket").to_string(), "s3://bucket");
    assert_eq!(ok("icechunk:///tmp/repo").to_string(), "icechunk:///tmp/repo");
    assert_eq!(ok("icechunk+s3://b-1/repos/r/").to_string(), "icechunk+s3://b-1/repos/r");
    for (out, want) in [
        ("icechunk+gs://b/repo", "not supported yet"),
        ("icechunk+az://b/repo", "not supported yet"),
        ("icechunk://relative/repo", "three slashes"),
        ("icechunk+s3://bucket", "needs a prefix"),
        ("ftp://host/c", "unknown scheme"),
        ("s3:///c", "no bucket"),
        ("s3://B/c", "not a valid S3 bucket"),
        ("s3://bucket/a/../c", "'..'"),
    ] {
        let e = OutLocation::parse(out).expect_err(out).to_string();
        assert!(e.contains(want) && e.contains(out) && e.contains("s3://bucket/prefix"), "{out}: {e}");
    }
    for (out, want) in [("ftp://host/c", "unknown scheme"), ("icechunk+gs://b/c", "not supported yet")] {
        let r = run(&e2e_args(out, &["--chunk-size", "64"]), &[]);
        assert_eq!(r.status.code(), Some(1));
        let err = stderr_of(&r);
        assert!(err.contains(&format!("--out {out}")) && err.contains(want), "{err}");
    }
}

/// Chunk PUTs answered `503 Slow Down`, more often in a row than object_store's own retries
/// (6 attempts, `eocube::cloud::ClientConfig::default`): the job fails transiently, the scheduler retries it, and the build completes
/// with the same bytes as a local build. The 503s come from a fault proxy in front of moto
/// (`tests/py/fault_proxy.py`).
#[test]
fn chunk_puts_answered_503_are_retried_and_the_build_completes() {
    let s3 = s3_env();
    let flags = ["--resampling", "nearest", "--chunk-size", "128", "--workers", "1"];
    let dir = common::scratch_dir("storage-503");
    let local = dir.join("cube.zarr");
    run_ok(&e2e_args(&local.display().to_string(), &flags));
    let local_objs = common::files_under(&local);

    let port_file = dir.join("proxy.port");
    let faults = eocube::cloud::ClientConfig::default().max_retries + 2;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/fault_proxy.py");
    let mut proxy = Command::new(common::python())
        .arg(&script)
        .args([s3.endpoint.as_str(), "PUT", "/rgb_median/c/", &faults.to_string()])
        .arg(&port_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the fault proxy");
    let t0 = Instant::now();
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file)
            && let Ok(p) = p.trim().parse::<u16>()
        {
            break p;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the fault proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let bucket = fresh_bucket("faults");
    let url = format!("s3://{bucket}/cubes/faults.zarr");
    let out = run(&e2e_args(&url, &flags), &[("AWS_ENDPOINT_URL", &endpoint)]);
    let _ = proxy.kill();
    let served = proxy.wait_with_output().expect("the proxy's output");
    let served = String::from_utf8_lossy(&served.stdout);
    common::assert_ok(&out, &e2e_args(&url, &flags));
    assert_eq!(served.lines().filter(|l| l.starts_with("fault PUT")).count(), faults, "{served}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let retries: usize = stdout
        .split(" retries")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry count in {stdout}"));
    assert!(retries >= 1, "the job whose PUTs all failed was not retried: {stdout}");
    assert_same_chunks(&local_objs, &s3_objects(&bucket, "cubes/faults.zarr"), "local vs s3 through 503s");
}
