//! Cubes in Icechunk repositories (issue 4, item 2; `src/store/icechunk.rs`): `eocube build --out
//! icechunk:///dir` from the e2e archive (`--items`, no STAC server), read back with
//! icechunk-python + xarray and compared with the same cube on local disk; SIGKILL midway leaves
//! the target branch exactly as it was, a rerun completes with the same values, `eocube abort`
//! removes the build branch, `eocube log` lists the versions; the same build on
//! `icechunk+s3://` against the test moto.
//!
//! Needs the environment of `scripts/test.sh` (fixtures with the e2e archive, the venv with
//! icechunk-python, moto): without it the tests fail, they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const FLAGS: [&str; 6] = ["--resampling", "nearest", "--chunk-size", "64", "--workers", "2"];

fn args(out: &str, extra: &[&str]) -> Vec<String> {
    let items = common::e2e_dir().join("items-local.json");
    let mut extra: Vec<&str> = extra.to_vec();
    extra.push("--quiet");
    common::e2e_items_build_args(Path::new(out), &items, &extra)
}

fn eocube(args: &[String]) -> Command {
    let s3 = common::s3();
    let mut c = Command::new(env!("CARGO_BIN_EXE_eocube"));
    c.args(args).env("AWS_ENDPOINT_URL", &s3.endpoint);
    c
}

fn run(args: &[String]) -> std::process::Output {
    let t0 = Instant::now();
    let out = eocube(args).output().expect("running eocube");
    println!("eocube {} -> {} in {:.1} s", args.join(" "), out.status, t0.elapsed().as_secs_f64());
    out
}

