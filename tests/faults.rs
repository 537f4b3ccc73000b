//! Faults and kills (issue 13, items 1 and 2; docs/robustness.md): eocube behind a
//! fault-injecting proxy (`eocube_synth::faults`) in front of every server it talks to, and
//! SIGKILL at random moments followed by a resume.
//!
//! - The silence bound: through a proxy that stalls or trickles answers, a COG read and a
//!   catalog search with a 1 s request timeout give up on a stall within seconds and never cut
//!   an answer that trickles in over 3 s.
//! - 10 % of the requests to nginx (the COGs), the STAC API and moto (the store) faulted, every
//!   kind (503, 429 with `Retry-After`, reset mid-body, body short of its length, 20 s stall,
//!   trickle): the build succeeds in one run and the cube equals a clean build's, for plain Zarr
//!   on disk, plain Zarr on S3 and Icechunk; the run report and `eocube status` count the
//!   request retries.
//! - SIGKILL at a moment drawn from a clean build's duration (20 seeds per target: plain Zarr on
//!   disk and on S3, Icechunk, and the `eocube worker` tasks of a stored run with `eocube
//!   collect`), then the same command again: the cube equals the clean build every time, and an
//!   Icechunk `main` shows either no cube or the whole cube after every kill.
//!
//! The tests take turns (one lock), so the times they print are not inflated by each other.
//! Seeds are fixed and printed: `EOCUBE_FAULT_SEED=N` runs the fault builds with another seed
//! (`EOCUBE_FAULT_REQUEST_TIMEOUT=20` with the default request timeout instead of 2 s),
//! `EOCUBE_KILL_SEEDS=3,17` runs only those kill seeds.
//!
//! Needs the environment of `scripts/test.sh` (nginx, moto, the STAC API with the e2e archive):
//! without it the tests fail, they never skip.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use eocube_synth::faults::{Fault, FaultPlan, FaultProxy, FaultStats};
use futures::TryStreamExt;
use serde_json::Value;

/// The e2e cube in 3 x 2 chunks of 128 px over 3 months: 18 jobs.
const FLAGS: [&str; 6] = ["--resampling", "nearest", "--chunk-size", "128", "--workers", "2"];
const VARIABLE: &str = "rgb_median";
/// Kill seeds per target.
const KILL_SEEDS: u64 = 20;

static TURN: Mutex<()> = Mutex::new(());

