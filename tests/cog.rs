//! The COG reader against GDAL's truth: every manifest window read locally equals rasterio's
//! boundless read; the same windows over HTTP (nginx) and S3 (moto) equal the local read; one
//! chunk-sized window costs few requests; broken inputs give typed errors naming the href.
//!
//! Needs the environment of `scripts/test.sh` (fixtures, nginx, moto).

mod common;

use std::time::{Duration, Instant};

use eocube::cog::{Cog, CogError, DataType, FetchConfig, Fetcher, RasterData};
use eocube::grid::PixelWindow;
use serde_json::Value;

fn local_href(c: &Value) -> String {
    common::fixture(c["path"].as_str().expect("path")).to_string_lossy().into_owned()
}

fn rel(c: &Value) -> &str {
    c["path"].as_str().expect("path")
}

fn s3_config() -> FetchConfig {
    let s3 = common::s3();
    FetchConfig {
        s3_endpoint: Some(s3.endpoint),
        s3_region: Some(s3.region),
        s3_allow_http: Some(true),
        ..FetchConfig::default()
    }
}

fn as_f64(d: &RasterData) -> Vec<f64> {
    match d {
        RasterData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        RasterData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        RasterData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        RasterData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
    }
}

/// Exact equality, NaN equal to NaN.
fn same(a: &[f64], b: &[f64]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(usize::MAX);
    }
    a.iter().zip(b).position(|(x, y)| !(x == y || (x.is_nan() && y.is_nan())))
}

fn window(w: &common::WindowCase) -> PixelWindow {
    PixelWindow { row: w.row, col: w.col, height: w.height, width: w.width }
}

fn dtype_name(d: DataType) -> &'static str {
    match d {
        DataType::U8 => "uint8",
        DataType::U16 => "uint16",
        DataType::I16 => "int16",
        DataType::F32 => "float32",
    }
}

fn check_header(c: &Value, cog: &Cog) {
    let name = c["name"].as_str().unwrap_or("?");
    assert_eq!(u64::from(cog.crs().epsg()), c["epsg"].as_u64().expect("epsg"), "{name}: epsg");
    assert_eq!(dtype_name(cog.dtype()), c["dtype"].as_str().expect("dtype"), "{name}: dtype");
    assert_eq!(cog.nodata(), c["nodata"].as_f64(), "{name}: nodata");
    let l0 = &cog.levels()[0];
    assert_eq!((l0.width as u64, l0.height as u64), (c["width"].as_u64().unwrap(), c["height"].as_u64().unwrap()));
    let t = common::affine6(&c["transform"]);
    let a = l0.affine.to_array();
    for k in 0..6 {
        assert!((a[k] - t[k]).abs() < 1e-6, "{name}: affine {a:?} vs {t:?}");
    }
    let ovs = c["overviews"].as_array().expect("overviews");
    assert_eq!(cog.levels().len(), ovs.len() + 1, "{name}: levels");
    for (k, f) in ovs.iter().enumerate() {
        // GDAL derives each overview from the previous one, so sizes may differ by a pixel from
        // ceil(size / factor); the level's affine follows the actual size.
        let f = f.as_u64().expect("factor") as usize;
        let l = &cog.levels()[k + 1];
        assert!(l.width.abs_diff(l0.width.div_ceil(f)) <= 1, "{name}: overview {f} width {}", l.width);
        assert!(l.height.abs_diff(l0.height.div_ceil(f)) <= 1, "{name}: overview {f} height {}", l.height);
        let want = l0.affine.scaled(l0.width as f64 / l.width as f64, l0.height as f64 / l.height as f64);
        assert_eq!(l.affine, want, "{name}: overview {f} affine");
    }
    match c["tile"].as_u64() {
        Some(t) => assert_eq!((l0.tile_width as u64, l0.tile_height as u64), (t, t), "{name}: tile"),
        None => assert!(l0.is_stripped(), "{name}: stripped"),
    }
}

