//! The `eocube` binary as a user runs it: good input prints a description, bad input exits
//! non-zero with a message that names the input and the reason, never a panic. The catalogue of
//! bad inputs (flags, config, items, TIFF bytes, HTTP answers, store contents) is
//! `tests/bad_inputs.rs`.

mod common;

use std::process::{Command, Output};

fn eocube(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eocube")).args(args).output().expect("run eocube")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn info_describes_a_cog_from_disk_and_http() {
    let c = common::cog("u16_18n_deflate_p2_t1024");
    let rel = c["path"].as_str().expect("path");
    for href in [common::fixture(rel).to_string_lossy().into_owned(), common::http_url(rel)] {
        let out = eocube(&["info", &href]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{href}: {stderr}");
        for want in ["crs:       EPSG:32618", "size:      3300 x 3300", "nodata:    0", "dtype:     U16", "requests"] {
            assert!(stdout.contains(want), "{href}: missing {want:?} in\n{stdout}");
        }
        // full resolution plus at least two overviews
        assert!(stdout.lines().filter(|l| l.contains("tiles")).count() >= 3, "{stdout}");
    }
}

const VERMONT: [&str; 9] = ["plan", "--bbox", "-73.43", "42.72", "-71.47", "45.02", "--start", "2020-01-01", "--end"];

#[test]
fn plan_prints_the_vermont_plan_without_network() {
    let mut args = VERMONT.to_vec();
    args.extend(["2023-12-31", "--json"]);
    let out = eocube(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("plan --json prints JSON");
    assert_eq!(v["grid"]["ny"], 8280);
    assert_eq!(v["grid"]["nx"], 7056);
    assert_eq!(v["chunks_total"], 42);
    assert_eq!(v["chunks_kept"], 42, "Vermont is all land");
    assert_eq!(v["time_bins"], 48);
    assert_eq!(v["jobs"], 42 * 48);
}

#[test]
fn plan_of_south_america_keeps_land_chunks_only() {
    let out = eocube(&[
        "plan",
        "--bbox",
        "-82",
        "-56",
        "-34",
        "13",
        "--start",
        "2020-01-01",
        "--end",
        "2020-01-31",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["chunks_total"], 29_808);
    let kept = v["chunks_kept"].as_u64().expect("kept");
    // The continent fills about half of its bbox; islands (Galapagos, Falklands) count too.
    assert!((12_000..18_000).contains(&kept), "kept {kept}");
}

#[test]
fn plan_reads_a_config_file_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("eocube-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let cfg = dir.join("cube.toml");
    std::fs::write(
        &cfg,
        "bbox = [-73.43, 42.72, -71.47, 45.02]\nstart = \"2020-01-01\"\nend = \"2020-12-31\"\nchunk_size = 600\n",
    )
    .expect("write config");
    let out = eocube(&["plan", "--config", cfg.to_str().expect("utf-8"), "--time-step", "3M", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!((v["chunk_size"].as_u64(), v["time_bins"].as_u64()), (Some(600), Some(4)));
    std::fs::write(&cfg, "bbox = [1, 2, 3, 4]\nchunksize = 3\n").expect("write config");
    let out = eocube(&["plan", "--config", cfg.to_str().expect("utf-8")]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("--config") && stderr.contains("chunksize"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C (SIGINT) midway: eocube stops at once with exit status 130, keeps the jobs it finished
/// in the ledger, says how to resume; the same command then runs only the rest and completes.
#[test]
fn ctrl_c_stops_cleanly_and_the_same_command_resumes() {
    let dir = common::scratch_dir("ctrl-c");
    let out = dir.join("cube.zarr");
    let items = common::e2e_dir().join("items-local.json");
    // small chunks, one worker: hundreds of short jobs, so the signal lands midway
    let args = common::e2e_items_build_args(&out, &items, &["--chunk-size", "16", "--workers", "1"]);
    let child = Command::new(env!("CARGO_BIN_EXE_eocube"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ledger = out.join("_eocube/ledger");
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&ledger).map_or(0, |d| d.count()) < 20 {
        assert!(t0.elapsed().as_secs() < 60, "no progress in the ledger after 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let first = child.wait_with_output().unwrap();
    let (_, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: run the same command again to resume"), "{stderr}");

    let status = eocube(&["status", out.to_str().unwrap()]);
    let (stdout, _) = text(&status);
    let count = |key: &str| -> usize {
        stdout.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().parse().unwrap()).unwrap()
    };
    let (jobs, done_before) = (count("jobs:"), count("done:"));
    assert!(done_before >= 20 && done_before < jobs, "{stdout}");
    assert_eq!(count("failed:"), 0, "{stdout}");
    assert!(stdout.contains("complete: no"), "{stdout}");

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = eocube(&args);
    let (stdout2, stderr2) = text(&second);
    assert!(second.status.success(), "{stderr2}");
    assert!(stderr2.contains(&format!("{done_before} already done (resuming)")), "{stderr2}");
    assert!(
        stdout2.contains(&format!("{} done now, {done_before} done before, 0 failed", jobs - done_before)),
        "{stdout2}"
    );
    let status = eocube(&["status", out.to_str().unwrap()]);
    let (stdout, _) = text(&status);
    assert!(stdout.contains(&format!("done: {jobs}")) && stdout.contains("complete: yes"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eocube demo`: no network, no Python; writes the archive, serves it, builds the cube, prints
/// the Python that opens it. Then xarray opens it: two months across UTM zones 18 and 19.
#[test]
fn demo_builds_a_cube_offline_that_xarray_opens() {
    let dir = common::scratch_dir("demo");
    let out = eocube(&["demo", "--out", dir.to_str().unwrap(), "--quiet"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let cube = dir.join("cube.zarr");
    let serve_hint = format!("eocube serve {}", cube.display());
    for want in
        ["UTM zones [18, 19]", "import xarray as xr", &format!("xr.open_zarr(\"{}\")", cube.display()), &serve_hint]
    {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    // The picture without Python: a real PNG of the first month, named in the output.
    let png = std::fs::read(dir.join("quicklook.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "quicklook.png: {} bytes", png.len());
    assert!(stdout.contains("quicklook.png"), "{stdout}");
    let py = r#"
import sys, numpy as np, xarray as xr
ds = xr.open_zarr(sys.argv[1])
v = ds.rgb_median
assert v.dims == ("time", "latitude", "longitude", "band"), v.dims
assert [str(t)[:10] for t in ds.time.values] == ["2023-06-01", "2023-07-01"], ds.time.values
assert list(ds.band.values) == ["red", "green", "blue"]
a = v.values
filled = np.isfinite(a).mean()
assert filled > 0.9, filled
assert np.nanmin(a) >= -0.1 and np.nanmax(a) <= 6.5
print(f"demo cube {dict(ds.sizes)}, {filled:.3f} of the values observed")
"#;
    let o = Command::new(common::python()).args(["-c", py, cube.to_str().unwrap()]).output().unwrap();
    let (pout, perr) = text(&o);
    assert!(o.status.success(), "{pout}\n{perr}");
    println!("{stdout}{pout}");
    // A second demo in the same directory replaces the first; a foreign directory is refused.
    let foreign = common::scratch_dir("demo-foreign");
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let out = eocube(&["demo", "--out", foreign.to_str().unwrap(), "--quiet"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not made by `eocube demo`"), "{stderr}");
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "mine");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&foreign);
}

/// A scene whose file is missing fails its jobs at once (no retries: a 404 does not heal), the
/// build exits 1 naming the file, `status` counts the failed jobs; with
/// `--skip-bad-scenes` the scene is left out with a warning in the run report and the build
/// completes.
#[test]
fn a_missing_scene_fails_its_jobs_unless_bad_scenes_are_skipped() {
    let dir = common::scratch_dir("bad-scene");
    let mut items: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::e2e_dir().join("items-local.json")).unwrap()).unwrap();
    let features = items["features"].as_array_mut().unwrap();
    let broken = features.iter_mut().find(|f| f["id"].as_str().unwrap().contains("20230603")).unwrap();
    let id = broken["id"].as_str().unwrap().to_string();
    let missing = dir.join("no-such-scene/red.tif").display().to_string();
    broken["assets"]["red"]["href"] = serde_json::json!(missing);
    let items_path = dir.join("items.json");
    std::fs::write(&items_path, items.to_string()).unwrap();
    let build = |out: &std::path::Path, extra: &[&str]| {
        let mut flags = vec!["--chunk-size", "128"];
        flags.extend_from_slice(extra);
        let args = common::e2e_items_build_args(out, &items_path, &flags);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        eocube(&args)
    };

    let out = dir.join("strict.zarr");
    let o = build(&out, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&missing) && stderr.contains("not found"), "{stderr}");
    assert!(stderr.contains("jobs failed; run the same command again"), "{stderr}");
    let failed: Vec<serde_json::Value> =
        common::report_lines(&out).into_iter().filter(|r| r["outcome"] == "failed").collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|r| r["retries"] == 0), "permanent errors are not retried: {failed:?}");
    let status = eocube(&["status", out.to_str().unwrap()]);
    let (s, _) = text(&status);
    assert!(s.contains(&format!("failed: {}", failed.len())) && s.contains("complete: no"), "{s}");

    let out = dir.join("lenient.zarr");
    let o = build(&out, &["--skip-bad-scenes"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let report = common::report_lines(&out);
    let warned = report.iter().filter(|l| l.to_string().contains(&format!("skipped scene {id}"))).count();
    assert!(warned >= 1, "{report:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A job that outlives `--timeout` counts as a transient failure: it is retried `--retries` times
/// after a backoff, then fails with a message saying how to raise the limit; exit status 1.
#[test]
fn jobs_over_the_timeout_are_retried_then_fail() {
    let dir = common::scratch_dir("timeout");
    let out = dir.join("cube.zarr");
    let items = common::e2e_dir().join("items-local.json");
    let flags = ["--chunk-size", "256", "--timeout", "0.000001", "--retries", "1"];
    let args = common::e2e_items_build_args(&out, &items, &flags);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = std::time::Instant::now();
    let o = eocube(&args);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("timed out after") && stderr.contains("raise `timeout`"), "{stderr}");
    let records = common::report_lines(&out);
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r["outcome"], "failed", "{r}");
        assert_eq!(r["retries"], 1, "{r}");
        assert_eq!(r["retried_errors"].as_array().map(Vec::len), Some(1), "{r}");
    }
    // one backoff of 0.5-1 s between the two attempts of each job
    assert!(t0.elapsed().as_secs_f64() >= 0.5, "{:?}", t0.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eocube extend` grows the time axis: a cube built to mid-June and extended to the end of
/// the archive equals, chunk for chunk and in its `time` coordinate, a cube built to the end in
/// one go. Only the new bins and the June bin the old end cut short are computed; the May jobs
/// are kept. A cube never shrinks.
#[test]
fn extend_computes_the_new_bins_and_equals_a_full_build() {
    let dir = common::scratch_dir("extend");
    let items = common::e2e_dir().join("items-local.json");
    let end = common::e2e_manifest()["end"].as_str().unwrap();
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = eocube(&args);
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{args:?}\n{stdout}\n{stderr}");
        stdout
    };
    let grown = dir.join("grown.zarr");
    let mut args = common::e2e_items_build_args(&grown, &items, &["--chunk-size", "128"]);
    let at = args.iter().position(|a| a == "--end").unwrap();
    args[at + 1] = "2023-06-20".into();
    let first = run(args);
    assert!(first.contains("12 jobs: 12 done now"), "{first}");
    let extended = run(vec!["extend".into(), grown.display().to_string(), "--end".into(), end.into()]);
    // 6 chunks: May kept (6), June recomputed (6), July new (6)
    assert!(extended.contains("18 jobs: 12 done now, 6 done before, 0 failed"), "{extended}");

    let full = dir.join("full.zarr");
    run(common::e2e_items_build_args(&full, &items, &["--chunk-size", "128"]));
    for sub in ["rgb_median", "time"] {
        let (a, b) = (common::files_under(&grown.join(sub)), common::files_under(&full.join(sub)));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{sub}");
        for (k, v) in &a {
            assert!(v == &b[k], "{sub}/{k} differs between the extended and the full build");
        }
    }
    let status = eocube(&["status", grown.to_str().unwrap()]);
    let (s, _) = text(&status);
    assert!(s.contains("done: 18") && s.contains("complete: yes"), "{s}");

    let o = eocube(&["extend", grown.to_str().unwrap(), "--end", "2023-06-01"]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--end 2023-06-01") && stderr.contains("never shrinks"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
