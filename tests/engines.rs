//! Executors and the worker (issues 9, 10): `eocube build --executor local|slurm|lambda` on the e2e archive,
//! `eocube worker` and `eocube collect`, against a real one-node Slurm cluster
//! (`scripts/slurm.sh start`: slurmctld, slurmd, munge), the test nginx and the test STAC API.
//!
//! - Executor conformance: the same suite over local and Slurm: the cube's chunk objects are
//!   byte-identical to a plain local build, one ledger record and one done report line per job;
//!   a permanent failure (a missing scene) fails its job once, unretried, and exits non-zero.
//! - Slurm: a real array of 18 tasks with `%2`; a task cancelled with `scancel` is resubmitted and
//!   the Icechunk cube still equals the local one, `main` untouched until the one commit.
//! - `--detach` + `eocube collect`; the worker run twice on one index (same bytes, one ledger
//!   record), its index from each engine's variable, its exit codes.
//!
//! Needs `EOCUBE_SLURM=1` (scripts/slurm.sh writes it into target/eocube-slurm/env): without it
//! the Slurm tests fail, they never skip.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const EXTRA: [&str; 4] = ["--resampling", "nearest", "--chunk-size", "128"];
/// 3 x 2 chunks x 3 months.
const JOBS: usize = 18;

fn eocube() -> &'static str {
    env!("CARGO_BIN_EXE_eocube")
}

fn require_slurm() {
    assert_eq!(
        std::env::var("EOCUBE_SLURM").as_deref(),
        Ok("1"),
        "no test Slurm cluster: run `bash scripts/slurm.sh start` and source target/eocube-slurm/env \
         (scripts/test.sh does)"
    );
}

/// Runs eocube in `dir` (Slurm's tasks start there too: `--chdir`).
fn run_in(dir: &Path, args: &[String], env: &[(&str, String)]) -> Output {
    let t0 = Instant::now();
    let out = Command::new(eocube())
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("running eocube: {e}"));
    println!("eocube {} -> {} in {:.1} s", args.join(" "), out.status, t0.elapsed().as_secs_f64());
    out
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ok(out: Output, what: &str) -> String {
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{what}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout
}

fn args(out: &str, extra: &[&str]) -> Vec<String> {
    let mut a = common::e2e_build_args(Path::new(out), &EXTRA);
    a.extend(extra.iter().map(|s| s.to_string()));
    a.push("--quiet".into());
    a
}

/// Chunk objects and metadata of a plain Zarr cube, `created` left out, `_eocube/` left out.
fn cube_objects(cube: &Path) -> BTreeMap<String, Vec<u8>> {
    common::files_under(cube)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("_eocube"))
        .map(|(k, v)| {
            if k == "zarr.json" {
                let mut j: Value = serde_json::from_slice(&v).expect("zarr.json");
                j["attributes"].as_object_mut().expect("attributes").remove("created");
                (k, serde_json::to_vec(&j).expect("json"))
            } else {
                (k, v)
            }
        })
        .collect()
}

/// The reference: the e2e cube built by the local executor, once per test binary.
fn reference() -> &'static (PathBuf, BTreeMap<String, Vec<u8>>) {
    static REF: OnceLock<(PathBuf, BTreeMap<String, Vec<u8>>)> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = common::scratch_dir("engines-reference");
        ok(run_in(&dir, &args("cube.zarr", &[]), &[]), "the reference build");
        let cube = dir.join("cube.zarr");
        let objects = cube_objects(&cube);
        assert!(objects.keys().filter(|k| k.contains("/c/")).count() >= JOBS, "{:?}", objects.keys());
        (cube, objects)
    })
}

fn assert_same_objects(got: &BTreeMap<String, Vec<u8>>, what: &str) {
    let want = &reference().1;
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}: other objects");
    for (k, v) in want {
        assert!(&got[k] == v, "{what}: {k} differs from the local build's");
    }
}

fn ledger_count(cube: &Path) -> usize {
    std::fs::read_dir(cube.join("_eocube/ledger")).map_or(0, |d| d.count())
}

