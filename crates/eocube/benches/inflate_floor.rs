//! The inflate floor of a build: the time to inflate exactly the COG tiles the build read, with
//! libdeflate on two threads (issue 12). No reader of these files can go faster than that, so the
//! build's wall time over this figure says how much is left to win.
//!
//! Run: `cargo bench -p eocube --bench inflate_floor -- ACCESS_LOG ARCHIVE_ROOT [--threads N]
//! [--grid W S E N --chunk-size C [--margin M]]`
//! where ACCESS_LOG holds the nginx lines of one build in the project's log format
//! (`scripts/nginx.conf.in`: `addr [time] "GET /path HTTP/1.1" "bytes=a-b" status bytes`) and
//! ARCHIVE_ROOT is the directory nginx served. A tile counts when its whole byte range lies inside
//! a range the build received; requests from offset 0 are header reads and are left out (GDAL
//! puts the smallest overviews right after the header, where a header read may cover them without
//! the build decoding them). Prints a summary, then one JSON line. Nothing here is asserted.
//!
//! Tiles received are more than tiles decoded: a reader coalesces nearby ranges into one request
//! (eocube merges ranges up to 1 MB apart), so the gaps bring tiles nobody inflates. With
//! `--grid` (the cube's bbox at 1/3600 degree in EPSG:4326 and its chunk size) the floor counts
//! instead, per chunk, the tiles of the window a job decodes (the overview chosen as odc-stac does,
//! the footprint grown by `--margin` source pixels, 1 for nearest), as often as jobs decode them:
//! the stricter floor.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eocube::cog::{Cog, FetchConfig, Fetcher};
use eocube::grid::{Bbox, Crs, GeoBox};
use eocube::warp::{choose_overview, source_pixels_per_target_pixel, source_window};
use rayon::prelude::*;

const REPS: usize = 5;

/// One tile to inflate: its compressed bytes and its size once inflated.
struct Tile {
    compressed: Vec<u8>,
    inflated_len: usize,
}

fn usage() -> String {
    "usage: cargo bench -p eocube --bench inflate_floor -- ACCESS_LOG ARCHIVE_ROOT [--threads N] \
     [--grid W S E N --chunk-size C [--margin M]]"
        .to_string()
}

/// The chunks of a cube at 1/3600 degree in EPSG:4326: the work grids whose windows jobs decode.
struct Grid {
    chunks: Vec<GeoBox>,
    margin: usize,
}

impl Grid {
    fn new(bbox: [f64; 4], chunk_size: usize, margin: usize) -> Result<Grid, String> {
        let [w, s, e, n] = bbox;
        let bbox = Bbox::new(w, s, e, n).map_err(|e| e.to_string())?;
        let cube = GeoBox::from_bbox(&bbox, &Crs::wgs84(), 1.0 / 3600.0).map_err(|e| e.to_string())?;
        let chunks = cube.chunks(chunk_size).map_err(|e| e.to_string())?.iter().map(|c| c.geobox).collect();
        Ok(Grid { chunks, margin })
    }

    /// Per chunk, the `(level, tile row, tile col)` a job decodes from `cog`, as `job::fetch_band`
    /// chooses them.
    fn tiles(&self, cog: &Cog) -> Result<Vec<(usize, usize, usize)>, String> {
        let full = cog.geobox(0).ok_or("a COG without an image")?;
        let base = full.shape.nx as f64;
        let factors: Vec<f64> = cog.levels().iter().map(|l| base / l.width.max(1) as f64).collect();
        let mut out = Vec::new();
        for chunk in &self.chunks {
            let shrink = source_pixels_per_target_pixel(&full, chunk).map_err(|e| e.to_string())?;
            let level = choose_overview(&factors, shrink);
            let (Some(lv), Some(level_box)) = (cog.levels().get(level), cog.geobox(level)) else { continue };
            let Some(w) = source_window(&level_box, chunk, self.margin).map_err(|e| e.to_string())? else { continue };
            let Some(c) = w.clip(level_box.shape) else { continue };
            let (r0, c0) = (c.row as usize, c.col as usize);
            for ty in r0 / lv.tile_height..=(r0 + c.height - 1) / lv.tile_height {
                for tx in c0 / lv.tile_width..=(c0 + c.width - 1) / lv.tile_width {
                    out.push((level, ty, tx));
                }
            }
        }
        Ok(out)
    }
}