fn run_ok(args: &[String]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "eocube {} failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `eocube log OUT --json`: the versions of `main`, newest first.
fn log(out: &str) -> Vec<Value> {
    let stdout = run_ok(&strs(&["log", out, "--json"]));
    serde_json::from_str::<Value>(&stdout).expect("log --json").as_array().cloned().expect("an array")
}

fn status(out: &str) -> Value {
    let o = eocube(&strs(&["status", out, "--json"])).output().expect("running eocube status");
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

/// icechunk-python: open the repository, list branches and tags, read `main` with xarray and
/// compare it with the local cube (when given). Returns the script's JSON summary.
fn python_check(repo: &str, local: Option<&Path>) -> Value {
    let s3 = common::s3();
    let script = r#"
import sys, json
import numpy as np, xarray as xr, zarr, rioxarray  # noqa: F401
import icechunk
repo_url, local, endpoint, key, secret = sys.argv[1:6]
if repo_url.startswith("icechunk+s3://"):
    bucket, prefix = repo_url[len("icechunk+s3://"):].split("/", 1)
    storage = icechunk.s3_storage(bucket=bucket, prefix=prefix, endpoint_url=endpoint, allow_http=True,
                                  force_path_style=True, region="us-east-1", access_key_id=key,
                                  secret_access_key=secret)
else:
    storage = icechunk.local_filesystem_storage(repo_url[len("icechunk://"):])
repo = icechunk.Repository.open(storage)
out = {"branches": sorted(repo.list_branches()), "tags": sorted(repo.list_tags())}
session = repo.readonly_session(branch="main")
try:
    zarr.open_group(session.store, mode="r")
    has_group = True
except Exception:
    has_group = False
out["has_cube"] = has_group
if has_group and local != "-":
    a = xr.open_zarr(local)
    b = xr.open_zarr(session.store, consolidated=False)
    assert dict(a.sizes) == dict(b.sizes), (a.sizes, b.sizes)
    for name in ["time", "latitude", "longitude", "band"]:
        assert np.array_equal(a[name].values, b[name].values), name
    assert a.attrs["spec"] == b.attrs["spec"]
    assert a["spatial_ref"].attrs["crs_wkt"] == b["spatial_ref"].attrs["crs_wkt"]
    ra = xr.open_zarr(local, mask_and_scale=False)["rgb_median"].values
    rb = xr.open_zarr(session.store, consolidated=False, mask_and_scale=False)["rgb_median"].values
    assert ra.dtype == rb.dtype == np.uint16 and np.array_equal(ra, rb)
    assert (ra > 0).sum() > 0
    xr.testing.assert_equal(a, b)
    assert a.rio.crs == b.rio.crs and b.rio.crs.to_epsg() == 4326, (a.rio.crs, b.rio.crs)
    out["valid"] = int((rb > 0).sum())
    out["checked"] = True
print(json.dumps(out))
"#;
    let o = Command::new(common::python())
        .args(["-c", script, repo, &local.map_or("-".to_string(), |p| p.display().to_string()), &s3.endpoint])
        .args([&s3.access_key, &s3.secret_key])
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "icechunk-python read-back of {repo} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).expect("python JSON");
    println!("python: {v}");
    v
}

fn build_branches(v: &Value) -> Vec<String> {
    v["branches"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).filter(|b| b.starts_with("eocube.")).map(String::from).collect())
        .unwrap_or_default()
}

fn local_cube(dir: &Path) -> PathBuf {
    let local = dir.join("cube.zarr");
    run_ok(&args(&local.display().to_string(), &FLAGS));
    local
}

/// Start a build of the repository at `dir` (committing after every job), wait until its
/// `snapshots/` holds 4 snapshots (initial, template, 2 checkpoints), SIGKILL it.
fn build_and_kill(dir: &Path) -> usize {
    let out = format!("icechunk://{}", dir.display());
    let a = args(&out, &["--resampling", "nearest", "--chunk-size", "64", "--workers", "1", "--commit-every", "1"]);
    let mut child = eocube(&a).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawning eocube build");
    let snapshots = || std::fs::read_dir(dir.join("snapshots")).map(|d| d.count()).unwrap_or(0);
    common::kill_when(
        &mut child,
        4,
        Duration::from_secs(180),
        Duration::from_millis(1),
        "2 checkpoints were committed",
        snapshots,
    )
}

#[test]
fn icechunk_build_reads_back_in_python_survives_sigkill_and_resumes() {
    let dir = common::scratch_dir("icechunk-e2e");
    let local = local_cube(&dir);

    // An uninterrupted build, tagged.
    let repo = format!("icechunk://{}", dir.join("repo").display());
    let t0 = Instant::now();
    run_ok(&args(&repo, &[&FLAGS[..], &["--tag", "v1"]].concat()));
    println!("icechunk build: {:.1} s", t0.elapsed().as_secs_f64());
    let v = python_check(&repo, Some(&local));
    assert_eq!(v["checked"], Value::Bool(true));
    assert!(build_branches(&v).is_empty(), "the build branch is deleted: {v}");
    assert_eq!(v["tags"], serde_json::json!(["v1"]));
    let versions = log(&repo);
    println!("log: {versions:?}");
    let msg = versions[0]["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("eocube build:"), "newest version: {msg}");
    assert!(versions.iter().any(|v| v["message"] == "Repository initialized"), "{versions:?}");
    let st = status(&repo);
    assert_eq!(st["complete"], Value::Bool(true), "{st}");
    assert_eq!(st["done"], st["jobs"], "{st}");

    // A rerun of the same build: nothing to do, no new version.
    run_ok(&args(&repo, &FLAGS));
    assert_eq!(log(&repo).len(), versions.len(), "a no-op rerun adds no version");
    // Refused before anything is written: an existing tag, another cube on main.
    let r = run(&args(&repo, &[&FLAGS[..], &["--tag", "v1"]].concat()));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.code() == Some(1) && err.contains("exists already"), "{err}");
    let r = run(&args(&repo, &["--chunk-size", "128"]));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.code() == Some(1) && err.contains("different chunk size"), "{err}");
    let v = python_check(&repo, Some(&local));
    assert!(build_branches(&v).is_empty(), "no build branch was created: {v}");
    assert_eq!(log(&repo).len(), versions.len(), "refusals add no version");

    // SIGKILL midway: main is untouched; the rerun completes with the same values.
    let killed = format!("icechunk://{}", dir.join("killed").display());
    let at_kill = build_and_kill(&dir.join("killed"));
    let before = log(&killed);
    assert_eq!(before.len(), 1, "main still holds only the initial snapshot: {before:?}");
    let v = python_check(&killed, None);
    assert_eq!(v["has_cube"], Value::Bool(false), "main shows the previous (empty) version: {v}");
    assert_eq!(build_branches(&v).len(), 1, "the build branch is kept for the resume: {v}");
    let st = status(&killed);
    assert_eq!(st["complete"], Value::Bool(false), "{st}");
    println!("killed at {at_kill} snapshots; {} of {} jobs committed at exit", st["done"], st["jobs"]);
    assert!(st["done"].as_u64() < st["jobs"].as_u64(), "every job was done before the kill: {st}");
    let t0 = Instant::now();
    run_ok(&args(&killed, &FLAGS));
    println!("resume: {:.1} s", t0.elapsed().as_secs_f64());
    let v = python_check(&killed, Some(&local));
    assert_eq!(v["checked"], Value::Bool(true));
    assert!(build_branches(&v).is_empty(), "{v}");
    let after = log(&killed);
    assert_eq!(after.last(), before.last(), "the history of main starts where it was");
    assert!(after[0]["message"].as_str().unwrap_or_default().starts_with("eocube build:"));

    // abort: kill another build, abort it, main unchanged and no build branch left.
    let aborted = format!("icechunk://{}", dir.join("aborted").display());
    build_and_kill(&dir.join("aborted"));
    let before = log(&aborted);
    let out = run_ok(&strs(&["abort", &aborted]));
    assert!(out.contains("deleted build branch eocube."), "{out}");
    let v = python_check(&aborted, None);
    assert!(build_branches(&v).is_empty(), "{v}");
    assert_eq!(log(&aborted), before);
    let out = run_ok(&strs(&["abort", &aborted]));
    assert!(out.contains("no unfinished build"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A build whose target branch moved meanwhile (another build finished on it) is refused at its
/// final step: the other version stays on `main`, never a mixed cube.
#[test]
fn a_build_whose_branch_moved_is_refused_and_main_keeps_the_other_version() {
    let dir = common::scratch_dir("icechunk-moved");
    let repo = format!("icechunk://{}", dir.join("repo").display());
    build_and_kill(&dir.join("repo"));
    // Another cube (other chunk size, so another spec and build branch) completes on main.
    run_ok(&args(&repo, &["--resampling", "nearest", "--chunk-size", "128", "--workers", "2"]));
    let other = log(&repo);
    assert!(other[0]["message"].as_str().unwrap_or_default().starts_with("eocube build:"), "{other:?}");
    // The killed build resumes, finishes its jobs, and is refused at the branch update.
    let r = run(&args(&repo, &FLAGS));
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("changed while the cube was being built") && err.contains("eocube abort"), "{err}");
    assert_eq!(log(&repo), other, "main keeps the other build's version");
    let out = run_ok(&strs(&["abort", &repo]));
    assert!(out.contains("deleted build branch eocube."), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn icechunk_refusals() {
    let dir = common::scratch_dir("icechunk-refusals");
    let repo = format!("icechunk://{}", dir.join("repo").display());
    // Zarr v2 cannot go into Icechunk; nothing is created.
    let r = run(&args(&repo, &[&FLAGS[..], &["--zarr-format", "2"]].concat()));
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("Zarr v3 only") && err.contains(&repo), "{err}");
    // log / abort of a repository that does not exist; abort of a plain path.
    for cmd in [strs(&["log", &repo]), strs(&["abort", &repo]), strs(&["abort", &dir.display().to_string()])] {
        let r = run(&cmd);
        assert_eq!(r.status.code(), Some(1), "{cmd:?}");
    }
    assert!(!dir.join("repo").exists(), "nothing was created");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn icechunk_build_on_s3_matches_local() {
    let dir = common::scratch_dir("icechunk-s3");
    let local = local_cube(&dir);
    let s3 = common::s3();
    let bucket = format!("eocube-ic-{}", std::process::id());
    let out = Command::new("curl")
        .args(["-fsS", "-X", "PUT", "--max-time", "20", &format!("{}/{bucket}", s3.endpoint)])
        .output()
        .expect("running curl");
    assert!(out.status.success(), "creating bucket {bucket}: {}", String::from_utf8_lossy(&out.stderr));
    let repo = format!("icechunk+s3://{bucket}/repos/cube");
    let t0 = Instant::now();
    run_ok(&args(&repo, &FLAGS));
    println!("icechunk+s3 build: {:.1} s", t0.elapsed().as_secs_f64());
    let v = python_check(&repo, Some(&local));
    assert_eq!(v["checked"], Value::Bool(true));
    assert!(build_branches(&v).is_empty(), "{v}");
    assert!(log(&repo)[0]["message"].as_str().unwrap_or_default().starts_with("eocube build:"));
    let _ = std::fs::remove_dir_all(&dir);
}
