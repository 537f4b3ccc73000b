//! A Cloud-Optimized GeoTIFF writer (pure Rust, no GDAL): one band of uint8 or uint16, square
//! tiles, DEFLATE (zlib streams, as GDAL writes) with the horizontal predictor, GeoKeys for an
//! EPSG CRS, ModelPixelScale + ModelTiepoint, GDAL_NODATA, and internal overviews.
//!
//! Owns: encoding an in-memory image as a COG file (used by `synth` and by tests). Must not
//! touch: reading (the rest of `cog`), reprojection, or any decision about which data to write.
//!
//! Layout (GDAL's COG layout, which the reader's one-request header read relies on): the TIFF
//! header, then every IFD (full resolution first, then the overviews, finest to coarsest) with
//! its out-of-line values right after it, then the tile data, coarsest overview first and the
//! full resolution last, tiles row-major within a level. Classic little-endian TIFF, BigTIFF
//! when the file would pass 4 GB.
//!
//! Overviews halve the previous level (width `ceil(w / 2)`) until a level fits in one tile:
//! [`Resampling::Average`] is the rounded mean of the valid (non-nodata) pixels of each 2 x 2
//! block, nodata when none is valid; [`Resampling::Nearest`] takes the block's top-left pixel, so
//! overview `k` pixel `(i, j)` is full-resolution pixel `(i << k, j << k)` (categorical data such
//! as the Sentinel-2 scene classification must never be averaged).
//!
//! Memory: the caller's image, the overviews (one third of it) and the compressed tiles; tiles
//! are compressed in parallel on the rayon pool.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use eocube::grid::GeoBox;

/// Pixels of the image, row-major, `geobox.shape` rows x columns.
#[derive(Debug, Clone, Copy)]
pub enum CogData<'a> {
    U16(&'a [u16]),
    U8(&'a [u8]),
}

impl CogData<'_> {
    fn len(&self) -> usize {
        match self {
            CogData::U16(v) => v.len(),
            CogData::U8(v) => v.len(),
        }
    }
}

/// One band to write: pixels, grid, nodata.
#[derive(Debug, Clone, Copy)]
pub struct CogImage<'a> {
    pub geobox: &'a GeoBox,
    pub data: CogData<'a>,
    pub nodata: Option<f64>,
}

/// How overview pixels are made from the level above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resampling {
    /// Rounded mean of the valid pixels of each 2 x 2 block (reflectance).
    Average,
    /// The top-left pixel of each 2 x 2 block (classes).
    Nearest,
}

/// Encoding settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CogOptions {
    /// Tile edge in pixels; a multiple of 16 (TIFF requires it).
    pub tile_size: usize,
    pub overview_resampling: Resampling,
    /// libdeflate level, 1 (fast) to 12 (small).
    pub deflate_level: i32,
}

impl Default for CogOptions {
    fn default() -> Self {
        CogOptions { tile_size: 512, overview_resampling: Resampling::Average, deflate_level: 6 }
    }
}

/// What can go wrong writing a COG. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: cannot write this image as a COG: {reason}")]
    InvalidInput { path: PathBuf, reason: String },
    #[error("{path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `image` as a COG at `path` (through a temporary file in the same directory, renamed
