//! Decode and warp throughput for one 1200 x 1200 chunk (1/3600 degree, EPSG:4326) from a
//! full-size Sentinel-2-like band (10980 x 10980, 1024-px tiles, DEFLATE + predictor 2).
//!
//! Run: `cargo bench --bench core` (generates the band with scripts/fixtures.py on first use),
//! or `cargo bench --bench core -- PATH_OR_URL` for another COG.
//! Also the median reducer over one band of such a chunk. Reports the median of several
//! repetitions; nothing here is asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eocube::cog::{FetchConfig, Fetcher, RasterData};
use eocube::grid::{Bbox, Crs, GeoBox, Transformer};
use eocube::warp::{
    PixelMap, Resampling, SamplePlan, Sampling, SourceImage, choose_overview, source_pixels_per_target_pixel,
    source_window, warp_with_map,
};

const REPS: usize = 7;
const CHUNK: usize = 1200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn default_band() -> Result<String, String> {
    // The workspace root (this crate is crates/eocube), where .venv and scripts/ are.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target/eocube-bench");
    let path = dir.join("full_10980_u16.tif");
    if !path.exists() {
        eprintln!("generating {} with GDAL (once; about 10 s)", path.display());
        let python = root.join(".venv/bin/python");
        let status = std::process::Command::new(&python)
            .arg(root.join("scripts/fixtures.py"))
            .arg("--full-size")
            .arg(&dir)
            .status()
            .map_err(|e| format!("cannot run {}: {e}; run scripts/setup.sh first", python.display()))?;
        if !status.success() || !path.exists() {
            return Err(format!("scripts/fixtures.py --full-size {} failed", dir.display()));
        }
    }
    Ok(path.to_string_lossy().into_owned())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let href = match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(h) => h,
        None => default_band()?,
    };
    let fetcher = Fetcher::new(FetchConfig::from_env());
    let cog = fetcher.open(&href).await.map_err(|e| e.to_string())?;
    let full = cog.geobox(0).ok_or("no level 0")?;

    // A chunk of the default grid centred on the scene.
    let (cx, cy) = full.affine.apply(full.shape.nx as f64 / 2.0, full.shape.ny as f64 / 2.0);
    let (lon, lat) = Transformer::new(&full.crs, &Crs::wgs84()).transform(cx, cy).map_err(|e| e.to_string())?;
    let r = 1.0 / 3600.0;
    let half = CHUNK as f64 * r / 2.0;
    let bbox = Bbox::new(lon - half, lat - half, lon + half, lat + half).map_err(|e| e.to_string())?;
    let mut dst = GeoBox::from_bbox(&bbox, &Crs::wgs84(), r).map_err(|e| e.to_string())?;
    dst.shape.nx = CHUNK;
    dst.shape.ny = CHUNK;
    let shrink = source_pixels_per_target_pixel(&full, &dst).map_err(|e| e.to_string())?;
    let factors: Vec<f64> = cog.levels().iter().map(|l| full.shape.nx as f64 / l.width as f64).collect();
    let chosen = choose_overview(&factors, shrink);
    println!("source: {href}");
    println!(
        "chunk: {CHUNK} x {CHUNK} px at 1/3600 degree centred on ({lon:.4}, {lat:.4}); shrink {:.2} x {:.2}",
        shrink.0, shrink.1
    );

    for level in [chosen, 0] {
        let src = cog.geobox(level).ok_or("level")?;
        let lv = &cog.levels()[level];
        let window = source_window(&src, &dst, 2).map_err(|e| e.to_string())?.ok_or("chunk outside scene")?;
        let tiles_x = ((window.col + window.width as i64 - 1) / lv.tile_width as i64
            - window.col / lv.tile_width as i64
            + 1) as usize;
        let tiles_y = ((window.row + window.height as i64 - 1) / lv.tile_height as i64
            - window.row / lv.tile_height as i64
            + 1) as usize;
        let inflated = tiles_x * tiles_y * lv.tile_width * lv.tile_height * 2;

        let (mut fetch_t, mut decode_t) = (Vec::new(), Vec::new());
        let mut compressed = 0;
        let mut requests = 0;
        let mut raster = None;
        for _ in 0..REPS {
            let t0 = Instant::now();
            let fetched = cog.fetch_window(level, window).await.map_err(|e| e.to_string())?;
            fetch_t.push(t0.elapsed());
            compressed = fetched.stats().bytes;
            requests = fetched.stats().requests;
            let t1 = Instant::now();
            raster = Some(fetched.decode().map_err(|e| e.to_string())?);
            decode_t.push(t1.elapsed());
        }
        let raster = raster.ok_or("no raster")?;
        let RasterData::U16(data) = &raster.data else { return Err("expected a uint16 band".into()) };
        let img = SourceImage { data, geobox: &raster.geobox, nodata: Some(0) };
        let (fetch_m, decode_m) = (median(fetch_t), median(decode_t));
        println!(
            "\nlevel {level}{}: window {} x {} px, {} tiles of {}x{}, {requests} requests",
            if level == chosen { " (chosen by the overview rule)" } else { " (full resolution)" },
            window.width,
            window.height,
            tiles_x * tiles_y,
            lv.tile_width,
            lv.tile_height
        );
        println!("  fetch  (local read):   {:>8.1} ms  {:>7.1} MB compressed", ms(fetch_m), compressed as f64 / 1e6);
        println!(
            "  decode (1 thread):     {:>8.1} ms  {:>7.1} MB/s inflated out, {:.1} MB/s compressed in",
            ms(decode_m),
            inflated as f64 / 1e6 / decode_m.as_secs_f64(),
            compressed as f64 / 1e6 / decode_m.as_secs_f64()
        );
        // Nearest and bilinear go through a sample plan (built once per source grid in a job and
        // shared by its scenes and bands), average through a corner map: as jobs do.
        for resampling in [Resampling::Nearest, Resampling::Bilinear, Resampling::Average] {
            let mut map_t = Vec::new();
            let mut warp_t = Vec::new();
            let mut out = vec![0u16; CHUNK * CHUNK];
            for _ in 0..REPS {
                let t0 = Instant::now();
                let (plan, map) = match resampling {
                    Resampling::Average => (
                        None,
                        Some(
                            PixelMap::new(&raster.geobox, &dst, Sampling::Corners, eocube::warp::DEFAULT_TOLERANCE)
                                .map_err(|e| e.to_string())?,
                        ),
                    ),
                    _ => (Some(SamplePlan::new(&raster.geobox, &dst).map_err(|e| e.to_string())?), None),
                };
                map_t.push(t0.elapsed());
                let t1 = Instant::now();
                match (&plan, &map, resampling) {
                    (Some(p), _, Resampling::Nearest) => p.gather(&img, 0, &mut out),
                    (Some(p), _, _) => p.bilinear(&img, 0, &mut out),
                    (None, Some(m), _) => warp_with_map(&img, m, resampling, 0, &mut out),
                    (None, None, _) => return Err("no map".into()),
                }
                .map_err(|e| e.to_string())?;
                warp_t.push(t1.elapsed());
            }
            let (mm, wm) = (median(map_t), median(warp_t));
            println!(
                "  warp {:<9} {} {:>6.1} ms + kernel {:>6.1} ms = {:>7.1} Mpixel/s ({} threads)",
                resampling.to_string(),
                if resampling == Resampling::Average { "map " } else { "plan" },
                ms(mm),
                ms(wm),
                (CHUNK * CHUNK) as f64 / 1e6 / (mm + wm).as_secs_f64(),
                rayon::current_num_threads()
            );
        }
    }
    median_figures()
}

/// The median reducer on one band of a 1200 x 1200 chunk, for the observation counts of a month
/// (a pass every 2 to 5 days), a fifth of the values fill (masked).
fn median_figures() -> Result<(), String> {
    let n = CHUNK * CHUNK;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    println!();
    for days in [6, 13] {
        let obs: Vec<Vec<u16>> = (0..days)
            .map(|_| (0..n).map(|_| if next() % 5 == 0 { 0 } else { (next() % 4000) as u16 + 1 }).collect())
            .collect();
        let views: Vec<&[u16]> = obs.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u16; n];
        let mut times = Vec::new();
        for _ in 0..REPS {
            let t0 = Instant::now();
            eocube::reduce::Reducer::Median.reduce_masked(&views, &mut out).map_err(|e| e.to_string())?;
            times.push(t0.elapsed());
        }
        let m = median(times);
        println!(
            "median of {days:>2} observations: {:>6.1} ms per band = {:>6.1} Mpixel/s ({} threads)",
            ms(m),
            n as f64 / 1e6 / m.as_secs_f64(),
            rayon::current_num_threads()
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
