//! `eocube build --catalog planetary-computer` end to end, offline: the archive server of the
//! test kit stands in for the Planetary Computer's STAC API, its SAS token API and Azure Blob
//! Storage (`eocube_synth::server::sas`), serving the e2e archive only to requests signed with
//! a good token. Its tokens stop working after a few requests, well before the `msft:expiry`
//! they state, so tokens expire (and are renewed) many times in one build. The cube must equal
//! the one built from the same scenes read unsigned from disk.
//!
//! Run with `EOCUBE_FIXTURES=... cargo test --test planetary` (or `scripts/test.sh --test
//! planetary`); needs only the e2e archive, no server.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use eocube_synth::server::ArchiveServer;
use eocube_synth::server::sas::SasGate;
use serde_json::Value;

/// The e2e items with asset hrefs relative to the e2e directory, as the archive server takes them.
fn relative_items() -> Vec<Value> {
    let dir = e2e_dir();
    let text = std::fs::read_to_string(dir.join("items-local.json")).expect("items-local.json");
    let doc: Value = serde_json::from_str(&text).expect("items JSON");
    let prefix = format!("{}/", dir.canonicalize().unwrap_or(dir.clone()).display());
    let mut items = doc["features"].as_array().expect("features").clone();
    for item in &mut items {
        for (_, asset) in item["assets"].as_object_mut().expect("assets").iter_mut() {
            let href = asset["href"].as_str().expect("href").to_string();
            let plain = format!("{}/", dir.display());
            let rel = href.strip_prefix(&prefix).or_else(|| href.strip_prefix(&plain)).unwrap_or(&href);
            asset["href"] = Value::String(rel.to_string());
        }
    }
    items
}

/// The chunks of a plain Zarr cube (the metadata names the catalog, so it differs by design).
fn chunks(cube: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(cube)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("_eocube") && !k.ends_with(".json") && !k.contains(".z"))
        .collect()
}

#[test]
fn planetary_computer_build_signs_every_request_and_renews_expired_tokens() {
    let dir = scratch_dir("planetary");
    let collection = e2e_manifest()["collection"].as_str().expect("collection").to_string();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // Tokens state a 60 s life (so the client's clock-based renewal alone would not renew
    // them in this build) but are refused after 15 file requests (the build makes about 80).
    let gate = SasGate { stated_lifetime: Duration::from_secs(60), budget: 15 };
    let server = rt
        .block_on(ArchiveServer::start_with_sas(e2e_dir(), relative_items(), Vec::new(), gate))
        .expect("archive server");
    let url = server.url();

    // The stand-in refuses what Azure would refuse.
    let probe = relative_items()[0]["assets"]["red"]["href"].as_str().expect("href").to_string();
    let status = |u: &str| -> u16 {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-r", "0-15", u])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
    };
    assert_eq!(status(&format!("{url}/files/{probe}")), 403, "no token");
    assert_eq!(status(&format!("{url}/files/{probe}?sig=forged")), 403, "a forged token");
    let before = server.sas_stats().expect("stats");
    assert_eq!((before.unsigned, before.forged), (1, 1), "{before:?}");

    let signed = dir.join("signed.zarr");
    let mut args = e2e_items_build_args(&signed, Path::new("unused"), &["--workers", "2", "--quiet"]);
    let at = args.iter().position(|a| a == "--items").expect("--items");
    args.splice(
        at..at + 2,
        [
            "--catalog".to_string(),
            "planetary-computer".into(),
            "--stac-url".into(),
            url.clone(),
            "--sas-token-url".into(),
            format!("{url}/token"),
        ],
    );
    eocube_build_ok(&args);
    let stats = server.sas_stats().expect("stats");
    println!("stand-in: {stats:?}");
    assert_eq!(stats.unsigned, before.unsigned, "every COG request carried a token");
    assert_eq!(stats.forged, before.forged, "and only tokens the API issued");
    let issued = stats.tokens.get(&collection).copied().unwrap_or(0);
    assert!(issued >= 3, "tokens expired mid-build and were renewed: {stats:?}");
    assert!(stats.spent >= 1, "requests with an expired token were refused, then sent again: {stats:?}");
    assert!(stats.signed > 2 * gate.budget, "the build made enough requests to spend tokens: {stats:?}");
    rt.block_on(server.shutdown());

    // The same scenes, read from disk unsigned: the same chunks.
    let plain = dir.join("plain.zarr");
    let items = e2e_dir().join("items-local.json");
    eocube_build_ok(&e2e_items_build_args(&plain, &items, &["--workers", "2", "--quiet"]));
    let (want, got) = (chunks(&plain), chunks(&signed));
    assert!(!want.is_empty(), "the reference cube has chunks");
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    assert!(want == got, "the signed build's chunks differ from the unsigned build's");
}

#[test]
fn a_dead_token_api_fails_the_build_before_anything_is_written() {
    let dir = scratch_dir("planetary-dead-token");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    // an archive server without a SAS gate: /token/... is a 404
    let server = rt.block_on(ArchiveServer::start(e2e_dir(), relative_items(), Vec::new())).expect("archive server");
    let url = server.url();
    let out = dir.join("cube.zarr");
    let mut args = e2e_items_build_args(&out, Path::new("unused"), &["--quiet"]);
    let at = args.iter().position(|a| a == "--items").expect("--items");
    args.splice(
        at..at + 2,
        [
            "--catalog".to_string(),
            "planetary-computer".into(),
            "--stac-url".into(),
            url.clone(),
            "--sas-token-url".into(),
            format!("{url}/token"),
        ],
    );
    let res = run_eocube(&args);
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("--sas-token-url") && stderr.contains("cannot get a SAS token"), "{stderr}");
    assert!(!out.exists(), "nothing written");
    rt.block_on(server.shutdown());
}