fn runs(cube: &Path) -> Vec<String> {
    let mut r: Vec<String> = std::fs::read_dir(cube.join("_eocube/runs"))
        .expect("the cube has runs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    r.sort();
    r
}

fn done_lines(cube: &Path) -> usize {
    common::report_lines(cube).iter().filter(|l| l["outcome"] == "done").count()
}

/// The engine flags of each executor under test.
fn engine_flags(executor: &str) -> Vec<&'static str> {
    match executor {
        "local" => vec!["--executor", "local", "--workers", "2"],
        "slurm" => vec!["--executor", "slurm", "--max-parallel", "2"],
        "lambda" => vec!["--executor", "lambda", "--function", "eocube", "--max-parallel", "3"],
        other => panic!("no executor {other}"),
    }
}

/// The environment the build of each executor under test needs.
fn engine_env(executor: &str) -> Vec<(&'static str, String)> {
    match executor {
        "lambda" => conformance_lambda().env(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// A local Lambda (tests/py/lambda_env.py): cargo-lambda's emulator of the Lambda APIs, instances
// of this eocube binary as function `eocube` under its Runtime API, a counting proxy in front.

struct LambdaEnv {
    invoke: String,
    /// Its stdin: closing it (dropping this, or this process ending) stops the whole stand-in.
    _process: std::process::Child,
}

impl LambdaEnv {
    fn start(name: &str, instances: usize, extra: &[&str]) -> LambdaEnv {
        let dir = common::scratch_dir(&format!("engines-lambda-env-{name}"));
        let state = dir.join("state.json");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/lambda_env.py");
        let process = Command::new(common::python())
            .arg(&script)
            .args([eocube().to_string(), instances.to_string(), state.display().to_string()])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        wait_for("the local Lambda", Duration::from_secs(90), || state.exists());
        let v: Value = serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("state json");
        LambdaEnv { invoke: v["invoke"].as_str().expect("invoke url").to_string(), _process: process }
    }

    /// What `eocube build --executor lambda` is given: the endpoint and placeholder credentials
    /// (the emulator checks none).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_LAMBDA", self.invoke.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "eocube-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "eocube-test".into()),
        ]
    }

    /// The proxy's counts (GET /stats).
    fn stats(&self) -> Value {
        use std::io::{Read, Write};
        let addr = self.invoke.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("the proxy");
        write!(s, "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("answer");
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("stats {body:?}: {e}"))
    }
}

/// The Lambda every conformance check of this binary shares.
fn conformance_lambda() -> &'static LambdaEnv {
    static ENV: OnceLock<LambdaEnv> = OnceLock::new();
    ENV.get_or_init(|| LambdaEnv::start("conformance", 4, &[]))
}

// ---------------------------------------------------------------------------------------------
// Executor conformance: one suite, every executor.

fn conformance_builds_the_reference_cube(executor: &str) {
    let dir = common::scratch_dir(&format!("engines-{executor}-cube"));
    // Absolute: the tasks of some engines (Lambda) run elsewhere than this directory.
    let out = dir.join("cube.zarr").display().to_string();
    let stdout = ok(run_in(&dir, &args(&out, &engine_flags(executor)), &engine_env(executor)), executor);
    assert!(stdout.contains(&format!("{JOBS} jobs: {JOBS} done now, 0 done before, 0 failed")), "{stdout}");
    let cube = dir.join("cube.zarr");
    assert_same_objects(&cube_objects(&cube), executor);
    assert_eq!(ledger_count(&cube), JOBS, "{executor}: one ledger record per job");
    assert_eq!(done_lines(&cube), JOBS, "{executor}: one done report line per job");
    let run = runs(&cube).pop().expect("a run");
    let record: Value = serde_json::from_slice(
        &std::fs::read(cube.join("_eocube/runs").join(&run).join("run.json")).expect("run.json"),
    )
    .expect("run.json parses");
    assert_eq!(record["executor"], executor);
    assert_eq!(record["tasks"], JOBS);
    if executor == "slurm" {
        // A real array of 18 tasks, two at a time, each of which wrote its result.
        let slurm_dir = dir.join("eocube-slurm").join(&run);
        let script = std::fs::read_to_string(slurm_dir.join("submit-1.sbatch")).expect("the sbatch script");
        assert!(script.contains("#SBATCH --array=0-17%2\n"), "{script}");
        let logs = std::fs::read_dir(&slurm_dir)
            .expect("logs")
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log")));
        assert_eq!(logs.count(), JOBS, "one log per task in {}", slurm_dir.display());
        let results = std::fs::read_dir(cube.join("_eocube/runs").join(&run).join("results")).expect("results");
        assert_eq!(results.count(), JOBS);
    }
}

