//! eocube's warp against GDAL's own answers (`rasterio.warp.reproject`, tolerance 0), for chunks
//! of an EPSG:4326 1/3600-degree grid across scene edges and the UTM 18/19 zone boundary.
//! Fixtures and references come from `scripts/fixtures.py` (see docs/testing.md).

mod common;

use eocube::cog::{FetchConfig, Fetcher, RasterData};
use eocube::grid::{Affine, Crs, GeoBox, Shape};
use eocube::warp::{Resampling, SourceImage, source_window, warp_into};
use serde_json::Value;

struct Agreement {
    name: String,
    resampling: Resampling,
    total: usize,
    identical: usize,
    within_1: usize,
    valid_ref: usize,
    valid_ours: usize,
    max_diff: u16,
}

fn affine(v: &Value) -> Affine {
    let t: Vec<f64> = v.as_array().expect("transform array").iter().map(|x| x.as_f64().expect("number")).collect();
    Affine::new(t[0], t[1], t[2], t[3], t[4], t[5])
}

async fn run_case(fetcher: &Fetcher, case: &Value) -> Agreement {
    let manifest = common::manifest();
    let name = case["name"].as_str().expect("case name").to_string();
    let src_name = case["src"].as_str().expect("case src");
    let cog_entry = manifest["cogs"]
        .as_array()
        .expect("cogs")
        .iter()
        .find(|c| c["name"] == src_name)
        .unwrap_or_else(|| panic!("case {name}: source {src_name} not in manifest"));
    let path = common::fixtures_dir().join(cog_entry["path"].as_str().expect("path"));
    let resampling: Resampling = case["resampling"].as_str().expect("resampling").parse().expect("known resampling");
    let shape = &case["dst_shape"];
    let dst = GeoBox::new(
        Crs::from_epsg(case["dst_epsg"].as_u64().expect("dst_epsg") as u32).expect("dst crs"),
        affine(&case["dst_transform"]),
        Shape { ny: shape[0].as_u64().expect("rows") as usize, nx: shape[1].as_u64().expect("cols") as usize },
    );

    let cog = fetcher.open(path.to_str().expect("utf-8 path")).await.expect("open source cog");
    let full = cog.geobox(0).expect("level 0");
    let mut ours = vec![0u16; dst.shape.len()];
    if let Some(window) = source_window(&full, &dst, resampling.margin()).expect("source window") {
        let raster = cog.read_window(0, window).await.expect("read window");
        let RasterData::U16(data) = &raster.data else { panic!("case {name}: expected uint16 source") };
        let src = SourceImage { data, geobox: &raster.geobox, nodata: Some(0) };
        warp_into(&src, &dst, resampling, 0, &mut ours).expect("warp");
    }
    let reference = common::read_le_u16(common::fixtures_dir().join(case["file"].as_str().expect("file")));
    assert_eq!(reference.len(), ours.len(), "case {name}: reference size");

    let mut a = Agreement {
        name,
        resampling,
        total: ours.len(),
        identical: 0,
        within_1: 0,
        valid_ref: 0,
        valid_ours: 0,
        max_diff: 0,
    };
    for (&o, &r) in ours.iter().zip(&reference) {
        let d = o.abs_diff(r);
        a.identical += usize::from(d == 0);
        a.within_1 += usize::from(d <= 1);
        a.valid_ref += usize::from(r != 0);
        a.valid_ours += usize::from(o != 0);
        a.max_diff = a.max_diff.max(d);
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warp_agrees_with_gdal() {
    let manifest = common::manifest();
    let cases = manifest["warp_cases"].as_array().expect("warp_cases");
    assert!(cases.len() >= 6, "expected several warp reference cases, got {}", cases.len());
    let fetcher = Fetcher::new(FetchConfig::default());
    let mut failures = Vec::new();
    let mut sums: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    println!(
        "{:<40} {:>9} {:>9} {:>10} {:>11} {:>8}",
        "case", "pixels", "valid", "identical", "within 1 DN", "max diff"
    );
    for case in cases {
        let a = run_case(&fetcher, case).await;
        let pct = |n: usize| 100.0 * n as f64 / a.total as f64;
        println!(
            "{:<40} {:>9} {:>9} {:>9.3}% {:>10.3}% {:>8}",
            format!("{} ({})", a.name, a.resampling),
            a.total,
            a.valid_ref,
            pct(a.identical),
            pct(a.within_1),
            a.max_diff
        );
        let s = sums.entry(a.resampling.to_string()).or_default();
        *s = (s.0 + a.total, s.1 + a.identical, s.2 + a.within_1);
        // A case that compares nodata with nodata proves nothing.
        if a.valid_ref < a.total / 10 {
            failures.push(format!("{}: only {} of {} reference pixels hold data", a.name, a.valid_ref, a.total));
        }
        let ok = match a.resampling {
            Resampling::Nearest => pct(a.identical) >= 99.9,
            _ => pct(a.within_1) >= 99.0,
        };
        if !ok {
            failures.push(format!(
                "{}: {:.3}% identical, {:.3}% within 1 DN",
                a.name,
                pct(a.identical),
                pct(a.within_1)
            ));
        }
    }
    for (r, (total, identical, within)) in &sums {
        println!(
            "overall {r}: {total} pixels, {:.4}% identical, {:.4}% within 1 DN",
            100.0 * *identical as f64 / *total as f64,
            100.0 * *within as f64 / *total as f64
        );
    }
    assert!(failures.is_empty(), "warp disagrees with GDAL:\n{}", failures.join("\n"));
}
