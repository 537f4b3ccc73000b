//! `eocube build --collection landsat-c2-l2` end to end, offline: the synthetic archive's
//! Landsat mode (`eocube_synth::landsat`: Landsat 8, 9 and 7 scenes with `QA_PIXEL` bits and
//! confidence pairs, SLC-off gap stripes, scale 0.0000275 and offset -0.2) served by the test
//! kit's archive server as a STAC API, built by the real CLI on the archive's 30 m lattice, read
//! back with xarray, and compared with the archive's known truth on every pixel.
//!
//! Run with `scripts/test.sh --test landsat`; needs only the project's venv (xarray).

mod common;

use std::path::Path;

use common::*;
use eocube_synth::landsat::{self, LandsatSpec};
use eocube_synth::server::ArchiveServer;

/// Opens the cube with xarray (CF decoding off), checks its CF attributes and writes the raw
/// values of `var` (time, y, x, band) to argv[3]; prints the grid's first x and y centres.
const READ: &str = r#"
import sys, json
import xarray as xr
ds = xr.open_zarr(sys.argv[1], consolidated=True, mask_and_scale=False)
v = ds[sys.argv[2]]
assert v.dims == ("time", "y", "x", "band"), v.dims
assert str(v.dtype) == "uint16", v.dtype
v.values.astype("<u2").tofile(sys.argv[3])
print(json.dumps({
    "x0": float(ds.x[0]), "y0": float(ds.y[0]), "shape": list(v.shape),
    "scale_factor": v.attrs["scale_factor"], "add_offset": v.attrs["add_offset"],
    "times": [str(t)[:10] for t in ds.time.values], "bands": [str(b) for b in ds.band.values],
}))
"#;

/// Writes the raw values of the index variable argv[2] (time, y, x) to argv[3] and prints its
/// CF attributes.
const READ_INDEX: &str = r#"
import sys, json
import xarray as xr
ds = xr.open_zarr(sys.argv[1], consolidated=True, mask_and_scale=False)
v = ds[sys.argv[2]]
assert v.dims == ("time", "y", "x"), v.dims
assert str(v.dtype) == "uint16", v.dtype
v.values.astype("<u2").tofile(sys.argv[3])
print(json.dumps({"scale_factor": v.attrs["scale_factor"], "add_offset": v.attrs["add_offset"]}))
"#;

/// The NDVI formula of a Landsat cube (Landsat has `nir08`, no `nir`).
const NDVI: &str = "ndvi=(nir08-red)/(nir08+red)";

