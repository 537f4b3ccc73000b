//! The `eocube` binary as a user runs it: good input prints a description, bad input exits
//! non-zero with a message that names the input and the reason, never a panic.

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

#[test]
fn info_refuses_bad_input_with_a_clear_message() {
    let missing = format!("{}/no/such/file.tif", common::http_base());
    let cases = [
        (common::bad("truncated").to_string_lossy().into_owned(), "truncated"),
        (common::bad("garbage").to_string_lossy().into_owned(), "TIFF"),
        (common::bad("unsupported_compression").to_string_lossy().into_owned(), "compression"),
        (common::bad("no_geokeys").to_string_lossy().into_owned(), "GeoKey"),
        (missing, "not found"),
        ("ftp://example.org/a.tif".to_string(), "ftp"),
    ];
    for (href, reason) in cases {
        let out = eocube(&["info", &href]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{href}: {stderr}");
        assert!(stderr.starts_with("error: "), "{href}: {stderr}");
        assert!(stderr.contains(&href), "{href}: message should name the input: {stderr}");
        assert!(stderr.to_lowercase().contains(&reason.to_lowercase()), "{href}: expected {reason:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{href}: {stderr}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = eocube(&["info"]);
    assert_eq!(out.status.code(), Some(2));
    let out = eocube(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
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
fn plan_refuses_every_invalid_setting_naming_its_flag() {
    let base = ["--start", "2020-01-01", "--end", "2020-03-31"];
    let bbox = ["--bbox", "-73", "44", "-72", "45"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--bbox", "-73", "45", "-72", "44"], "--bbox"),
        (vec!["--bbox", "-72", "44", "-73", "45"], "--bbox"),
        (vec!["--start", "2021-01-01"], "--start"),
        (vec!["--bands", "red,purple"], "--bands"),
        (vec!["--crs", "EPSG:999999"], "--crs"),
        (vec!["--resolution", "0"], "--resolution"),
        (vec!["--resolution", "-0.001"], "--resolution"),
        (vec!["--resolution", "fine"], "--resolution"),
        (vec!["--chunk-size", "0"], "--chunk-size"),
        (vec!["--chunk-size", "-3"], "--chunk-size"),
        (vec!["--time-step", "2W"], "--time-step"),
        (vec!["--mask", "4,5,13"], "--mask"),
        (vec!["--stac-url", "not a url"], "--stac-url"),
        (vec!["--zarr-format", "4"], "--zarr-format"),
    ];
    for (extra, flag) in cases {
        let mut args = vec!["plan"];
        args.extend(bbox);
        args.extend(base);
        args.extend(extra.iter().copied());
        let out = eocube(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.starts_with(&format!("error: {flag}")), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // clap's own refusal (a chunk size that is not an integer) is a usage error, exit 2
    let mut args = vec!["plan"];
    args.extend(bbox);
    args.extend(base);
    args.extend(["--chunk-size", "12.5"]);
    let out = eocube(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--chunk-size"));
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