#[tokio::test]
async fn every_manifest_window_read_locally_equals_rasterio() {
    let fetcher = Fetcher::new(FetchConfig::default());
    let mut checked = 0;
    for c in common::cogs() {
        let name = c["name"].as_str().unwrap_or("?");
        let cog = fetcher.open(&local_href(c)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        check_header(c, &cog);
        let header = cog.stats();
        for w in common::windows(c) {
            let r = cog.read_window(w.level, window(&w)).await.unwrap_or_else(|e| panic!("{name} {w:?}: {e}"));
            let truth = common::read_raw(&w.file, c["dtype"].as_str().expect("dtype"));
            let got = as_f64(&r.data);
            if let Some(i) = same(&got, &truth) {
                panic!("{name} {w:?}: first difference at {i}: {:?} vs {:?}", got.get(i), truth.get(i));
            }
            let gb = cog.geobox(w.level).expect("level").window(&window(&w));
            assert_eq!(r.geobox, gb, "{name}: window geobox");
            checked += 1;
        }
        println!("{name}: header {} request(s) {} bytes; total {:?}", header.requests, header.bytes, cog.stats());
        assert!(header.requests <= 2, "{name}: header took {} requests", header.requests);
    }
    println!("{checked} windows equal to rasterio");
    assert!(checked >= 50, "only {checked} windows checked");
}

#[tokio::test]
async fn http_and_s3_reads_equal_local_reads() {
    let local = Fetcher::new(FetchConfig::default());
    let http = Fetcher::new(FetchConfig::default());
    let s3env = common::s3();
    let s3 = Fetcher::new(s3_config());
    let mut checked = 0;
    for c in common::cogs() {
        let name = c["name"].as_str().unwrap_or("?");
        let a = local.open(&local_href(c)).await.unwrap_or_else(|e| panic!("{name} local: {e}"));
        let b = http.open(&common::http_url(rel(c))).await.unwrap_or_else(|e| panic!("{name} http: {e}"));
        let d = s3.open(&s3env.url(rel(c))).await.unwrap_or_else(|e| panic!("{name} s3: {e}"));
        assert_eq!(b.levels().len(), a.levels().len());
        assert_eq!(d.levels().len(), a.levels().len());
        for w in common::windows(c) {
            let win = window(&w);
            let ra = a.read_window(w.level, win).await.unwrap_or_else(|e| panic!("{name} local {w:?}: {e}"));
            let rb = b.read_window(w.level, win).await.unwrap_or_else(|e| panic!("{name} http {w:?}: {e}"));
            let rd = d.read_window(w.level, win).await.unwrap_or_else(|e| panic!("{name} s3 {w:?}: {e}"));
            assert_eq!(ra.data.to_le_bytes(), rb.data.to_le_bytes(), "{name} {w:?}: http != local");
            assert_eq!(ra.data.to_le_bytes(), rd.data.to_le_bytes(), "{name} {w:?}: s3 != local");
            assert_eq!(ra.geobox, rb.geobox);
            checked += 1;
        }
        // Same requests whatever the transport.
        assert_eq!(a.stats().requests, b.stats().requests, "{name}");
        assert_eq!(a.stats().requests, d.stats().requests, "{name}");
        println!("{name}: local {:?} http {:?} s3 {:?}", a.stats(), b.stats(), d.stats());
    }
    println!("{checked} windows equal over local, HTTP and S3");
}

#[tokio::test]
async fn one_chunk_window_costs_one_request_per_tile_row() {
    // The largest 1024-tiled COG of the fixtures (3300 x 3300: 4 x 4 tiles, overviews), so a chunk
    // window touches 4 of its 16 tiles.
    let c = common::cog("u16_18n_deflate_p2_t1024");
    let size = std::fs::metadata(common::fixture(rel(c))).expect("fixture").len();
    // 1200 x 1176 pixels from column 1024: tiles (0,1), (0,2), (1,1), (1,2), two tile rows.
    let win = PixelWindow { row: 24, col: 1024, height: 1200, width: 1176 };
    let tile_rows = 2;
    let s3env = common::s3();
    println!("window {win:?}: 4 tiles in 2 tile rows");
    for (transport, fetcher, href) in [
        ("local", Fetcher::new(FetchConfig::default()), local_href(c)),
        ("http", Fetcher::new(FetchConfig::default()), common::http_url(rel(c))),
        ("s3", Fetcher::new(s3_config()), s3env.url(rel(c))),
    ] {
        let cog = fetcher.open(&href).await.unwrap_or_else(|e| panic!("{transport}: {e}"));
        let header = cog.stats();
        let l0 = &cog.levels()[0];
        let touched: u64 = [(0, 1), (0, 2), (1, 1), (1, 2)]
            .iter()
            .map(|&(r, c)| l0.tile_byte_range(r, c).map(|b| b.end - b.start).expect("tile"))
            .sum();
        let f = cog.fetch_window(0, win).await.unwrap_or_else(|e| panic!("{transport}: {e}"));
        let w = f.stats();
        let t0 = Instant::now();
        let raster = f.decode().unwrap_or_else(|e| panic!("{transport}: {e}"));
        println!("{transport}: decoded 4 tiles into {} px in {:?}", raster.data.len(), t0.elapsed());
        assert_eq!(raster.data.len(), 1200 * 1176);
        let total = cog.stats();
        println!(
            "{transport}: header {} req / {} B; window {} req / {} B; total {} req / {} B of a {size} B file",
            header.requests, header.bytes, w.requests, w.bytes, total.requests, total.bytes
        );
        assert!(header.requests <= 2, "{transport}: header {header:?}");
        assert!(w.requests <= tile_rows, "{transport}: window {w:?}");
        // Only the touched tiles, plus gaps of at most `coalesce_gap` merged between them.
        let gap = fetcher.config().coalesce_gap;
        assert!(w.bytes >= touched && w.bytes <= touched + gap * (tile_rows - 1), "{transport}: {w:?} vs {touched}");
        assert_eq!(total.requests, header.requests + w.requests);
        assert!(total.bytes < size / 2, "{transport}: fetched {} of {size} bytes", total.bytes);
    }
}

fn assert_error(e: &CogError, href: &str, words: &[&str]) {
    let msg = e.to_string();
    assert!(msg.contains(href), "message does not name {href}: {msg}");
    assert_eq!(e.href(), href);
    for w in words {
        assert!(msg.to_lowercase().contains(&w.to_lowercase()), "message lacks {w:?}: {msg}");
    }
    println!("{msg}");
}

#[tokio::test]
async fn broken_files_give_typed_errors() {
    let fetcher = Fetcher::new(FetchConfig::default());
    let open = |kind: &str| {
        let href = common::bad(kind).to_string_lossy().into_owned();
        let f = fetcher.clone();
        async move { (f.open(&href).await, href) }
    };
    let (r, href) = open("truncated").await;
    let e = r.expect_err("truncated");
    assert!(matches!(e, CogError::Truncated { .. }), "{e:?}");
    assert_error(&e, &href, &["truncated", "ends at byte"]);

    let (r, href) = open("garbage").await;
    let e = r.expect_err("garbage");
    assert!(matches!(e, CogError::NotTiff { .. }), "{e:?}");
    assert_error(&e, &href, &["not a TIFF"]);

    let (r, href) = open("offset_past_end").await;
    let e = r.expect_err("offset_past_end");
    assert!(matches!(e, CogError::TileOutOfBounds { level: 0, tile: 0, .. }), "{e:?}");
    assert_error(&e, &href, &["past the end of the file"]);

    let (r, href) = open("unsupported_compression").await;
    let e = r.expect_err("unsupported_compression");
    assert!(matches!(e, CogError::Unsupported { .. }), "{e:?}");
    assert_error(&e, &href, &["compression 65000"]);

    let (r, href) = open("no_geokeys").await;
    let e = r.expect_err("no_geokeys");
    assert!(matches!(e, CogError::Georef { .. }), "{e:?}");
    assert_error(&e, &href, &["GeoKeyDirectory"]);

    // The same over HTTP: the header problem is found without fetching the file.
    let href = common::http_url(common::manifest()["bad"]["offset_past_end"].as_str().expect("bad path"));
    let cog = Fetcher::new(FetchConfig::default()).open(&href).await;
    assert!(matches!(cog, Err(CogError::TileOutOfBounds { .. })), "{cog:?}");
}

#[tokio::test]
async fn http_404_and_persistent_500() {
    let fetcher = Fetcher::new(FetchConfig::default());
    let href = common::http_url("cogs/does-not-exist.tif");
    let e = fetcher.open(&href).await.expect_err("404");
    assert!(matches!(e, CogError::NotFound { .. }), "{e:?}");
    assert_error(&e, &href, &["not found", "404"]);

    // Bounded retries with short backoffs: the persistent 500 fails fast.
    let cfg = FetchConfig {
        max_retries: 2,
        init_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        retry_timeout: Duration::from_secs(5),
        ..FetchConfig::default()
    };
    let href = format!("{}/status/500", common::http_base());
    let t0 = Instant::now();
    let e = Fetcher::new(cfg).open(&href).await.expect_err("500");
    let took = t0.elapsed();
    assert!(matches!(e, CogError::Fetch { .. }), "{e:?}");
    assert!(e.is_transient());
    assert_error(&e, &href, &["500"]);
    println!("persistent 500 failed after {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test]
async fn s3_missing_bucket_and_key() {
    let fetcher = Fetcher::new(s3_config());
    let href = "s3://no-such-bucket-eocube/cogs/x.tif";
    let e = fetcher.open(href).await.expect_err("missing bucket");
    assert!(matches!(e, CogError::NotFound { .. }), "{e:?}");
    assert_error(&e, href, &["not found"]);
    let href = common::s3().url("cogs/does-not-exist.tif");
    let e = fetcher.open(&href).await.expect_err("missing key");
    assert!(matches!(e, CogError::NotFound { .. }), "{e:?}");
    assert_error(&e, &href, &["not found"]);
}

#[tokio::test]
async fn local_missing_file_and_bad_scheme() {
    let fetcher = Fetcher::new(FetchConfig::default());
    let href = common::fixture("cogs/does-not-exist.tif").to_string_lossy().into_owned();
    let e = fetcher.open(&href).await.expect_err("missing");
    assert!(matches!(e, CogError::NotFound { .. }), "{e:?}");
    assert_error(&e, &href, &["not found"]);
    let e = fetcher.open("gopher://x/y.tif").await.expect_err("scheme");
    assert!(matches!(e, CogError::InvalidHref { .. }), "{e:?}");
    assert_error(&e, "gopher://x/y.tif", &["scheme"]);
}