/// The e2e items with one scene's red band pointing at a file that does not exist.
fn items_with_a_missing_scene(dir: &Path) -> (PathBuf, String) {
    let src = common::e2e_dir().join("items-local.json");
    let mut items: Value = serde_json::from_slice(&std::fs::read(&src).expect("items-local.json")).expect("json");
    // A scene inside the dates (some of the archive's are outside them, on purpose).
    let start = common::e2e_manifest()["start"].as_str().expect("start").to_string();
    let first = items["features"]
        .as_array_mut()
        .expect("features")
        .iter_mut()
        .find(|f| f["properties"]["datetime"].as_str().is_some_and(|d| d[..10] > *start.as_str()))
        .expect("a scene after the start");
    let id = first["id"].as_str().expect("id").to_string();
    first["assets"]["red"]["href"] = Value::from(dir.join("missing/red.tif").display().to_string());
    let path = dir.join("items.json");
    std::fs::write(&path, serde_json::to_vec(&items).expect("json")).expect("writing items");
    (path, id)
}

fn conformance_fails_a_missing_scene_once(executor: &str) {
    let dir = common::scratch_dir(&format!("engines-{executor}-missing"));
    let (items, id) = items_with_a_missing_scene(&dir);
    let mut a = common::e2e_items_build_args(&dir.join("cube.zarr"), &items, &EXTRA);
    a.extend(engine_flags(executor).iter().map(|s| s.to_string()));
    a.push("--quiet".into());
    let out = run_in(&dir, &a, &engine_env(executor));
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{executor}: a missing scene must fail its jobs\n{stdout}\n{stderr}");
    assert!(stderr.contains("missing/red.tif"), "{executor}: the failure names the file:\n{stderr}");
    let lines = common::report_lines(&dir.join("cube.zarr"));
    let failed: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "failed").collect();
    assert!(!failed.is_empty(), "{executor}: failures are in the report");
    // Permanent: each failed job is in the report once (no retry), and every other job is done.
    let mut seen = std::collections::BTreeSet::new();
    for f in &failed {
        let job = (f["job"]["t"].clone().to_string(), f["job"]["iy"].to_string(), f["job"]["ix"].to_string());
        assert!(seen.insert(job.clone()), "{executor}: job {job:?} was tried twice:\n{failed:?}");
    }
    assert_eq!(failed.len() + done_lines(&dir.join("cube.zarr")), JOBS, "{executor}: {id}");
}

#[test]
fn local_executor_conformance() {
    conformance_builds_the_reference_cube("local");
    conformance_fails_a_missing_scene_once("local");
}

/// Lambda: the same suite through `--executor lambda`; at most `--max-parallel` (3) invocations
/// were ever in flight at the function's side, and more than one.
#[test]
fn lambda_executor_conformance() {
    conformance_builds_the_reference_cube("lambda");
    conformance_fails_a_missing_scene_once("lambda");
    let stats = conformance_lambda().stats();
    println!("lambda conformance: {stats}");
    let max = stats["max_in_flight"].as_u64().expect("max_in_flight");
    assert!((2..=3).contains(&max), "invocations in flight at most {max}, want 2..=3: {stats}");
    // The missing scene's tasks failed for good: each invoked once.
    assert_eq!(stats["invocations"].as_u64(), Some(2 * JOBS as u64), "one invocation per task: {stats}");
}

