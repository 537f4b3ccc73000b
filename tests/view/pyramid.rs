//! The overview pyramid (issue 11, part 1; `crates/eocube/src/pyramid.rs`): small cubes built
//! with the real CLI from the e2e archive (`--items`, no STAC server), at a resolution that
//! gives three levels with odd edges (741 x 1236 px, chunks of 300 px that straddle the
//! 512-px tiles), then `eocube overviews`, then `tests/py/pyramid_check.py`: xarray opens every
//! level (`group="pyramid/L"`, consolidated) and it must equal a numpy valid-mean iterated from
//! the data variable, with the conventions' attributes, coordinates and CRS of each level; GDAL
//! (rasterio) reads a v2 level's georeferencing. Rerunning rewrites identical bytes; Icechunk:
//! `build --overviews` publishes the levels in the build's commit, `overviews` adds one commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common;

const FLAGS: [&str; 9] =
    ["--resolution", "1/12345", "--chunk-size", "300", "--resampling", "nearest", "--workers", "2", "--quiet"];
const LEVELS: usize = 3;

fn build_args(out: &str, extra: &[&str]) -> Vec<String> {
    let items = common::e2e_dir().join("items-local.json");
    let mut flags: Vec<&str> = FLAGS.to_vec();
    flags.extend(extra);
    common::e2e_items_build_args(Path::new(out), &items, &flags)
}