fn build_args(spec: &LandsatSpec, url: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let b = spec.bbox;
    let mut args: Vec<String> = ["build", "--bbox"].map(String::from).to_vec();
    args.extend([b.west, b.south, b.east, b.north].map(|v| v.to_string()));
    args.extend(
        [
            "--start",
            &spec.start.to_string(),
            "--end",
            &spec.end.to_string(),
            "--collection",
            landsat::COLLECTION,
            "--stac-url",
            url,
            "--crs",
            &format!("EPSG:{}", spec.epsg()),
            "--resolution",
            "30",
            "--bands",
            "red,nir08",
            "--resampling",
            "nearest",
            "--chunk-size",
            "128",
            "--variable",
            "sr",
            "--quiet",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--out".to_string(), out.display().to_string()]);
    args
}

#[test]
fn a_landsat_build_equals_the_archives_truth_on_every_pixel() {
    let dir = scratch_dir("landsat");
    let spec = LandsatSpec::demo();
    let archive = landsat::generate(&spec, &dir.join("archive")).expect("generating the Landsat archive");
    let ids: Vec<&str> = archive.items.iter().filter_map(|i| i["id"].as_str()).collect();
    for prefix in ["LC08", "LC09", "LE07"] {
        assert!(ids.iter().any(|id| id.starts_with(prefix)), "the archive has {prefix} scenes: {ids:?}");
    }
    println!("archive: {} scenes, {} files, {} bytes", archive.scenes, archive.files, archive.bytes);
    // The mask has work to do: some scenes are cloudy (their clouds are bright, so a cube that
    // kept them would not equal the surface).
    let cloudy =
        archive.items.iter().filter(|i| i["properties"]["eo:cloud_cover"].as_f64().unwrap_or(0.0) > 10.0).count();
    assert!(cloudy >= 3, "{cloudy} scenes with more than 10 % cloud");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let server = rt
        .block_on(ArchiveServer::start(archive.dir.clone(), archive.items.clone(), Vec::new()))
        .expect("archive server");
    let out = dir.join("cube.zarr");
    eocube_build_ok(&build_args(&spec, &server.url(), &out, &["--workers", "2", "--index", NDVI]));

    // A Sentinel-2 mask on a Landsat cube is refused before anything is written, naming the fix.
    let refused = dir.join("refused.zarr");
    let res = run_eocube(&build_args(&spec, &server.url(), &refused, &["--mask", "4,5,6"]));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && !refused.exists(), "{stderr}");
    assert!(stderr.contains("Sentinel-2 SCL classes") && stderr.contains("QA_PIXEL flags"), "{stderr}");
    rt.block_on(server.shutdown());

    let raw = out.with_extension("bin");
    let meta = run_python(READ, &[&out.display().to_string(), "sr", &raw.display().to_string()], "reading the cube");
    println!("{meta}");
    let meta: serde_json::Value = serde_json::from_str(meta.trim()).expect("metadata JSON");
    assert_eq!(meta["scale_factor"], serde_json::json!(0.0000275));
    assert_eq!(meta["add_offset"], serde_json::json!(-0.2));
    assert_eq!(meta["bands"], serde_json::json!(["red", "nir08"]));
    assert_eq!(meta["times"], serde_json::json!(["2023-06-01", "2023-07-01"]));
    let shape: Vec<usize> =
        meta["shape"].as_array().expect("shape").iter().map(|v| v.as_u64().unwrap_or(0) as usize).collect();
    let (ny, nx) = (shape[1], shape[2]);
    let x0 = meta["x0"].as_f64().expect("x0");
    let y0 = meta["y0"].as_f64().expect("y0");
    let (col0, row0) = ((x0 / 30.0 - 0.5).round() as i64, (-y0 / 30.0 - 0.5).round() as i64);
    assert!((x0 - (col0 as f64 + 0.5) * 30.0).abs() < 1e-6, "the cube is on the archive's lattice: x0 {x0}");

    let got = read_le_u16(&raw);
    let want = landsat::expected_cube(&spec, (col0, row0), (ny, nx), &[(2023, 6), (2023, 7)], &["red", "nir08"])
        .expect("expected cube");
    assert_eq!(got.len(), want.len());
    let valid = want.iter().filter(|&&v| v != 0).count();
    println!("{} values, {valid} with a valid observation, {} fill", want.len(), want.len() - valid);
    assert!(valid > want.len() / 2 && valid < want.len(), "the truth has both observed and unobserved pixels");
    let bad: Vec<String> = got
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (g, w))| g != w)
        .take(10)
        .map(|(i, (g, w))| {
            let (b, px) = (i % 2, i / 2);
            format!("t={} row={} col={} band={b}: cube {g}, truth {w}", px / (ny * nx), px / nx % ny, px % nx)
        })
        .collect();
    let differ = got.iter().zip(&want).filter(|(g, w)| g != w).count();
    assert!(bad.is_empty(), "{differ} of {} values differ from the truth; first:\n{}", want.len(), bad.join("\n"));

    // NDVI per observation on Landsat reflectance (DN * 0.0000275 - 0.2): every valid
    // observation of a pixel is its truth, so the median NDVI is the truth's NDVI.
    let raw_ndvi = out.with_extension("ndvi.bin");
    let attrs = run_python(
        READ_INDEX,
        &[&out.display().to_string(), "ndvi_median", &raw_ndvi.display().to_string()],
        "reading the NDVI variable",
    );
    let attrs: serde_json::Value = serde_json::from_str(attrs.trim()).expect("index attributes JSON");
    assert_eq!(attrs["scale_factor"], serde_json::json!(eocube::index::SCALE_FACTOR));
    assert_eq!(attrs["add_offset"], serde_json::json!(eocube::index::ADD_OFFSET));
    let ndvi = read_le_u16(&raw_ndvi);
    assert_eq!(ndvi.len(), want.len() / 2);
    let reflectance = |dn: u16| (f64::from(dn) * 0.0000275 - 0.2) as f32;
    let mut checked = 0;
    for (px, &got) in ndvi.iter().enumerate() {
        let (red, nir) = (want[px * 2], want[px * 2 + 1]);
        let expected = if red == 0 || nir == 0 {
            0
        } else {
            let (r, n) = (reflectance(red), reflectance(nir));
            if n + r == 0.0 { 0 } else { eocube::index::encode((n - r) / (n + r)) }
        };
        assert!(
            got.abs_diff(expected) <= 1,
            "pixel {px}: ndvi_median {got}, truth's NDVI {expected} (red {red}, nir08 {nir})"
        );
        checked += usize::from(expected != 0);
    }
    println!("ndvi_median: {checked} values equal the truth's NDVI (within 1 DN of 1e-4)");
    assert!(checked > ndvi.len() / 2, "{checked} of {} pixels have an NDVI", ndvi.len());

    // `eocube serve` reads the cube's own scale and offset: its summary states them and a
    // point's values are the truth as Landsat reflectance.
    let listening = rt
        .block_on(async {
            let cubes = eocube::serve::cube_args(&[format!("landsat={}", out.display())])?;
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            eocube::serve::Server::open(cubes, eocube::serve::ServeOptions { addr, ..Default::default() })
                .await?
                .bind()
                .await
        })
        .expect("serving the cube");
    let base = format!("http://{}", listening.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(listening.serve_until(async move {
        let _ = stopped.await;
    }));
    let get = |path: &str| -> serde_json::Value {
        let out = std::process::Command::new("curl").args(["-sf", &format!("{base}{path}")]).output().expect("curl");
        assert!(out.status.success(), "GET {path}: {}", out.status);
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let summary = get("/cubes/landsat");
    assert_eq!((summary["scale_factor"].as_f64(), summary["add_offset"].as_f64()), (Some(0.0000275), Some(-0.2)));
    let (r, c) = (ny / 2, nx / 3);
    let to_lonlat = eocube::grid::Transformer::new(
        &eocube::grid::Crs::from_epsg(spec.epsg()).expect("crs"),
        &eocube::grid::Crs::wgs84(),
    );
    let (lon, lat) = to_lonlat.transform(x0 + c as f64 * 30.0, y0 - r as f64 * 30.0).expect("lon/lat");
    let point = get(&format!("/cubes/landsat/point/{lon},{lat}"));
    assert_eq!((point["row"].as_u64(), point["col"].as_u64()), (Some(r as u64), Some(c as u64)), "{point}");
    for t in 0..2 {
        let dn = want[((t * ny + r) * nx + c) * 2];
        let shown = &point["series"][t]["values"]["red"];
        if dn == 0 {
            assert!(shown.is_null(), "{point}");
        } else {
            let refl = f64::from(dn) * 0.0000275 - 0.2;
            assert!((shown.as_f64().unwrap_or(f64::NAN) - refl).abs() < 1e-5, "t={t}: {shown} vs {refl}");
        }
    }
    let _ = stop.send(());
    let _ = rt.block_on(serving);
    let _ = std::fs::remove_dir_all(&dir);
}