/// Lambda into Icechunk: equal values, `main` moved by the build's one commit; and through a
/// Lambda that throttles (429) some invocations and reports a crash for others: the build still
/// completes with the same cube, throttled invocations waited for, crashed ones retried.
#[test]
fn lambda_builds_icechunk_and_rides_out_throttling_and_function_errors() {
    let _ = reference();
    let dir = common::scratch_dir("engines-lambda-icechunk");
    let lambda = LambdaEnv::start("faults", 3, &["--throttle-every", "4", "--throttle", "5", "--function-errors", "2"]);
    let repo = format!("icechunk://{}", dir.join("repo").display());
    let stdout = ok(run_in(&dir, &args(&repo, &engine_flags("lambda")), &lambda.env()), "lambda into icechunk");
    assert!(stdout.contains(&format!("{JOBS} jobs: {JOBS} done now")), "{stdout}");
    assert!(
        stdout.contains("lambda: ") && stdout.contains("invocations in") && stdout.contains("5 throttled"),
        "{stdout}"
    );
    let stats = lambda.stats();
    println!("lambda with faults: {stats}");
    assert_eq!(stats["throttled"], 5, "{stats}");
    assert_eq!(stats["function_errors"], 2, "{stats}");
    // Every task reached the function once, plus one retry for each reported crash.
    assert_eq!(stats["invocations"].as_u64(), Some(JOBS as u64 + 5 + 2), "{stats}");
    assert!(stats["max_in_flight"].as_u64().is_some_and(|m| m <= 3), "{stats}");
    assert!(!stdout.contains(" 0 retries"), "the crashed invocations were retried: {stdout}");
    let log = icechunk_log(&repo, &dir);
    assert_eq!(log.lines().count(), 2, "one build commit on main:\n{log}");
    assert_icechunk_equals_reference(&dir.join("repo"));
    // The run report of a published Icechunk cube: every task, the two crashes as retries.
    let page = dir.join("report.html");
    let said = ok(run_in(&dir, &["report".into(), repo, "-o".into(), page.display().to_string()], &[]), "report");
    assert!(said.contains(&format!("{JOBS} tasks, {JOBS} jobs (0 failed, 2 retries)")), "{said}");
    let html = std::fs::read_to_string(&page).expect("the page");
    assert_eq!(html.matches("class=\"task\"").count(), JOBS, "one mark per task");
    assert!(html.contains("injected: the function crashed"), "the retried errors are listed");
}

#[test]
fn slurm_executor_conformance() {
    require_slurm();
    conformance_builds_the_reference_cube("slurm");
    conformance_fails_a_missing_scene_once("slurm");
}

// ---------------------------------------------------------------------------------------------
// Slurm specifics.

/// Waits until `cond` holds, at most `limit`.
fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn icechunk_log(repo: &str, dir: &Path) -> String {
    ok(run_in(dir, &["log".into(), repo.into()], &[]), "eocube log")
}

/// The e2e cube of an Icechunk repository's `main` equals the reference, value for value.
fn assert_icechunk_equals_reference(repo_dir: &Path) {
    let script = r#"
import sys, icechunk, numpy as np, xarray as xr
repo = icechunk.Repository.open(icechunk.local_filesystem_storage(sys.argv[1]))
a = xr.open_zarr(sys.argv[2], mask_and_scale=False)
b = xr.open_zarr(repo.readonly_session("main").store, consolidated=False, mask_and_scale=False)
va, vb = a["rgb_median"].values, b["rgb_median"].values
assert va.shape == vb.shape, (va.shape, vb.shape)
assert np.array_equal(va, vb), int((va != vb).sum())
for c in ("time", "latitude", "longitude", "band"):
    assert np.array_equal(a[c].values, b[c].values), c
print("equal", va.shape)
"#;
    let repo = repo_dir.display().to_string();
    let reference = reference().0.display().to_string();
    let out = common::run_python(script, &[&repo, &reference], "comparing the Icechunk cube with the local one");
    assert!(out.contains("equal"), "{out}");
}

