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
