//! The inflate floor of a build: the time to inflate exactly the COG tiles the build read, with
//! libdeflate on two threads (issue 12). No reader of these files can go faster than that, so the
//! build's wall time over this figure says how much is left to win.
//!
//! Run: `cargo bench -p eocube --bench inflate_floor -- ACCESS_LOG ARCHIVE_ROOT [--threads N]`
//! where ACCESS_LOG holds the nginx lines of one build in the project's log format
//! (`scripts/nginx.conf.in`: `addr [time] "GET /path HTTP/1.1" "bytes=a-b" status bytes`) and
//! ARCHIVE_ROOT is the directory nginx served. A tile counts when its whole byte range lies inside
//! a range the build received; requests from offset 0 are header reads and are left out (GDAL
//! puts the smallest overviews right after the header, where a header read may cover them without
//! the build decoding them). Prints a summary, then one JSON line. Nothing here is asserted.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eocube::cog::{FetchConfig, Fetcher};
use rayon::prelude::*;

const REPS: usize = 5;

/// One tile to inflate: its compressed bytes and its size once inflated.
struct Tile {
    compressed: Vec<u8>,
    inflated_len: usize,
}

fn usage() -> String {
    "usage: cargo bench -p eocube --bench inflate_floor -- ACCESS_LOG ARCHIVE_ROOT [--threads N]".to_string()
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

/// The tiles of `file` wholly inside `ranges`, read from disk.
async fn tiles_of(fetcher: &Fetcher, file: &Path, ranges: Vec<Range<u64>>) -> Result<Vec<Tile>, String> {
    let href = file.to_string_lossy();
    let cog = fetcher.open(&href).await.map_err(|e| e.to_string())?;
    let merged = merge(ranges);
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let sample = cog.dtype().size();
    let mut out = Vec::new();
    for level in cog.levels() {
        let (across, down) = level.tile_grid();
        for row in 0..down {
            for col in 0..across {
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
        }
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
    while let Some(a) = args.next() {
        if a == "--threads" {
            threads = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).ok_or_else(usage)?;
        } else {
            positional.push(a);
        }
    }
    let [log, root] = positional.as_slice() else { return Err(usage()) };
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
        tiles.extend(tiles_of(&fetcher, &file, ranges).await?);
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
        "inflate floor: {} tiles from {requests} requests, {:.1} MB compressed -> {:.1} MB, {:.3} s on {threads} threads \
         ({:.0} MB/s out; median of {REPS})",
        tiles.len(),
        compressed as f64 / 1e6,
        inflated as f64 / 1e6,
        seconds,
        inflated as f64 / 1e6 / seconds.max(1e-9),
    );
    println!(
        "{{\"tiles\": {}, \"compressed_bytes\": {compressed}, \"inflated_bytes\": {inflated}, \"seconds\": {seconds:.4}, \
         \"threads\": {threads}}}",
        tiles.len()
    );
    Ok(())
}