/// A task cancelled by `scancel` while it runs is resubmitted; the Icechunk cube equals the local
/// one and `main` shows nothing until the build's one commit.
#[test]
fn slurm_resubmits_a_cancelled_task_into_icechunk() {
    require_slurm();
    let _ = reference();
    let dir = common::scratch_dir("engines-slurm-cancel");
    // Task 3's first attempt waits (it marks that it started); every other attempt runs at once.
    let wrapper = dir.join("eocube-wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$SLURM_ARRAY_TASK_ID\" = 3 ] && [ ! -e {dir}/started-3 ]; then touch {dir}/started-3; sleep 120; fi\nexec {bin} \"$@\"\n",
            dir = dir.display(),
            bin = eocube()
        ),
    )
    .expect("writing the wrapper");
    Command::new("chmod").args(["+x"]).arg(&wrapper).status().expect("chmod");
    let repo = format!("icechunk://{}", dir.join("repo").display());
    let slurm_dir = dir.join("slurm");
    let a = args(
        &repo,
        &[
            "--executor",
            "slurm",
            "--max-parallel",
            "2",
            "--worker-bin",
            &wrapper.display().to_string(),
            "--slurm-dir",
            &slurm_dir.display().to_string(),
        ],
    );
    let child = Command::new(eocube())
        .args(&a)
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the build");
    wait_for("task 3 to start", Duration::from_secs(120), || dir.join("started-3").exists());
    // Mid-build: main holds only the repository's first commit.
    let log = icechunk_log(&repo, &dir);
    assert_eq!(log.lines().count(), 1, "main moved before the build ended:\n{log}");
    let log_name = std::fs::read_dir(&slurm_dir)
        .expect("the Slurm folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .find(|n| n.ends_with("_3.log"))
        .expect("task 3's log");
    let task = log_name.trim_end_matches(".log").to_string();
    let st = Command::new("scancel").arg(&task).status().expect("scancel");
    assert!(st.success(), "scancel {task}");
    let out = child.wait_with_output().expect("the build");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(&format!("{JOBS} jobs: {JOBS} done now")), "{stdout}");
    assert!(!stdout.contains(" 0 retries"), "the cancelled task was retried: {stdout}");
    // The resubmission: a second script, holding task 3 only.
    let second = std::fs::read_to_string(slurm_dir.join("submit-2.sbatch")).expect("a resubmission");
    assert!(second.contains("#SBATCH --array=3%2\n"), "{second}");
    let log = icechunk_log(&repo, &dir);
    assert_eq!(log.lines().count(), 2, "one build commit on main:\n{log}");
    assert!(log.lines().next().is_some_and(|l| l.contains("eocube build")), "{log}");
    assert_icechunk_equals_reference(&dir.join("repo"));
}