/// `(path, range)` of every 200/206 answer in `log`; a line without a range is the whole file.
fn parse_log(log: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for (i, line) in log.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || format!("access log line {}: not in the project's nginx format: {line}", i + 1);
        let quoted: Vec<&str> = line.split('"').collect();
        // addr [time] | GET /p HTTP/1.1 | ' ' | bytes=a-b | ' 206 N'
        if quoted.len() < 5 {
            return Err(bad());
        }
        let mut request = quoted[1].split(' ');
        let (Some(method), Some(path)) = (request.next(), request.next()) else { return Err(bad()) };
        let status = quoted[4].split_whitespace().next().ok_or_else(bad)?;
        if method != "GET" || !(status == "200" || status == "206") {
            continue;
        }
        let range = (quoted[3] != "-").then(|| quoted[3].to_string());
        out.push((path.split('?').next().unwrap_or(path).to_string(), range));
    }
    Ok(out)
}

/// The byte ranges of a `Range` header value (`bytes=a-b,c-,-n`) in a file of `size` bytes.
fn parse_ranges(header: &str, size: u64) -> Result<Vec<Range<u64>>, String> {
    let spec = header.strip_prefix("bytes=").ok_or_else(|| format!("not a byte range: {header}"))?;
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').ok_or_else(|| format!("not a byte range: {header}"))?;
        let num = |s: &str| s.parse::<u64>().map_err(|_| format!("not a byte range: {header}"));
        let r = match (a, b) {
            ("", n) => size.saturating_sub(num(n)?)..size,
            (a, "") => num(a)?..size,
            (a, b) => num(a)?..num(b)?.saturating_add(1).min(size),
        };
        out.push(r);
    }
    Ok(out)
}