/// One test at a time (see the module docs).
fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `eocube` with the test moto as its S3 endpoint, unless `env` names another.
fn eocube(args: &[String], env: &[(&str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eocube"));
    c.args(args).env("AWS_ENDPOINT_URL", common::s3().endpoint);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs eocube to its end; its output and wall time in seconds.
fn run(args: &[String], env: &[(&str, String)]) -> (Output, f64) {
    let t0 = Instant::now();
    let out = eocube(args, env).output().unwrap_or_else(|e| panic!("running eocube: {e}"));
    (out, t0.elapsed().as_secs_f64())
}

fn run_ok(args: &[String], env: &[(&str, String)]) -> (String, f64) {
    let (out, secs) = run(args, env);
    common::assert_ok(&out, args);
    (String::from_utf8_lossy(&out.stdout).into_owned(), secs)
}

/// The e2e build through a STAC API at `stac` (the real one, or a proxy in front of it).
fn stac_args(out: &str, stac: &str, extra: &[&str]) -> Vec<String> {
    let mut a = common::e2e_build_args(Path::new(out), &[]);
    let at = a.iter().position(|s| s == "--stac-url").expect("--stac-url");
    a[at + 1] = stac.to_string();
    let out_at = a.len() - 2;
    a.splice(out_at..out_at, FLAGS.iter().chain(extra).map(|s| s.to_string()));
    a.push("--quiet".into());
    a
}

/// The e2e build from the local item file (no STAC API: the kill tests are about the store).
fn items_args(out: &str, extra: &[&str]) -> Vec<String> {
    let items = common::e2e_dir().join("items-local.json");
    let mut flags: Vec<&str> = FLAGS.to_vec();
    flags.extend(extra);
    flags.push("--quiet");
    common::e2e_items_build_args(Path::new(out), &items, &flags)
}

// ---------------------------------------------------------------------------------------------
// Reading cubes back

/// A plain Zarr cube's objects by key, `_eocube/` left out and the root's `created` attribute
/// removed (the only bytes two builds of one spec may differ in).
fn normalized(objects: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    objects
        .into_iter()
        .filter(|(k, _)| !k.starts_with("_eocube"))
        .map(|(k, v)| {
            if k == "zarr.json" {
                let mut j: Value = serde_json::from_slice(&v).expect("zarr.json");
                if let Some(a) = j.get_mut("attributes").and_then(Value::as_object_mut) {
                    a.remove("created");
                }
                (k, serde_json::to_vec(&j).expect("json"))
            } else {
                (k, v)
            }
        })
        .collect()
}

fn local_objects(cube: &Path) -> BTreeMap<String, Vec<u8>> {
    normalized(common::files_under(cube))
}

/// The chunks of the data variable and of `time`: what an Icechunk cube is compared on.
fn chunk_objects(objects: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    objects
        .iter()
        .filter(|(k, _)| {
            (k.starts_with(&format!("{VARIABLE}/")) || k.starts_with("time/")) && !k.ends_with("zarr.json")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn assert_same(want: &BTreeMap<String, Vec<u8>>, got: &BTreeMap<String, Vec<u8>>, what: &str) {
    let keys = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "{what}: other objects than the clean build's");
    let differ: Vec<&String> = want.iter().filter(|(k, v)| &got[*k] != *v).map(|(k, _)| k).collect();
    assert!(differ.is_empty(), "{what}: {} of {} objects differ: {differ:?}", differ.len(), want.len());
    assert!(want.keys().filter(|k| k.starts_with(&format!("{VARIABLE}/c/"))).count() > 10, "{what}: no data");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// A fresh bucket on the test moto.
fn fresh_bucket(tag: &str) -> String {
    common::s3().create_bucket(&format!("eocube-faults-{tag}-{}", std::process::id()))
}

/// Every object under `prefix` of `bucket` on the test moto, by key relative to the prefix.
fn s3_raw(bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    common::objects_under(&common::s3().store(bucket), prefix)
}

/// The chunks on `main` of the Icechunk repository at `url` (`icechunk:///path`, or
/// `icechunk+s3://bucket/prefix` on the test moto), read with the `icechunk` crate, not eocube's
/// store, keyed as [`chunk_objects`]; empty when `main` has no cube (or there is no repository
/// yet: a kill can come before the build creates it).
async fn icechunk_storage(url: &str) -> Arc<dyn icechunk::Storage + Send + Sync> {
    match url.strip_prefix("icechunk+s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').expect("icechunk+s3://bucket/prefix");
            Ok(common::s3().icechunk_storage(bucket, prefix).await)
        }
        None => icechunk::new_local_filesystem_storage(Path::new(url.trim_start_matches("icechunk://"))).await,
    }
    .expect("storage")
}

/// Whether the Icechunk repository at `url` exists: a build killed while it created the
/// repository leaves files in the prefix but no `main` branch, so no repository.
fn icechunk_exists(url: &str) -> bool {
    runtime().block_on(async {
        icechunk::Repository::exists(icechunk_storage(url).await, None).await.expect("repository check")
    })
}

fn icechunk_chunks(url: &str) -> BTreeMap<String, Vec<u8>> {
    runtime().block_on(async {
        let storage = icechunk_storage(url).await;
        // Killed before the repository was created: `main` has no cube.
        if !icechunk::Repository::exists(storage.clone(), None).await.expect("repository check") {
            return BTreeMap::new();
        }
        let repo = icechunk::Repository::open(storage).execute().await.expect("open repository");
        let version = icechunk::repository::VersionInfo::BranchTipRef("main".into());
        let session = repo.readonly_session(&version).await.expect("session");
        let store = icechunk::Store::from_session(Arc::new(tokio::sync::RwLock::new(session))).await;
        let mut out = BTreeMap::new();
        if !store.exists(&format!("{VARIABLE}/zarr.json")).await.expect("exists") {
            return out;
        }
        for prefix in [format!("{VARIABLE}/"), "time/".to_string()] {
            let keys: Vec<String> = store.list_prefix(&prefix).await.expect("list").try_collect().await.expect("list");
            for k in keys.into_iter().filter(|k| !k.ends_with("zarr.json")) {
                let b = store.get(&k, &icechunk::format::ByteRange::ALL).await.expect("get");
                out.insert(k, b.to_vec());
            }
        }
        out
    })
}

/// Report lines with `request_retries` summed.
fn request_retries(lines: &[Value]) -> u64 {
    lines.iter().filter_map(|l| l["request_retries"].as_u64()).sum()
}

/// `eocube status OUT`: its text.
fn status_text(out: &str, env: &[(&str, String)]) -> String {
    let (stdout, _) = run_ok(&strs(&["status", out]), env);
    stdout
}

/// The request retries `eocube status` says the newest run made.
fn status_request_retries(text: &str) -> u64 {
    let line = text.lines().rfind(|l| l.starts_with("run ")).unwrap_or_else(|| panic!("no run line in {text}"));
    line.rsplit(", ")
        .next()
        .and_then(|t| t.strip_suffix(" request retries"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request retries in {line:?}"))
}

// ---------------------------------------------------------------------------------------------
// The silence bound, on the clients themselves

/// The proxy's statistics once every trickle it began has ended (the client may have its last
/// byte a moment before the proxy counts the answer as sent).
fn settled(proxy: &FaultProxy) -> FaultStats {
    let t0 = Instant::now();
    loop {
        let s = proxy.stats();
        let trickles = s.faults.get("trickle").copied().unwrap_or(0);
        if s.trickles_completed + s.trickles_cut >= trickles || t0.elapsed() > Duration::from_secs(5) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A plan that faults every request (up to `budget`) with `kind`.
fn every(kind: Fault, budget: u64) -> FaultPlan {
    FaultPlan {
        rate: 1.0,
        kinds: vec![kind],
        stall: Duration::from_secs(30),
        trickle: Duration::from_secs(3),
        budget: Some(budget),
        ..FaultPlan::none()
    }
}

#[test]
fn a_silent_answer_is_abandoned_within_the_request_timeout_and_a_slow_one_is_not() {
    let _turn = turn();
    let rt = runtime();
    let timeout = Duration::from_secs(1);
    // Any COG of the fixtures: the test is about the transport.
    let rel = common::cogs()[0]["path"].as_str().expect("path").to_string();
    let fetch = eocube::cog::FetchConfig { request_timeout: timeout, ..eocube::cog::FetchConfig::default() };
    let proxy = FaultProxy::spawn(&common::http_base(), FaultPlan::none()).expect("proxy");
    let href = format!("{}/{rel}", proxy.url());
    let read = |what: &str| {
        let t0 = Instant::now();
        let fetcher = eocube::cog::Fetcher::new(fetch.clone());
        let r = rt.block_on(async {
            let cog = fetcher.open(&href).await?;
            cog.read_window(0, eocube::grid::PixelWindow { row: 0, col: 0, height: 64, width: 64 }).await
        });
        let took = t0.elapsed();
        println!(
            "COG {what}: {:?} in {:.2} s, proxy {:?}",
            r.as_ref().map(|_| "ok"),
            took.as_secs_f64(),
            proxy.stats()
        );
        assert!(r.is_ok(), "{what}: {r:?}");
        took
    };
    let clean = read("clean");

    // A stall of 30 s (once): the reader gives up after about 1 s and retries.
    proxy.set_plan(every(Fault::Stall, 1));
    proxy.reset_stats();
    let took = read("one 30 s stall");
    let s = proxy.stats();
    assert_eq!((s.faults.get("stall"), s.stalls_abandoned), (Some(&1), 1), "{s:?}");
    assert!(s.longest_abandoned_stall >= timeout, "abandoned before the bound: {s:?}");
    // Sanity bound (this is about not hanging): far below the 30 s the server would keep silent.
    assert!(took < Duration::from_secs(15), "a stalled read took {took:?}");

    // Every answer trickled over 3 s, never silent for more than 0.15 s: nothing is cut.
    proxy.set_plan(every(Fault::Trickle, 100));
    proxy.reset_stats();
    let took = read("every answer trickled over 3 s");
    let s = settled(&proxy);
    // Each request trickled once and was read to its end: none was abandoned and sent again.
    assert!(s.trickles_completed >= 2 && s.trickles_cut == 0, "{s:?}");
    assert_eq!(s.faults.get("trickle"), Some(&s.requests), "a trickled request was sent again: {s:?}");
    println!("COG: clean {:.2} s, through trickles {:.2} s", clean.as_secs_f64(), took.as_secs_f64());

    // The catalog client: the same bounds.
    let stac = FaultProxy::spawn(&common::e2e_stac_url(), FaultPlan::none()).expect("proxy");
    let opts = eocube::catalog::ApiOptions { request_timeout: timeout, ..eocube::catalog::ApiOptions::default() };
    let client = eocube::catalog::ApiClient::new(&stac.url(), opts).expect("client");
    let collection = common::e2e_manifest()["collection"].as_str().expect("collection").to_string();
    let search = || {
        use chrono::TimeZone;
        let at = |y| chrono::Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).single().expect("a date");
        let req = eocube::catalog::SearchRequest::new(&[collection.as_str()], at(2023), at(2024));
        let t0 = Instant::now();
        let items = rt.block_on(client.search_items(&req));
        let n = items.as_ref().map(Vec::len);
        println!("search: {n:?} items in {:.2} s, proxy {:?}", t0.elapsed().as_secs_f64(), stac.stats());
        assert!(n.as_ref().is_ok_and(|n| *n > 0), "{items:?}");
        t0.elapsed()
    };
    search();
    stac.set_plan(every(Fault::Stall, 1));
    stac.reset_stats();
    let took = search();
    assert_eq!(stac.stats().stalls_abandoned, 1, "{:?}", stac.stats());
    assert!(took < Duration::from_secs(15), "a stalled search took {took:?}");
    stac.set_plan(every(Fault::Trickle, 100));
    stac.reset_stats();
    let took = search();
    let s = settled(&stac);
    assert!(s.trickles_completed >= 1 && s.trickles_cut == 0, "{s:?}");
    assert_eq!(s.faults.get("trickle"), Some(&s.requests), "a trickled request was sent again: {s:?}");
    println!("search: through trickles {:.2} s", took.as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Builds through 10 % faults

/// Proxies in front of nginx, the STAC API (its answers point at the COG proxy) and moto.
struct Proxies {
    cogs: FaultProxy,
    stac: FaultProxy,
    s3: FaultProxy,
}

impl Proxies {
    fn start() -> Proxies {
        let cogs = FaultProxy::spawn(&common::http_base(), FaultPlan::none()).expect("COG proxy");
        let stac = FaultProxy::spawn(&common::e2e_stac_url(), FaultPlan::none()).expect("STAC proxy");
        let s3 = FaultProxy::spawn(&common::s3().endpoint, FaultPlan::none()).expect("S3 proxy");
        let p = Proxies { cogs, stac, s3 };
        p.plan(FaultPlan::none());
        p
    }

    fn all(&self) -> [(&'static str, &FaultProxy); 3] {
        [("cogs", &self.cogs), ("stac", &self.stac), ("s3", &self.s3)]
    }

    /// `plan` on every proxy (the STAC proxy also rewrites nginx's URL to the COG proxy's), with
    /// a seed of its own for each, and the statistics zeroed.
    fn plan(&self, plan: FaultPlan) {
        for (i, (name, p)) in self.all().into_iter().enumerate() {
            let mut plan = FaultPlan { seed: plan.seed.wrapping_add(i as u64 * 1000), ..plan.clone() };
            if name == "stac" {
                plan.rewrite = vec![(common::http_base(), self.cogs.url())];
            }
            p.set_plan(plan);
            p.reset_stats();
        }
    }

    fn stats(&self) -> Vec<(&'static str, FaultStats)> {
        self.all().into_iter().map(|(n, p)| (n, settled(p))).collect()
    }
}

/// Faults served by kind over `stats`.
fn by_kind(stats: &[(&str, FaultStats)]) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for (_, s) in stats {
        for (k, n) in &s.faults {
            *out.entry(*k).or_insert(0) += n;
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Local,
    S3,
    Icechunk,
}

#[test]
fn builds_through_ten_percent_faults_equal_a_clean_build() {
    let _turn = turn();
    let dir = common::scratch_dir("faults");
    let seed: u64 = std::env::var("EOCUBE_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(13);
    // 2 s keeps the test short; EOCUBE_FAULT_REQUEST_TIMEOUT=20 measures the default.
    let request_timeout = std::env::var("EOCUBE_FAULT_REQUEST_TIMEOUT").unwrap_or_else(|_| "2".into());
    let proxies = Proxies::start();
    let stac = proxies.stac.url();

    // The clean build, straight to the servers, and through the proxies with no fault: the
    // reference (the spec in the root's attributes names the catalog, so it is the proxy's).
    let clean = dir.join("clean.zarr");
    let (_, clean_direct) = run_ok(&stac_args(&clean.display().to_string(), &common::e2e_stac_url(), &[]), &[]);
    let through = dir.join("through.zarr");
    let (_, clean_proxied) = run_ok(&stac_args(&through.display().to_string(), &stac, &[]), &[]);
    let want = local_objects(&through);
    assert_same(&chunk_objects(&local_objects(&clean)), &chunk_objects(&want), "through the proxies, no fault");
    let requests: u64 = proxies.stats().iter().map(|(_, s)| s.requests).sum();
    println!(
        "clean build: {clean_direct:.2} s straight, {clean_proxied:.2} s through the proxies ({requests} requests)"
    );

    let bucket = fresh_bucket("faulted");
    let mut served: Vec<(&str, FaultStats)> = Vec::new();
    let mut rows = Vec::new();
    for (i, target) in [Target::Local, Target::S3, Target::Icechunk].into_iter().enumerate() {
        let plan = FaultPlan {
            seed: seed + i as u64,
            rate: 0.1,
            stall: Duration::from_secs(20),
            trickle: Duration::from_secs(3),
            retry_after: 1,
            ..FaultPlan::none()
        };
        proxies.plan(plan);
        let out = match target {
            Target::Local => dir.join("faulted.zarr").display().to_string(),
            Target::S3 => format!("s3://{bucket}/faulted.zarr"),
            Target::Icechunk => format!("icechunk://{}", dir.join("faulted-repo").display()),
        };
        let env = [("AWS_ENDPOINT_URL", proxies.s3.url())];
        let args = stac_args(&out, &stac, &["--request-timeout", &request_timeout]);
        let (stdout, secs) = run_ok(&args, &env);
        let stats = proxies.stats();
        let (got, lines) = match target {
            Target::Local => {
                (local_objects(&dir.join("faulted.zarr")), common::report_lines(&dir.join("faulted.zarr")))
            }
            Target::S3 => {
                let raw = s3_raw(&bucket, "faulted.zarr");
                let lines: Vec<Value> = raw
                    .iter()
                    .filter(|(k, _)| k.starts_with("_eocube/report/"))
                    .flat_map(|(_, v)| String::from_utf8_lossy(v).lines().map(String::from).collect::<Vec<_>>())
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| serde_json::from_str(&l).expect("report line"))
                    .collect();
                (normalized(raw), lines)
            }
            Target::Icechunk => (icechunk_chunks(&out), Vec::new()),
        };
        let what =
            format!("{target:?} through 10 % faults (seed {}, request timeout {request_timeout} s)", seed + i as u64);
        if target == Target::Icechunk {
            assert_same(&chunk_objects(&want), &got, &what);
        } else {
            assert_same(&want, &got, &what);
        }
        // The counts as `eocube status` reads them back (no fault now: it has no request timeout flag).
        proxies.plan(FaultPlan::none());
        let status = status_text(&out, &env);
        let from_status = status_request_retries(&status);
        let from_lines = if lines.is_empty() { from_status } else { request_retries(&lines) };
        let from_stdout = stdout
            .split(" request retries")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no request retries in {stdout}"));
        assert!(from_stdout > 0, "{what}: no request retry was counted: {stdout}");
        assert_eq!((from_lines, from_status), (from_stdout, from_stdout), "{what}: report lines, status, build");
        let kinds = by_kind(&stats);
        let total: u64 = kinds.values().sum();
        let requests: u64 = stats.iter().map(|(_, s)| s.requests).sum();
        println!("{what}: {secs:.1} s, {requests} requests, {total} faulted {kinds:?}, {from_stdout} request retries");
        for (name, s) in &stats {
            println!("  {name}: {s:?}");
        }
        rows.push((target, secs, requests, total, from_stdout));
        served.extend(stats);
    }
    let kinds = by_kind(&served);
    println!("faults served over the builds: {kinds:?}");
    for kind in Fault::ALL {
        assert!(kinds.get(kind.name()).is_some_and(|&n| n > 0), "no {} fault was served: {kinds:?}", kind.name());
    }
    // Every stall was given up on by the client, within the request timeout and some slack;
    // no trickled answer was cut.
    let stalls = kinds.get("stall").copied().unwrap_or(0);
    let abandoned: u64 = served.iter().map(|(_, s)| s.stalls_abandoned).sum();
    let longest = served.iter().map(|(_, s)| s.longest_abandoned_stall).max().unwrap_or_default();
    let cut: u64 = served.iter().map(|(_, s)| s.trickles_cut).sum();
    println!(
        "stalls: {stalls} served, {abandoned} abandoned by the client, the longest after {longest:?}; {cut} trickles cut"
    );
    // Sanity bound (not hanging): a stall is abandoned at the request timeout (a catalog
    // search's: a few of them), well before its end.
    let bound = request_timeout.parse::<f64>().expect("seconds") * f64::from(eocube::catalog::SEARCH_SILENCE_FACTOR);
    if bound < 15.0 {
        assert_eq!(abandoned, stalls, "a stall was waited out to its end");
        assert!(longest < Duration::from_secs_f64(bound + 5.0), "a stall was waited on for {longest:?}");
    }
    assert_eq!(cut, 0, "a trickled answer was cut");
    for (target, secs, requests, faults, retries) in rows {
        println!("| {target:?} | {clean_proxied:.1} s | {secs:.1} s | {requests} | {faults} | {retries} |");
    }
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Kills

/// SplitMix64: the kill moment of a seed.
fn unit(seed: u64) -> f64 {
    let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The seeds to run: `EOCUBE_KILL_SEEDS` (comma-separated), else `first..first + KILL_SEEDS`.
fn kill_seeds(first: u64) -> Vec<u64> {
    match std::env::var("EOCUBE_KILL_SEEDS") {
        Ok(s) if !s.trim().is_empty() => s.split(',').map(|n| n.trim().parse().expect("a seed number")).collect(),
        _ => (first..first + KILL_SEEDS).collect(),
    }
}

/// Starts `command`, SIGKILLs it `after` from now unless it ended before; whether it was killed.
fn kill_after(mut command: Command, after: Duration) -> bool {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawning eocube");
    let deadline = Instant::now() + after;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        if Instant::now() >= deadline {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2).min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// `eocube log OUT --json`: the versions of `main`.
fn main_versions(out: &str) -> usize {
    let (stdout, _) = run_ok(&strs(&["log", out, "--json"]), &[]);
    serde_json::from_str::<Value>(&stdout).expect("log --json").as_array().map_or(0, Vec::len)
}

/// One kill target: where a seed's cube goes and how it is read back.
struct KillTarget {
    target: Target,
    dir: PathBuf,
    bucket: String,
}

impl KillTarget {
    fn out(&self, tag: &str) -> String {
        match self.target {
            Target::Local => self.dir.join(format!("{tag}.zarr")).display().to_string(),
            Target::S3 => format!("s3://{}/{tag}.zarr", self.bucket),
            Target::Icechunk => format!("icechunk://{}", self.dir.join(tag).display()),
        }
    }

    /// The cube at `out`, as compared with the clean build (Icechunk: the chunks on `main`).
    fn objects(&self, out: &str) -> BTreeMap<String, Vec<u8>> {
        match self.target {
            Target::Local => local_objects(Path::new(out)),
            Target::S3 => {
                let prefix = out.trim_start_matches(&format!("s3://{}/", self.bucket));
                normalized(s3_raw(&self.bucket, prefix))
            }
            Target::Icechunk => icechunk_chunks(out),
        }
    }
}

/// Kills builds of `target` at random moments, resumes each, and checks the cube every time.
fn kill_and_resume(target: Target, first_seed: u64) {
    let _turn = turn();
    let name = format!("{target:?}").to_lowercase();
    let dir = common::scratch_dir(&format!("kills-{name}"));
    let bucket = if target == Target::S3 { fresh_bucket(&format!("kills{first_seed}")) } else { String::new() };
    let t = KillTarget { target, dir: dir.clone(), bucket };
    // Icechunk: a checkpoint commit every 4 jobs, so kills also land in commits on the build branch.
    let extra: &[&str] = if target == Target::Icechunk { &["--commit-every", "4"] } else { &[] };
    let reference = local_objects(&{
        let p = dir.join("reference.zarr");
        run_ok(&items_args(&p.display().to_string(), &[]), &[]);
        p
    });
    let want = if target == Target::Icechunk { chunk_objects(&reference) } else { reference };
    // Clean builds of this target: the faster's duration is the range of kill moments (the
    // first build into a new bucket or directory can be the slower).
    let mut clean_secs = f64::INFINITY;
    for tag in ["clean1", "clean2"] {
        let clean = t.out(tag);
        clean_secs = clean_secs.min(run_ok(&items_args(&clean, extra), &[]).1);
        assert_same(&want, &t.objects(&clean), &format!("{name}: clean build"));
    }
    println!("{name}: a clean build takes {clean_secs:.2} s; kills drawn from [0, {clean_secs:.2}) s");
    let t0 = Instant::now();
    let (mut killed, mut finished) = (0, 0);
    for seed in kill_seeds(first_seed) {
        let out = t.out(&format!("seed{seed}"));
        let args = items_args(&out, extra);
        let at = Duration::from_secs_f64(clean_secs * unit(seed));
        let was_killed = kill_after(eocube(&args, &[]), at);
        let what = format!("{name} seed {seed} (SIGKILL at {:.0} ms)", at.as_secs_f64() * 1e3);
        if was_killed {
            killed += 1;
        } else {
            finished += 1;
        }
        let mut seen = String::new();
        // (A kill while the build created the repository leaves no repository: nothing to read.)
        if target == Target::Icechunk && icechunk_exists(&out) {
            // Before the resume: main is either as it was (no cube) or the whole cube.
            let chunks = t.objects(&out);
            let versions = main_versions(&out);
            match versions {
                1 => assert!(chunks.is_empty(), "{what}: main shows {} chunks of an unfinished build", chunks.len()),
                2 => assert_same(&want, &chunks, &format!("{what}: main after the kill")),
                n => panic!("{what}: main has {n} versions"),
            }
            seen = format!(", main had {} version(s)", versions);
        }
        let (_, resume_secs) = run_ok(&args, &[]);
        assert_same(&want, &t.objects(&out), &format!("{what}, resumed"));
        println!(
            "{what}: {}{seen}; resumed in {resume_secs:.2} s, identical",
            if was_killed { "killed" } else { "had finished" }
        );
    }
    println!(
        "{name}: {} seeds, {killed} killed, {finished} finished first, all identical after the resume, {:.1} s",
        killed + finished,
        t0.elapsed().as_secs_f64()
    );
    assert!(killed > 0, "{name}: no build was killed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigkill_then_resume_local_zarr() {
    kill_and_resume(Target::Local, 100);
}

#[test]
fn sigkill_then_resume_s3_zarr() {
    kill_and_resume(Target::S3, 200);
}

#[test]
fn sigkill_then_resume_icechunk() {
    kill_and_resume(Target::Icechunk, 300);
}

/// The commands of an emitted Kubernetes run, each with its `JOB_COMPLETION_INDEX`.
fn emitted_tasks(emitted: &Path) -> Vec<(Vec<String>, String)> {
    let doc: Value = serde_json::from_slice(&std::fs::read(emitted).expect("the emitted file")).expect("JSON");
    let mut tasks = Vec::new();
    for job in doc["items"].as_array().expect("items") {
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        let command: Vec<String> = container["command"]
            .as_array()
            .expect("command")
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect();
        for i in 0..job["spec"]["completions"].as_u64().expect("completions") {
            tasks.push((command[1..].to_vec(), i.to_string()));
        }
    }
    tasks
}

/// A stored run of the e2e cube at `cube` (written with `--emit`, nothing submitted): the
/// worker commands, then `eocube collect`.
fn stored_run(cube: &Path) -> Vec<(Vec<String>, Option<String>)> {
    let emitted = cube.with_extension("json");
    let extra = [
        "--executor",
        "kubernetes",
        "--image",
        "eocube:test",
        "--jobs-per-task",
        "3",
        "--emit",
        emitted.to_str().expect("utf-8"),
    ];
    let (out, _) = run(&items_args(cube.to_str().expect("utf-8"), &extra), &[]);
    common::assert_ok(&out, &[format!("emit {}", cube.display())]);
    let mut steps: Vec<(Vec<String>, Option<String>)> =
        emitted_tasks(&emitted).into_iter().map(|(c, i)| (c, Some(i))).collect();
    steps.push((strs(&["collect", cube.to_str().expect("utf-8")]), None));
    steps
}

fn step_command(step: &(Vec<String>, Option<String>)) -> Command {
    let mut c = eocube(&step.0, &[]);
    if let Some(i) = &step.1 {
        c.env("JOB_COMPLETION_INDEX", i);
    }
    c
}

/// Workers and `collect` of a stored run, SIGKILLed at a random moment of the whole sequence,
/// then every task run again and collected: the cube equals the clean build.
#[test]
fn sigkill_then_rerun_worker_tasks_and_collect() {
    let _turn = turn();
    let dir = common::scratch_dir("kills-workers");
    let reference = dir.join("reference.zarr");
    run_ok(&items_args(&reference.display().to_string(), &[]), &[]);
    let want = local_objects(&reference);
    // The clean sequence: emit, every task, collect.
    let clean = dir.join("clean.zarr");
    let steps = stored_run(&clean);
    let t0 = Instant::now();
    for step in &steps {
        let out = step_command(step).output().expect("running a step");
        assert!(out.status.success(), "{:?}: {}", step.0, String::from_utf8_lossy(&out.stderr));
    }
    let clean_secs = t0.elapsed().as_secs_f64();
    assert_same(&want, &local_objects(&clean), "workers + collect, clean");
    println!("workers: {} tasks + collect take {clean_secs:.2} s; kills drawn from that", steps.len() - 1);
    let t0 = Instant::now();
    let mut killed_at: BTreeMap<String, usize> = BTreeMap::new();
    for seed in kill_seeds(400) {
        let cube = dir.join(format!("seed{seed}.zarr"));
        let steps = stored_run(&cube);
        let at = Duration::from_secs_f64(clean_secs * unit(seed));
        let start = Instant::now();
        let mut victim = "nothing".to_string();
        for step in &steps {
            let left = at.saturating_sub(start.elapsed());
            if kill_after(step_command(step), left) {
                victim = match &step.1 {
                    Some(i) => format!("worker {i}"),
                    None => "collect".into(),
                };
                break;
            }
        }
        *killed_at.entry(victim.split(' ').next().unwrap_or_default().to_string()).or_insert(0) += 1;
        // Resume: every task again (a done task keeps its result), then collect.
        for step in &steps {
            let out = step_command(step).output().expect("running a step");
            assert!(out.status.success(), "seed {seed}: {:?}: {}", step.0, String::from_utf8_lossy(&out.stderr));
        }
        assert_same(&want, &local_objects(&cube), &format!("workers seed {seed} (SIGKILL of {victim})"));
        println!(
            "workers seed {seed}: SIGKILL at {:.0} ms hit {victim}; rerun + collect identical",
            at.as_secs_f64() * 1e3
        );
    }
    println!("workers: kills hit {killed_at:?}; {:.1} s", t0.elapsed().as_secs_f64());
    assert!(killed_at.get("worker").is_some_and(|&n| n > 0), "no worker was killed: {killed_at:?}");
    let _ = std::fs::remove_dir_all(dir);
}