/// `--detach` submits and returns; the worker can be run by hand (same bytes, one ledger record
/// after collect, index from each engine's variable); `collect` names what is missing, then
/// finishes the cube once the rest has run.
#[test]
fn detach_worker_and_collect() {
    require_slurm();
    let _ = reference();
    let dir = common::scratch_dir("engines-detach");
    // Held: nothing runs until released, so the test runs tasks by hand first.
    let out = run_in(
        &dir,
        &args("cube.zarr", &["--executor", "slurm", "--detach", "--sbatch-arg=--hold", "--max-parallel", "2"]),
        &[],
    );
    let stdout = ok(out, "build --detach");
    assert!(stdout.contains("eocube collect cube.zarr --run "), "{stdout}");
    let cube = dir.join("cube.zarr");
    let run = runs(&cube).pop().expect("a run");
    let job_id = stdout
        .split("as Slurm job(s) ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("the job id")
        .trim()
        .to_string();
    let worker = |index: Option<&str>, env: &[(&str, String)]| {
        let mut a: Vec<String> = vec!["worker".into(), "cube.zarr".into(), "--run".into(), run.clone()];
        if let Some(i) = index {
            a.extend(["--index".into(), i.into()]);
        }
        run_in(&dir, &a, env)
    };
    // Task 0 twice: the same chunk bytes.
    ok(worker(Some("0"), &[]), "worker --index 0");
    let first = cube_objects(&cube);
    ok(worker(None, &[("SLURM_ARRAY_TASK_ID", "0".into())]), "worker, SLURM_ARRAY_TASK_ID=0");
    assert_eq!(cube_objects(&cube), first, "the second run of task 0 wrote other bytes");
    assert_eq!(ledger_count(&cube), 0, "workers never write the ledger (collect does)");
    // The index from each engine's variable (and the offset).
    for (var, value, offset, index) in [
        ("EOCUBE_TASK_INDEX", "1", None, 1),
        ("AWS_BATCH_JOB_ARRAY_INDEX", "2", None, 2),
        ("JOB_COMPLETION_INDEX", "0", Some("3"), 3),
    ] {
        let mut a: Vec<String> = vec!["worker".into(), "cube.zarr".into(), "--run".into(), run.clone()];
        if let Some(o) = offset {
            a.extend(["--index-offset".into(), o.into()]);
        }
        ok(run_in(&dir, &a, &[(var, value.into())]), var);
        let result = cube.join(format!("_eocube/runs/{run}/results/{index}.json"));
        assert!(result.is_file(), "{var}={value}: no {}", result.display());
    }
    // Exit codes: a run that does not exist, an index past the run: permanent.
    for bad in [
        vec!["worker", "cube.zarr", "--run", "no-such-run", "--index", "0"],
        vec!["worker", "cube.zarr", "--run", run.as_str(), "--index", "999"],
        vec!["worker", "cube.zarr", "--run", run.as_str()],
    ] {
        let a: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        let out = run_in(&dir, &a, &[]);
        assert_eq!(out.status.code(), Some(65), "{bad:?}: {}", text(&out).1);
    }
    // collect: four tasks done, the rest missing with the command that reruns them.
    let out = run_in(&dir, &["collect".into(), "cube.zarr".into()], &[]);
    let (so, se) = text(&out);
    assert!(!out.status.success(), "collect of an unfinished run must not succeed:\n{so}\n{se}");
    let all = format!("{so}{se}");
    assert!(all.contains("4-17"), "collect names the missing tasks 4-17:\n{all}");
    assert_eq!(ledger_count(&cube), 4, "collect records each done job once");
    // Release the held array; once it is done, collect finishes the cube.
    let st = Command::new("scontrol").args(["release", &job_id]).status().expect("scontrol release");
    assert!(st.success());
    wait_for("the array to finish", Duration::from_secs(300), || {
        let out = Command::new("squeue").args(["-h", "-j", &job_id]).output().expect("squeue");
        out.status.success() && out.stdout.is_empty()
    });
    let stdout = ok(run_in(&dir, &["collect".into(), "cube.zarr".into()], &[]), "collect after the array");
    assert!(stdout.contains("complete"), "{stdout}");
    assert_eq!(ledger_count(&cube), JOBS);
    assert_same_objects(&cube_objects(&cube), "detached Slurm build");
    let status = ok(run_in(&dir, &["status".into(), "cube.zarr".into()], &[]), "status");
    assert!(status.contains(&run), "status lists the run:\n{status}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes and AWS Batch: no cluster can run here (docs/engines.md). `--emit` writes what would
// be submitted; this test then plays the engine: it runs each emitted task's command with the
// engine's own index variable, as a pod or an array child would, and collects.

/// Every (command, index variable, value) an engine would run for `doc`, the emitted document.
fn emitted_tasks(executor: &str, doc: &Value) -> Vec<(Vec<String>, &'static str, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().expect("an array").iter().map(|s| s.as_str().expect("a string").to_string()).collect()
    };
    let mut tasks = Vec::new();
    match executor {
        "kubernetes" => {
            assert_eq!(doc["kind"], "List", "{doc}");
            for job in doc["items"].as_array().expect("items") {
                assert_eq!(job["spec"]["completionMode"], "Indexed");
                let container = &job["spec"]["template"]["spec"]["containers"][0];
                let command = strings(&container["command"]);
                for i in 0..job["spec"]["completions"].as_u64().expect("completions") {
                    tasks.push((command.clone(), "JOB_COMPLETION_INDEX", i.to_string()));
                }
            }
        }
        "batch" => {
            for request in doc.as_array().expect("requests") {
                let command = strings(&request["containerOverrides"]["command"]);
                match request["arrayProperties"]["size"].as_u64() {
                    Some(n) => {
                        for i in 0..n {
                            tasks.push((command.clone(), "AWS_BATCH_JOB_ARRAY_INDEX", i.to_string()));
                        }
                    }
                    None => tasks.push((command, "EOCUBE_UNUSED", String::new())),
                }
            }
        }
        other => panic!("{other}"),
    }
    tasks
}

fn emit_then_play_the_engine(executor: &str, flags: &[&str]) {
    let _ = reference();
    let dir = common::scratch_dir(&format!("engines-emit-{executor}"));
    // An absolute path: the tasks run in containers that mount it.
    let cube = dir.join("cube.zarr");
    let emitted = dir.join("emitted.json");
    let mut extra = vec!["--executor", executor, "--emit", emitted.to_str().expect("utf-8")];
    extra.extend(flags);
    let stdout = ok(run_in(&dir, &args(cube.to_str().expect("utf-8"), &extra), &[]), executor);
    assert!(stdout.contains("nothing was submitted") && stdout.contains("eocube collect"), "{stdout}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&emitted).expect("the emitted file")).expect("JSON");
    let tasks = emitted_tasks(executor, &doc);
    assert_eq!(tasks.len(), JOBS, "{executor}: one task per job");
    assert_eq!(ledger_count(&cube), 0, "nothing ran yet");
    for (command, var, value) in &tasks {
        assert_eq!(command[0], "eocube", "{command:?}");
        assert_eq!(command[1], "worker", "{command:?}");
        let out =
            Command::new(eocube()).args(&command[1..]).current_dir(&dir).env(var, value).output().expect("worker");
        assert!(out.status.success(), "{command:?} {var}={value}: {}", String::from_utf8_lossy(&out.stderr));
    }
    ok(run_in(&dir, &["collect".into(), cube.display().to_string()], &[]), "collect");
    assert_eq!(ledger_count(&cube), JOBS);
    assert_same_objects(&cube_objects(&cube), executor);
}

#[test]
fn kubernetes_manifests_run_as_pods_would() {
    emit_then_play_the_engine("kubernetes", &["--image", "ghcr.io/eocube/eocube:test", "--max-parallel", "4"]);
}

#[test]
fn batch_requests_run_as_array_children_would() {
    emit_then_play_the_engine("batch", &["--job-queue", "eocube", "--job-definition", "eocube-worker"]);
}

#[test]
fn engine_flags_are_checked() {
    let dir = common::scratch_dir("engines-flags");
    for (extra, words) in [
        (vec!["--partition", "debug"], "--partition is for --executor slurm, not local"),
        (vec!["--executor", "slurm", "--image", "x"], "--image is for --executor kubernetes, not slurm"),
        (vec!["--executor", "kubernetes"], "needs --image"),
        (vec!["--executor", "batch", "--job-queue", "q"], "needs --job-definition"),
        (vec!["--detach"], "--detach is for --executor slurm|kubernetes|batch"),
        (vec!["--executor", "kubernetes", "--image", "x", "--emit", "k.json"], "--out cube.zarr: a relative path"),
        (vec!["--function", "eocube"], "--function is for --executor lambda, not local"),
        (vec!["--executor", "lambda"], "needs --function"),
        (vec!["--executor", "lambda", "--function", "f"], "--out cube.zarr: a relative path"),
    ] {
        let out = run_in(&dir, &args("cube.zarr", &extra), &[]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(words), "{extra:?}: {stderr:?} should say {words:?}");
        assert!(!dir.join("cube.zarr").exists(), "{extra:?} wrote the cube");
    }
}

/// `--jobs-per-task 3` gives each task every bin of one chunk: 6 tasks, one catalog search
/// each (18 if every job searched alone, as a one-bin task of an array engine does), and the
/// same cube; a local build shares one search among the bins of a chunk as well.
#[test]
fn a_task_of_all_bins_of_a_chunk_searches_once() {
    let _ = reference();
    let dir = common::scratch_dir("engines-jobs-per-task");
    let stdout = ok(run_in(&dir, &args("cube.zarr", &["--jobs-per-task", "3", "--workers", "2"]), &[]), "build");
    assert!(stdout.contains(&format!("{JOBS} jobs: {JOBS} done now")), "{stdout}");
    let cube = dir.join("cube.zarr");
    assert_same_objects(&cube_objects(&cube), "--jobs-per-task 3");
    let run = runs(&cube).pop().expect("a run");
    let record: Value = serde_json::from_slice(
        &std::fs::read(cube.join("_eocube/runs").join(&run).join("run.json")).expect("run.json"),
    )
    .expect("run.json parses");
    assert_eq!(record["tasks"], 6);
    let lines = common::report_lines(&cube);
    let searches: u64 = lines.iter().map(|l| l["searches"].as_u64().expect("searches")).sum();
    assert_eq!(searches, 6, "one search per chunk");
    let reference_searches: u64 =
        common::report_lines(&reference().0).iter().map(|l| l["searches"].as_u64().expect("searches")).sum();
    assert_eq!(reference_searches, 6, "a local build shares one search among the bins of a chunk too");
}

/// `eocube lambda package`: a binary Lambda can start becomes `bootstrap` (mode 0755, same bytes)
/// in the zip; another architecture is refused, and so is this test build when it needs a newer
/// glibc than Amazon Linux 2023's (a Debian 12 build does), naming the static build that fixes it.
#[test]
fn lambda_package_writes_bootstrap_and_refuses_what_lambda_cannot_start() {
    let dir = common::scratch_dir("engines-lambda-package");
    let zip = dir.join("f.zip");
    let zip_s = zip.display().to_string();
    let stdout = ok(
        run_in(
            &dir,
            &["lambda".into(), "package".into(), "-o".into(), zip_s.clone(), "--binary".into(), "/bin/true".into()],
            &[],
        ),
        "package /bin/true",
    );
    assert!(stdout.contains("aws lambda create-function") && stdout.contains("provided.al2023"), "{stdout}");
    let check = r#"
import sys, zipfile, stat
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
[info] = z.infolist()
assert info.filename == "bootstrap", info.filename
assert stat.S_IMODE(info.external_attr >> 16) == 0o755, oct(info.external_attr >> 16)
assert z.read("bootstrap") == open("/bin/true", "rb").read()
print("bootstrap ok", info.file_size, info.compress_size)
"#;
    assert!(common::run_python(check, &[&zip_s], "reading the zip").contains("bootstrap ok"));
    let arm = run_in(
        &dir,
        &[
            "lambda".into(),
            "package".into(),
            "-o".into(),
            zip_s.clone(),
            "--arch".into(),
            "arm64".into(),
            "--binary".into(),
            "/bin/true".into(),
        ],
        &[],
    );
    assert!(!arm.status.success() && text(&arm).1.contains("not arm64"), "{}", text(&arm).1);
    std::fs::remove_file(&zip).expect("remove");
    // --build outside a source tree is refused before anything runs.
    let elsewhere =
        run_in(&dir, &["lambda".into(), "package".into(), "-o".into(), zip_s.clone(), "--build".into()], &[]);
    assert!(!elsewhere.status.success() && text(&elsewhere).1.contains("not the eocube source tree"));
    let me = run_in(&dir, &["lambda".into(), "package".into(), "-o".into(), zip_s], &[]);
    if !me.status.success() {
        let err = text(&me).1;
        assert!(err.contains("needs glibc") && err.contains("x86_64-unknown-linux-musl"), "{err}");
        assert!(!zip.exists(), "nothing written for a refused binary");
    }
}