/// when complete, so readers never see half a file). Returns the bytes written.
pub fn write_cog(path: &Path, image: &CogImage, opts: &CogOptions) -> Result<u64, WriteError> {
    let invalid = |reason: String| WriteError::InvalidInput { path: path.to_path_buf(), reason };
    let gb = image.geobox;
    let (w, h) = (gb.shape.nx, gb.shape.ny);
    if w == 0 || h == 0 || w > u32::MAX as usize || h > u32::MAX as usize {
        return Err(invalid(format!("image size {w} x {h}")));
    }
    if image.data.len() != w * h {
        return Err(invalid(format!("{} pixels for a {w} x {h} grid", image.data.len())));
    }
    let ts = opts.tile_size;
    if ts == 0 || !ts.is_multiple_of(16) || ts > 65536 {
        return Err(invalid(format!("tile size {ts}: it must be a positive multiple of 16 up to 65536")));
    }
    if !(1..=12).contains(&opts.deflate_level) {
        return Err(invalid(format!("deflate level {}: it must be 1 to 12", opts.deflate_level)));
    }
    let a = gb.affine;
    if !(a.is_rectilinear() && a.a > 0.0 && a.e < 0.0 && a.to_array().iter().all(|v| v.is_finite())) {
        return Err(invalid(format!("transform {:?} is not north-up without rotation", a.to_array())));
    }
    let epsg = u16::try_from(gb.crs.epsg()).map_err(|_| invalid(format!("EPSG code {} > 65535", gb.crs.epsg())))?;
    if let Some(nd) = image.nodata {
        let max = match image.data {
            CogData::U16(_) => f64::from(u16::MAX),
            CogData::U8(_) => f64::from(u8::MAX),
        };
        if !(nd.fract() == 0.0 && (0.0..=max).contains(&nd)) {
            return Err(invalid(format!("nodata {nd} is not a value of the data type")));
        }
    }
    let georef = Georef { epsg, geographic: gb.crs.is_geographic(), scale: (a.a, -a.e), origin: (a.c, a.f) };
    let encoded = match image.data {
        CogData::U16(v) => encode_levels(v, w, h, image.nodata.map(|n| n as u16), opts),
        CogData::U8(v) => encode_levels(v, w, h, image.nodata.map(|n| n as u8), opts),
    }
    .map_err(invalid)?;
    let bits = match image.data {
        CogData::U16(_) => 16,
        CogData::U8(_) => 8,
    };
    write_file(path, &encoded, bits, ts, &georef, image.nodata)
}

/// A pixel type we write.
trait Px: Copy + Send + Sync + PartialEq + Default + 'static {
    fn to_u32(self) -> u32;
    fn from_u32(v: u32) -> Self;
    fn wrapping_sub(self, o: Self) -> Self;
    fn to_le_bytes_into(v: &[Self], out: &mut Vec<u8>);
}

impl Px for u16 {
    fn to_u32(self) -> u32 {
        u32::from(self)
    }
    fn from_u32(v: u32) -> Self {
        v as u16
    }
    fn wrapping_sub(self, o: Self) -> Self {
        u16::wrapping_sub(self, o)
    }
    fn to_le_bytes_into(v: &[Self], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(bytemuck::cast_slice(v));
        if cfg!(target_endian = "big") {
            for pair in out.chunks_exact_mut(2) {
                pair.swap(0, 1);
            }
        }
    }
}

impl Px for u8 {
    fn to_u32(self) -> u32 {
        u32::from(self)
    }
    fn from_u32(v: u32) -> Self {
        v as u8
    }
    fn wrapping_sub(self, o: Self) -> Self {
        u8::wrapping_sub(self, o)
    }
    fn to_le_bytes_into(v: &[Self], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(v);
    }
}

/// One level's compressed tiles, row-major.
struct EncodedLevel {
    width: usize,
    height: usize,
    tiles: Vec<Vec<u8>>,
}

/// The overviews of `data` (2 x 2 reduction of the previous level) until one fits in a tile.
fn overviews<T: Px>(
    data: &[T],
    w: usize,
    h: usize,
    nodata: Option<T>,
    opts: &CogOptions,
) -> Vec<(Vec<T>, usize, usize)> {
    let mut out: Vec<(Vec<T>, usize, usize)> = Vec::new();
    let (mut pw, mut ph) = (w, h);
    while pw.max(ph) > opts.tile_size {
        let (nw, nh) = (pw.div_ceil(2), ph.div_ceil(2));
        let prev: &[T] = out.last().map_or(data, |(v, _, _)| v.as_slice());
        let mut next = vec![T::default(); nw * nh];
        next.par_chunks_mut(nw).enumerate().for_each(|(r, row)| {
            for (c, px) in row.iter_mut().enumerate() {
                *px = reduce_block(prev, pw, ph, r * 2, c * 2, nodata, opts.overview_resampling);
            }
        });
        out.push((next, nw, nh));
        (pw, ph) = (nw, nh);
    }
    out
}