/// Sorted, merged ranges; `contains` asks whether one range holds all of `r`.
fn merge(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn contains(merged: &[Range<u64>], r: &Range<u64>) -> bool {
    let i = merged.partition_point(|m| m.start <= r.start);
    i > 0 && merged[i - 1].end >= r.end
}

/// The tiles of `file` wholly inside `ranges`, read from disk; with a `grid`, only those a job
/// decodes, once per job that decodes them.
async fn tiles_of(
    fetcher: &Fetcher,
    file: &Path,
    ranges: Vec<Range<u64>>,
    grid: Option<&Grid>,
) -> Result<Vec<Tile>, String> {
    let href = file.to_string_lossy();
    let cog = fetcher.open(&href).await.map_err(|e| e.to_string())?;
    let merged = merge(ranges);
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let sample = cog.dtype().size();
    let wanted: Vec<(usize, usize, usize)> = match grid {
        Some(g) => g.tiles(&cog)?,
        None => {
            let mut all = Vec::new();
            for (k, level) in cog.levels().iter().enumerate() {
                let (across, down) = level.tile_grid();
                all.extend((0..down).flat_map(|row| (0..across).map(move |col| (k, row, col))));
            }
            all
        }
    };
    let mut out = Vec::new();
    for (k, row, col) in wanted {
        let Some(level) = cog.levels().get(k) else { continue };
        let Some(r) = level.tile_byte_range(row, col) else { continue };
        if r.is_empty() || !contains(&merged, &r) {
            continue;
        }
        let compressed = bytes
            .get(r.start as usize..r.end as usize)
            .ok_or_else(|| format!("{}: tile past the end of the file", file.display()))?
            .to_vec();
        out.push(Tile { compressed, inflated_len: level.tile_width * level.tile_height * sample });
    }
    Ok(out)
}

/// Inflates every tile once on `pool`; the time it took.
fn inflate_all(pool: &rayon::ThreadPool, tiles: &[Tile]) -> Result<Duration, String> {
    let t0 = Instant::now();
    pool.install(|| {
        tiles.par_iter().try_for_each_init(
            || (libdeflater::Decompressor::new(), Vec::new()),
            |(inflater, buf), tile| {
                buf.resize(tile.inflated_len, 0);
                match inflater.zlib_decompress(&tile.compressed, buf) {
                    Ok(n) if n == tile.inflated_len => Ok(()),
                    Ok(n) => Err(format!("a tile inflated to {n} bytes, expected {}", tile.inflated_len)),
                    Err(e) => Err(format!("a tile does not inflate as zlib: {e:?} (not a DEFLATE COG?)")),
                }
            },
        )
    })?;
    Ok(t0.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut positional = Vec::new();
    let mut threads = 2;
    let (mut bbox, mut chunk_size, mut margin) = (None, None, 1);
    while let Some(a) = args.next() {
        let mut number = || args.next().and_then(|n| n.parse::<f64>().ok()).ok_or_else(usage);
        if a == "--threads" {
            threads = Some(number()?).filter(|&n| n >= 1.0).ok_or_else(usage)? as usize;
        } else if a == "--grid" {
            bbox = Some([number()?, number()?, number()?, number()?]);
        } else if a == "--chunk-size" {
            chunk_size = Some(number()? as usize);
        } else if a == "--margin" {
            margin = number()? as usize;
        } else {
            positional.push(a);
        }
    }
    let [log, root] = positional.as_slice() else { return Err(usage()) };
    let grid = match (bbox, chunk_size) {
        (Some(bbox), Some(cs)) => Some(Grid::new(bbox, cs, margin)?),
        (None, None) => None,
        _ => return Err(usage()),
    };
    let root = PathBuf::from(root);
    let log = std::fs::read_to_string(log).map_err(|e| format!("{log}: {e}"))?;

    // Per file, the ranges received (header reads left out).
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut requests = 0usize;
    for (path, range) in parse_log(&log)? {
        requests += 1;
        by_file.entry(path).or_default().extend(range);
    }
    let fetcher = Fetcher::new(FetchConfig::default());
    let mut tiles = Vec::new();
    for (path, headers) in by_file {
        let file = root.join(path.trim_start_matches('/'));
        let size = std::fs::metadata(&file).map_err(|e| format!("{}: {e}", file.display()))?.len();
        let mut ranges = Vec::new();
        for h in &headers {
            ranges.extend(parse_ranges(h, size)?.into_iter().filter(|r| r.start > 0));
        }
        if headers.is_empty() {
            ranges.push(0..size);
        }
        tiles.extend(tiles_of(&fetcher, &file, ranges, grid.as_ref()).await?);
    }
    let compressed: usize = tiles.iter().map(|t| t.compressed.len()).sum();
    let inflated: usize = tiles.iter().map(|t| t.inflated_len).sum();

    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
    inflate_all(&pool, &tiles)?; // warm the page cache and the allocator
    let mut times = Vec::new();
    for _ in 0..REPS {
        times.push(inflate_all(&pool, &tiles)?);
    }
    let seconds = median(times).as_secs_f64();
    println!(
        "inflate floor ({}): {} tiles from {requests} requests, {:.1} MB compressed -> {:.1} MB, {:.3} s on {threads} threads \
         ({:.0} MB/s out; median of {REPS})",
        if grid.is_some() { "tiles jobs decode" } else { "tiles received" },
        tiles.len(),
        compressed as f64 / 1e6,
        inflated as f64 / 1e6,
        seconds,
        inflated as f64 / 1e6 / seconds.max(1e-9),
    );
    println!(
        "{{\"tiles\": {}, \"compressed_bytes\": {compressed}, \"inflated_bytes\": {inflated}, \"seconds\": {seconds:.4}, \
         \"threads\": {threads}, \"decoded_only\": {}}}",
        tiles.len(),
        grid.is_some()
    );
    Ok(())
}