fn eocube_ok(args: &[String]) -> String {
    let out = common::run_eocube(args);
    common::assert_ok(&out, args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `tests/py/pyramid_check.py` on `cube` with `expect` (plus the e2e cube's variable and CRS).
fn check_with_python(cube: &str, mut expect: Value) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    expect["variable"] = json!("rgb_median");
    expect["epsg"] = json!(4326);
    expect["levels"] = json!(LEVELS);
    let path = PathBuf::from(format!("{cube}.expect.json"));
    std::fs::write(&path, expect.to_string()).expect("writing expect.json");
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/py/pyramid_check.py"))
        .arg(cube)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running pyramid_check.py: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "pyramid_check.py {cube} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root").display().to_string();
                out.insert(rel, std::fs::read(&p).expect("reading"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The summary line of `eocube overviews`.
fn summary_line(stdout: &str) -> &str {
    stdout.lines().find(|l| l.starts_with("overviews:")).unwrap_or_else(|| panic!("no summary in {stdout}"))
}

/// The pyramid's files and the root metadata (consolidated), for byte comparisons.
fn pyramid_bytes(cube: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut f = files(&cube.join("pyramid"));
    for root in ["zarr.json", ".zmetadata"] {
        if let Ok(b) = std::fs::read(cube.join(root)) {
            f.insert(root.to_string(), b);
        }
    }
    f
}

#[test]
fn plain_v3_levels_equal_a_numpy_valid_mean_and_rerun_is_byte_identical() {
    let dir = common::scratch_dir("pyramid-v3");
    let cube = dir.join("cube.zarr");
    let c = cube.display().to_string();
    eocube_ok(&build_args(&c, &[]));
    let first = eocube_ok(&strs(&["overviews", &c, "--jobs", "3"]));
    let line = summary_line(&first);
    assert!(line.starts_with("overviews: 3 levels (741x1236, 371x618, 186x309), 81 chunks written"), "{line}");

    let root: Value = serde_json::from_slice(&std::fs::read(cube.join("zarr.json")).unwrap()).unwrap();
    let listed = root["consolidated_metadata"]["metadata"].as_object().expect("consolidated metadata");
    for node in ["rgb_median", "pyramid", "pyramid/0", "pyramid/2/red", "pyramid/1/latitude", "pyramid/2/spatial_ref"] {
        assert!(listed.contains_key(node), "{node} not in the root's consolidated metadata");
    }
    // A chunk key of the contract's form; an all-fill chunk would be absent.
    assert!(cube.join("pyramid/0/red/c/0/0/0").is_file());
    check_with_python(&c, json!({}));

    let before = pyramid_bytes(&cube);
    eocube_ok(&strs(&["overviews", &c, "--jobs", "1", "--quiet"]));
    let after = pyramid_bytes(&cube);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "same objects");
    for (k, v) in &before {
        assert!(after[k] == *v, "{k} changed on the rerun");
    }
    println!("rerun: {} objects byte-identical", before.len());

    // `build --overviews` builds tiles while its jobs run, each once the chunks below it are
    // recorded, and ends with the same bytes as `overviews` after the build: a tile read
    // before its chunks were final would differ.
    let with = dir.join("with.zarr");
    let out = eocube_ok(&build_args(&with.display().to_string(), &["--overviews"]));
    let line = summary_line(&out);
    assert!(line.starts_with("overviews: 3 levels"), "{out}");
    let beside: usize = line
        .split(" (")
        .last()
        .and_then(|s| s.split(" of ").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of tiles built while the jobs ran in {line:?}"));
    assert!(beside > 0 && line.ends_with("tiles while the jobs ran)"), "{line}");
    println!("build --overviews: {line}");
    let pyramid = |c: &Path| files(&c.join("pyramid"));
    assert!(pyramid(&with) == pyramid(&cube), "build --overviews wrote another pyramid");
}

#[test]
fn plain_v2_levels_and_their_georeferencing_read_by_gdal() {
    let dir = common::scratch_dir("pyramid-v2");
    let c = dir.join("cube.zarr").display().to_string();
    eocube_ok(&build_args(&c, &["--zarr-format", "2"]));
    eocube_ok(&strs(&["overviews", &c]));
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("cube.zarr/.zmetadata")).unwrap()).unwrap();
    assert!(m["metadata"]["pyramid/1/red/.zarray"].is_object(), "root .zmetadata lists the levels");
    assert!(dir.join("cube.zarr/pyramid/1/red/0.0.1").is_file());
    assert!(dir.join("cube.zarr/pyramid/1/.zmetadata").is_file(), "each level has its own listing");
    // GDAL 3.10 (the rasterio wheel) has no Zarr v3 `bytes` codec, so v2 is its reader here.
    check_with_python(&c, json!({"gdal": true}));
}

#[test]
fn an_unfinished_cube_is_refused_and_nothing_is_written() {
    let dir = common::scratch_dir("pyramid-unfinished");
    let cube = dir.join("cube.zarr");
    let c = cube.display().to_string();
    eocube_ok(&build_args(&c, &[]));
    // What a build that has not published looks like: no consolidated metadata.
    let mut root: Value = serde_json::from_slice(&std::fs::read(cube.join("zarr.json")).unwrap()).unwrap();
    root.as_object_mut().unwrap().remove("consolidated_metadata");
    std::fs::write(cube.join("zarr.json"), serde_json::to_vec_pretty(&root).unwrap()).unwrap();
    let args = strs(&["overviews", &c]);
    let out = common::run_eocube(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unfinished cube was accepted");
    assert!(stderr.contains("not finished") && stderr.contains("finish the build first"), "{stderr}");
    assert!(!cube.join("pyramid").exists(), "something was written");

    let missing = dir.join("nothing.zarr").display().to_string();
    let out = common::run_eocube(&strs(&["overviews", &missing]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cube at"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = common::run_eocube(&strs(&["overviews", &c, "--jobs", "0"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--jobs 0"));
}

/// `eocube log --json` of main.
fn log(repo: &str) -> Vec<Value> {
    let stdout = eocube_ok(&strs(&["log", repo, "--json"]));
    serde_json::from_str::<Value>(&stdout).expect("log JSON").as_array().cloned().expect("a list of versions")
}

#[test]
fn icechunk_build_with_overviews_publishes_the_levels_in_the_build_commit() {
    let dir = common::scratch_dir("pyramid-icechunk-build");
    let repo = dir.join("repo");
    let loc = format!("icechunk://{}", repo.display());
    let out = eocube_ok(&build_args(&loc, &["--overviews"]));
    assert!(summary_line(&out).starts_with("overviews: 3 levels"), "{out}");
    let versions = log(&loc);
    assert_eq!(versions.len(), 2, "the build and the initial snapshot: {versions:?}");
    assert!(versions[0]["message"].as_str().unwrap().starts_with("eocube build"), "{versions:?}");
    check_with_python(&repo.display().to_string(), json!({"icechunk": true, "same_commit": true}));
}

#[test]
fn overviews_on_an_icechunk_cube_adds_one_commit() {
    let dir = common::scratch_dir("pyramid-icechunk-update");
    let repo = dir.join("repo");
    let loc = format!("icechunk://{}", repo.display());
    eocube_ok(&build_args(&loc, &[]));
    let before = log(&loc);
    let out = eocube_ok(&strs(&["overviews", &loc]));
    assert!(out.contains("committed to main"), "{out}");
    let after = log(&loc);
    assert_eq!(after.len(), before.len() + 1, "one new version: {after:?}");
    assert_eq!(after[1]["snapshot"], before[0]["snapshot"], "on top of the cube's version");
    assert!(after[0]["message"].as_str().unwrap().starts_with("eocube overviews: 3 levels"), "{after:?}");
    assert_eq!(after[0]["properties"]["kind"], "overviews");
    check_with_python(&repo.display().to_string(), json!({"icechunk": true}));
}

/// The read side (`store::view`, the lead's) against what the builder wrote: the levels it finds
/// are the builder's grids, and level L read through it is the valid mean of level L-1 read
/// through it.
#[tokio::test]
async fn store_view_reads_the_levels_as_written() {
    use eocube::PixelWindow;
    use eocube::store::view::{ChunkCache, CubeView, VersionRef};
    let dir = common::scratch_dir("pyramid-view");
    let c = dir.join("cube.zarr").display().to_string();
    eocube_ok(&build_args(&c, &[]));
    eocube_ok(&strs(&["overviews", &c, "--quiet"]));
    let loc = eocube::store::OutLocation::parse(&c).expect("location");
    let view = CubeView::open(&loc, &VersionRef::Default, ChunkCache::new(64 << 20)).await.expect("open");
    assert!(view.has_pyramid());
    let want = eocube::pyramid::level_geoboxes(&view.layout().geobox);
    let got: Vec<_> = view.levels().into_iter().map(|l| (l.geobox, l.tile)).collect();
    assert_eq!(got, want.iter().map(|g| (g.clone(), 512)).collect::<Vec<_>>());
    let full = |g: &eocube::GeoBox| PixelWindow { row: 0, col: 0, height: g.shape.ny, width: g.shape.nx };
    for l in 1..want.len() {
        for (t, band) in [(0, 0), (2, 2)] {
            let below = view.read(l - 1, t, band, full(&want[l - 1])).await.expect("read");
            let here = view.read(l, t, band, full(&want[l])).await.expect("read");
            let (ny, nx) = (want[l - 1].shape.ny, want[l - 1].shape.nx);
            assert!(here == eocube::pyramid::downsample(&below, ny, nx), "level {l}, t {t}, band {band}");
        }
    }
}