#[inline]
fn reduce_block<T: Px>(src: &[T], w: usize, h: usize, r: usize, c: usize, nodata: Option<T>, how: Resampling) -> T {
    match how {
        Resampling::Nearest => src[r * w + c],
        Resampling::Average => {
            let (mut sum, mut n) = (0u32, 0u32);
            for rr in r..(r + 2).min(h) {
                for cc in c..(c + 2).min(w) {
                    let v = src[rr * w + cc];
                    if Some(v) != nodata {
                        sum += v.to_u32();
                        n += 1;
                    }
                }
            }
            match (sum + n / 2).checked_div(n) {
                Some(mean) => T::from_u32(mean),
                None => nodata.unwrap_or_default(),
            }
        }
    }
}

fn encode_levels<T: Px>(
    data: &[T],
    w: usize,
    h: usize,
    nodata: Option<T>,
    opts: &CogOptions,
) -> Result<Vec<EncodedLevel>, String> {
    let ovr = overviews(data, w, h, nodata, opts);
    let mut levels: Vec<(&[T], usize, usize)> = vec![(data, w, h)];
    levels.extend(ovr.iter().map(|(v, w, h)| (v.as_slice(), *w, *h)));
    let ts = opts.tile_size;
    // Every tile of every level in one parallel pass: the small levels alone would leave cores idle.
    let jobs: Vec<(usize, usize, usize)> = levels
        .iter()
        .enumerate()
        .flat_map(|(l, &(_, lw, lh))| {
            let across = lw.div_ceil(ts);
            (0..lh.div_ceil(ts) * across).map(move |i| (l, i / across, i % across))
        })
        .collect();
    let level = libdeflater::CompressionLvl::new(opts.deflate_level)
        .map_err(|e| format!("deflate level {}: {e:?}", opts.deflate_level))?;
    let fill = nodata.unwrap_or_default();
    let compressed: Vec<Vec<u8>> = jobs
        .par_iter()
        .map_init(
            || (libdeflater::Compressor::new(level), Vec::new(), Vec::new()),
            |(comp, raw, tile), &(l, ty, tx)| {
                let (src, lw, lh) = levels[l];
                encode_tile(comp, raw, tile, src, lw, lh, ty, tx, ts, fill)
            },
        )
        .collect::<Result<_, _>>()?;
    let mut it = compressed.into_iter();
    Ok(levels
        .iter()
        .map(|&(_, lw, lh)| {
            let n = lw.div_ceil(ts) * lh.div_ceil(ts);
            EncodedLevel { width: lw, height: lh, tiles: it.by_ref().take(n).collect() }
        })
        .collect())
}

/// Cuts tile `(ty, tx)` (padded with `fill` past the image edge, as GDAL does), applies the
/// horizontal predictor and zlib-compresses it.
#[allow(clippy::too_many_arguments)]
fn encode_tile<T: Px>(
    comp: &mut libdeflater::Compressor,
    raw: &mut Vec<u8>,
    tile: &mut Vec<T>,
    src: &[T],
    w: usize,
    h: usize,
    ty: usize,
    tx: usize,
    ts: usize,
    fill: T,
) -> Result<Vec<u8>, String> {
    tile.clear();
    tile.resize(ts * ts, fill);
    let (r0, c0) = (ty * ts, tx * ts);
    let cw = ts.min(w - c0);
    for r in 0..ts.min(h - r0) {
        let s = (r0 + r) * w + c0;
        tile[r * ts..r * ts + cw].copy_from_slice(&src[s..s + cw]);
    }
    // horizontal differencing in place, then the samples as little-endian bytes
    for row in tile.chunks_exact_mut(ts) {
        for c in (1..ts).rev() {
            row[c] = row[c].wrapping_sub(row[c - 1]);
        }
    }
    T::to_le_bytes_into(tile, raw);
    let mut out = vec![0u8; comp.zlib_compress_bound(raw.len())];
    let n = comp.zlib_compress(raw, &mut out).map_err(|e| format!("deflate of tile ({ty}, {tx}) failed: {e:?}"))?;
    out.truncate(n);
    Ok(out)
}

struct Georef {
    epsg: u16,
    geographic: bool,
    scale: (f64, f64),
    origin: (f64, f64),
}

// TIFF field types
const SHORT: u16 = 3;
const LONG: u16 = 4;
const ASCII: u16 = 2;
const DOUBLE: u16 = 12;
const LONG8: u16 = 16;

/// One IFD entry: tag, type, count and the value bytes (little-endian).
struct Entry {
    tag: u16,
    typ: u16,
    count: u64,
    bytes: Vec<u8>,
}

fn shorts(tag: u16, v: &[u16]) -> Entry {
    Entry { tag, typ: SHORT, count: v.len() as u64, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn long(tag: u16, v: u32) -> Entry {
    Entry { tag, typ: LONG, count: 1, bytes: v.to_le_bytes().to_vec() }
}

fn doubles(tag: u16, v: &[f64]) -> Entry {
    Entry { tag, typ: DOUBLE, count: v.len() as u64, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn offsets(tag: u16, v: &[u64], bigtiff: bool) -> Entry {
    if bigtiff {
        Entry { tag, typ: LONG8, count: v.len() as u64, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    } else {
        // Callers check the file stays below 4 GB before choosing classic TIFF.
        Entry {
            tag,
            typ: LONG,
            count: v.len() as u64,
            bytes: v.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect(),
        }
    }
}

/// The entries of one level's IFD, sorted by tag as TIFF requires.
#[allow(clippy::too_many_arguments)]
fn ifd_entries(
    level: usize,
    lv: &EncodedLevel,
    bits: u16,
    ts: usize,
    georef: &Georef,
    nodata: Option<&str>,
    tile_offsets: &[u64],
    bigtiff: bool,
) -> Vec<Entry> {
    let counts: Vec<u64> = lv.tiles.iter().map(|t| t.len() as u64).collect();
    let mut e = vec![
        long(254, u32::from(level > 0)), // NewSubfileType: 1 = reduced-resolution image
        long(256, lv.width as u32),
        long(257, lv.height as u32),
        shorts(258, &[bits]),
        shorts(259, &[8]),    // Compression: DEFLATE (zlib)
        shorts(262, &[1]),    // Photometric: min-is-black
        shorts(277, &[1]),    // SamplesPerPixel
        shorts(284, &[1]),    // PlanarConfiguration: contiguous
        shorts(317, &[2]),    // Predictor: horizontal differencing
        long(322, ts as u32), // TileWidth
        long(323, ts as u32), // TileLength
        offsets(324, tile_offsets, bigtiff),
        offsets(325, &counts, bigtiff),
        shorts(339, &[1]), // SampleFormat: unsigned integer
    ];
    if level == 0 {
        e.push(doubles(33550, &[georef.scale.0, georef.scale.1, 0.0]));
        e.push(doubles(33922, &[0.0, 0.0, 0.0, georef.origin.0, georef.origin.1, 0.0]));
        // GeoKeyDirectory: version 1.1.0, then (key, location 0 = inline, count 1, value).
        let keys: Vec<[u16; 4]> = if georef.geographic {
            vec![
                [1024, 0, 1, 2], // GTModelType: geographic
                [1025, 0, 1, 1], // GTRasterType: PixelIsArea
                [2048, 0, 1, georef.epsg],
                [2054, 0, 1, 9102], // GeogAngularUnits: degree
            ]
        } else {
            vec![
                [1024, 0, 1, 1], // GTModelType: projected
                [1025, 0, 1, 1],
                [3072, 0, 1, georef.epsg], // ProjectedCSType
                [3076, 0, 1, 9001],        // ProjLinearUnits: metre
            ]
        };
        let mut dir = vec![1, 1, 0, keys.len() as u16];
        dir.extend(keys.iter().flatten());
        e.push(shorts(34735, &dir));
    }
    if let Some(nd) = nodata {
        let mut b = nd.as_bytes().to_vec();
        b.push(0);
        e.push(Entry { tag: 42113, typ: ASCII, count: b.len() as u64, bytes: b });
    }
    e
}

/// Bytes of an IFD with its out-of-line values.
fn ifd_size(entries: &[Entry], bigtiff: bool) -> u64 {
    let (head, entry, next, inline) = if bigtiff { (8, 20, 8, 8) } else { (2, 12, 4, 4) };
    let extra: u64 =
        entries.iter().filter(|e| e.bytes.len() > inline).map(|e| (e.bytes.len() as u64).next_multiple_of(2)).sum();
    head + entry * entries.len() as u64 + next + extra
}

/// Serializes an IFD placed at `at` whose successor is at `next_ifd` (0 for none).
fn put_ifd(out: &mut Vec<u8>, entries: &[Entry], at: u64, next_ifd: u64, bigtiff: bool) {
    let (head, entry, next, inline) = if bigtiff { (8, 20, 8, 8) } else { (2, 12, 4, 4) };
    let mut extra_at = at + head + entry * entries.len() as u64 + next;
    let mut extra = Vec::new();
    if bigtiff {
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    } else {
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    }
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.typ.to_le_bytes());
        if bigtiff {
            out.extend_from_slice(&e.count.to_le_bytes());
        } else {
            out.extend_from_slice(&(e.count as u32).to_le_bytes());
        }
        if e.bytes.len() <= inline {
            let mut v = e.bytes.clone();
            v.resize(inline, 0);
            out.extend_from_slice(&v);
        } else {
            if bigtiff {
                out.extend_from_slice(&extra_at.to_le_bytes());
            } else {
                out.extend_from_slice(&(extra_at as u32).to_le_bytes());
            }
            extra.extend_from_slice(&e.bytes);
            if e.bytes.len() % 2 == 1 {
                extra.push(0); // values start on a word boundary
            }
            extra_at += (e.bytes.len() as u64).next_multiple_of(2);
        }
    }
    if bigtiff {
        out.extend_from_slice(&next_ifd.to_le_bytes());
    } else {
        out.extend_from_slice(&(next_ifd as u32).to_le_bytes());
    }
    out.extend_from_slice(&extra);
}

/// GDAL's spelling of a nodata value: integers without a decimal point.
fn nodata_string(v: f64) -> String {
    if v.fract() == 0.0 { format!("{}", v as i64) } else { format!("{v}") }
}

fn write_file(
    path: &Path,
    levels: &[EncodedLevel],
    bits: u16,
    ts: usize,
    georef: &Georef,
    nodata: Option<f64>,
) -> Result<u64, WriteError> {
    let nodata = nodata.map(nodata_string);
    let data_bytes: u64 = levels.iter().flat_map(|l| &l.tiles).map(|t| t.len() as u64).sum();
    // Headers are a few KB per level; leave a generous margin before switching to BigTIFF.
    let bigtiff = data_bytes + (levels.len() as u64) * (1 << 20) > u64::from(u32::MAX);
    let header_len: u64 = if bigtiff { 16 } else { 8 };
    let entries_for = |offsets: &[Vec<u64>]| -> Vec<Vec<Entry>> {
        levels
            .iter()
            .enumerate()
            .map(|(i, lv)| ifd_entries(i, lv, bits, ts, georef, nodata.as_deref(), &offsets[i], bigtiff))
            .collect()
    };
    // Pass 1 with placeholder offsets sizes the IFDs (sizes do not depend on the values).
    let zeros: Vec<Vec<u64>> = levels.iter().map(|l| vec![0; l.tiles.len()]).collect();
    let ifd_sizes: Vec<u64> = entries_for(&zeros).iter().map(|e| ifd_size(e, bigtiff)).collect();
    let mut ifd_at = Vec::with_capacity(levels.len());
    let mut pos = header_len;
    for s in &ifd_sizes {
        ifd_at.push(pos);
        pos += s;
    }
    // Tile data: coarsest level first, so a reader of the overview finds it near the header.
    let mut tile_offsets: Vec<Vec<u64>> = vec![Vec::new(); levels.len()];
    for (i, lv) in levels.iter().enumerate().rev() {
        for t in &lv.tiles {
            tile_offsets[i].push(if t.is_empty() { 0 } else { pos });
            pos += t.len() as u64;
        }
    }
    let total = pos;
    let mut head = Vec::with_capacity(ifd_at.last().copied().unwrap_or(0) as usize + 4096);
    head.extend_from_slice(b"II");
    if bigtiff {
        head.extend_from_slice(&43u16.to_le_bytes());
        head.extend_from_slice(&8u16.to_le_bytes());
        head.extend_from_slice(&0u16.to_le_bytes());
        head.extend_from_slice(&header_len.to_le_bytes());
    } else {
        head.extend_from_slice(&42u16.to_le_bytes());
        head.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    for (i, entries) in entries_for(&tile_offsets).iter().enumerate() {
        let next = ifd_at.get(i + 1).copied().unwrap_or(0);
        put_ifd(&mut head, entries, ifd_at[i], next, bigtiff);
    }
    debug_assert_eq!(head.len() as u64, ifd_at.last().copied().unwrap_or(0) + ifd_sizes.last().copied().unwrap_or(0));

    let tmp = temp_path(path);
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source: std::io::Error| WriteError::Io { path: p, action, source }
    };
    let result = (|| {
        let mut f = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io("creating", &tmp))?);
        f.write_all(&head).map_err(io("writing", &tmp))?;
        for lv in levels.iter().rev() {
            for t in &lv.tiles {
                f.write_all(t).map_err(io("writing", &tmp))?;
            }
        }
        f.into_inner().map_err(|e| io("writing", &tmp)(e.into_error()))?;
        std::fs::rename(&tmp, path).map_err(io("renaming the temporary file to", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| total)
}

/// `dir/.name.tmp-<pid>`: same directory so the rename is atomic, hidden, unique per process.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eocube::cog::{FetchConfig, Fetcher, RasterData};
    use eocube::grid::{Affine, Crs, PixelWindow, Shape};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eocube-cogwrite-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Level `k` of `data` made the way the writer documents it, by repeated 2 x 2 reduction.
    fn expected_levels<T: Px>(
        data: &[T],
        w: usize,
        h: usize,
        nd: Option<T>,
        o: &CogOptions,
    ) -> Vec<(Vec<T>, usize, usize)> {
        let mut v = vec![(data.to_vec(), w, h)];
        v.extend(overviews(data, w, h, nd, o));
        v
    }

    fn read_all(path: &Path) -> (eocube::cog::Cog, Vec<RasterData>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let cog = Fetcher::new(FetchConfig::default()).open(path.to_str().unwrap()).await.unwrap();
            let mut out = Vec::new();
            for l in cog.levels() {
                let win = PixelWindow { row: 0, col: 0, height: l.height, width: l.width };
                out.push(cog.read_window(l.index, win).await.unwrap().data);
            }
            (cog, out)
        })
    }

    #[test]
    fn u16_average_round_trips_every_level() {
        let (w, h) = (300usize, 170usize);
        let data: Vec<u16> =
            (0..w * h).map(|i| if (i / w + i % w) % 17 == 0 { 0 } else { 1000 + ((i * 7919) % 5000) as u16 }).collect();
        let crs = Crs::from_epsg(32618).unwrap();
        let gb = GeoBox::new(crs, Affine::north_up(600000.0, 4900020.0, 10.0, 10.0), Shape { ny: h, nx: w });
        let o = CogOptions { tile_size: 64, overview_resampling: Resampling::Average, deflate_level: 6 };
        let dir = scratch("u16");
        let path = dir.join("b.tif");
        let n = write_cog(&path, &CogImage { geobox: &gb, data: CogData::U16(&data), nodata: Some(0.0) }, &o).unwrap();
        assert_eq!(n, std::fs::metadata(&path).unwrap().len());
        let (cog, levels) = read_all(&path);
        assert_eq!(cog.crs().epsg(), 32618);
        assert_eq!(cog.nodata(), Some(0.0));
        assert_eq!(cog.geobox(0).unwrap(), gb);
        let exp = expected_levels(&data, w, h, Some(0), &o);
        // 300 → 150 → 75 → 38: the last fits in a 64 px tile
        assert_eq!(exp.iter().map(|l| l.1).collect::<Vec<_>>(), vec![300, 150, 75, 38]);
        assert_eq!(levels.len(), exp.len());
        for (k, (got, (want, lw, lh))) in levels.iter().zip(&exp).enumerate() {
            assert_eq!(cog.levels()[k].width, *lw);
            assert_eq!(cog.levels()[k].height, *lh);
            assert_eq!(got, &RasterData::U16(want.clone()), "level {k}");
        }
        // a block with 3 valid values and one nodata averages the 3, rounded
        assert_eq!(reduce_block(&[0u16, 10, 11, 11], 2, 2, 0, 0, Some(0), Resampling::Average), 11);
        assert_eq!(reduce_block(&[0u16, 0, 0, 0], 2, 2, 0, 0, Some(0), Resampling::Average), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn u8_nearest_takes_the_top_left_pixel_at_every_level() {
        let (w, h) = (130usize, 97usize);
        let data: Vec<u8> = (0..w * h).map(|i| ((i / w) * 3 + (i % w) * 5) as u8 % 12).collect();
        let gb = GeoBox::new(Crs::wgs84(), Affine::north_up(-72.5, 44.5, 0.001, 0.001), Shape { ny: h, nx: w });
        let o = CogOptions { tile_size: 32, overview_resampling: Resampling::Nearest, deflate_level: 1 };
        let dir = scratch("u8");
        let path = dir.join("scl.tif");
        write_cog(&path, &CogImage { geobox: &gb, data: CogData::U8(&data), nodata: None }, &o).unwrap();
        let (cog, levels) = read_all(&path);
        assert_eq!(cog.crs().epsg(), 4326);
        assert_eq!(cog.nodata(), None);
        assert_eq!(levels.len(), 4); // 130 → 65 → 33 → 17
        for (k, got) in levels.iter().enumerate() {
            let l = &cog.levels()[k];
            let want: Vec<u8> =
                (0..l.height * l.width).map(|i| data[((i / l.width) << k) * w + ((i % l.width) << k)]).collect();
            assert_eq!(got, &RasterData::U8(want), "level {k}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writing_is_deterministic_and_leaves_no_temp_file() {
        let (w, h) = (100usize, 100usize);
        let data: Vec<u16> = (0..w * h).map(|i| (i % 977) as u16).collect();
        let gb = GeoBox::new(
            Crs::from_epsg(32719).unwrap(),
            Affine::north_up(0.0, 1000.0, 10.0, 10.0),
            Shape { ny: h, nx: w },
        );
        let dir = scratch("det");
        let img = CogImage { geobox: &gb, data: CogData::U16(&data), nodata: Some(0.0) };
        let o = CogOptions { tile_size: 32, ..CogOptions::default() };
        write_cog(&dir.join("a.tif"), &img, &o).unwrap();
        write_cog(&dir.join("b.tif"), &img, &o).unwrap();
        assert_eq!(std::fs::read(dir.join("a.tif")).unwrap(), std::fs::read(dir.join("b.tif")).unwrap());
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_input_is_an_error_naming_the_path() {
        let gb = GeoBox::new(Crs::wgs84(), Affine::north_up(0.0, 1.0, 0.1, 0.1), Shape { ny: 10, nx: 10 });
        let data = vec![0u16; 99];
        let p = Path::new("/nonexistent/x.tif");
        let img = CogImage { geobox: &gb, data: CogData::U16(&data), nodata: None };
        let e = write_cog(p, &img, &CogOptions::default()).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.tif") && e.contains("99 pixels"), "{e}");
        let data = vec![0u16; 100];
        let img = CogImage { geobox: &gb, data: CogData::U16(&data), nodata: None };
        let e = write_cog(p, &img, &CogOptions { tile_size: 10, ..CogOptions::default() }).unwrap_err().to_string();
        assert!(e.contains("tile size 10"), "{e}");
        let e = write_cog(p, &img, &CogOptions::default()).unwrap_err();
        assert!(matches!(e, WriteError::Io { .. }) && e.to_string().contains("/nonexistent"), "{e}");
        let img = CogImage { geobox: &gb, data: CogData::U16(&data), nodata: Some(-1.0) };
        assert!(write_cog(p, &img, &CogOptions::default()).unwrap_err().to_string().contains("nodata -1"));
    }
}
