//! Cloud-Optimized GeoTIFF windows from local files, `http(s)://` and `s3://`.
//!
//! Owns: reading COG headers (every IFD: full resolution and overviews), their georeferencing
//! (EPSG from GeoKeys, affine from ModelTransformation or tiepoint + pixel scale, PixelIsPoint),
//! nodata (GDAL_NODATA), and pixel windows at a chosen level, fetching only the tiles a window
//! touches with nearby byte ranges coalesced. Must not touch: resampling or reprojection (that
//! is `warp`), the choice of level for a target grid, or job-level retries.
//!
//! ```text
//! Fetcher::open(href) ─▶ Cog (header: 1-2 requests; none when the process read it lately)
//! Cog::fetch_window(level, window) ─▶ FetchedWindow (I/O only: coalesced range requests)
//! FetchedWindow::decode() ─▶ Raster (CPU only: inflate / LZW / ZSTD, predictor, copy)
//! Cog::read_window = fetch_window + decode
//! ```
//!
//! Supported: TIFF and BigTIFF, either byte order; tiled or stripped (strips are read like
//! full-width tiles, only those the window touches); one sample per pixel (Sentinel-2 has one
//! band per file; anything else is refused with [`CogError::Unsupported`]); uint8, uint16,
//! int16, float32; compression none, DEFLATE (8 and 32946), LZW, ZSTD; predictors 1, 2 (integers)
//! and 3 (float32). Sparse tiles (byte count 0) read as the fill value.
//!
//! Request counting: [`RequestStats::requests`] counts the range requests this module issues
//! (header reads included); object_store's internal retries of one request are not counted.
//!
//! Headers: a [`Fetcher`] keeps the parsed headers it read, by href, up to
//! [`HEADER_CACHE_BYTES`] (oldest dropped first): neighbouring chunks of a build read the same
//! scenes, and each would otherwise pay a header request per band. An href is taken to name
//! one immutable object for the life of the process, as a STAC asset does.

mod decode;
mod prefix;
mod source;
pub(crate) mod tiff;

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::fifo::Fifo;
use crate::grid::{Affine, Crs, GeoBox, PixelWindow, Shape};
use decode::{Codec, Compression, Decoders, Placement, Predictor, Sample};
pub use source::FetchConfig;
use source::{Counters, Location, Stores};

/// Pixel types we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    U8,
    U16,
    I16,
    F32,
}

impl DataType {
    pub fn size(self) -> usize {
        match self {
            DataType::U8 => 1,
            DataType::U16 | DataType::I16 => 2,
            DataType::F32 => 4,
        }
    }
}

/// Pixels of one window, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum RasterData {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    F32(Vec<f32>),
}

impl RasterData {
    pub fn dtype(&self) -> DataType {
        match self {
            RasterData::U8(_) => DataType::U8,
            RasterData::U16(_) => DataType::U16,
            RasterData::I16(_) => DataType::I16,
            RasterData::F32(_) => DataType::F32,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RasterData::U8(v) => v.len(),
            RasterData::U16(v) => v.len(),
            RasterData::I16(v) => v.len(),
            RasterData::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pixels as little-endian bytes (the layout of rasterio's `.tobytes()` on x86).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            RasterData::U8(v) => v.clone(),
            RasterData::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            RasterData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            RasterData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// A window of pixels with its grid: `geobox.shape` rows x cols of `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    pub data: RasterData,
    pub geobox: GeoBox,
    pub nodata: Option<f64>,
}

/// One resolution level of a COG: `[0]` is full resolution, then the overviews in file order.
#[derive(Debug, Clone)]
pub struct Level {
    pub index: usize,
    pub width: usize,
    pub height: usize,
    /// Tile size; for a stripped file, image width x rows per strip.
    pub tile_width: usize,
    pub tile_height: usize,
    pub affine: Affine,
    tiles_across: usize,
    offsets: Arc<[u64]>,
    counts: Arc<[u64]>,
    codec: Codec,
    stripped: bool,
}

impl Level {
    pub fn shape(&self) -> Shape {
        Shape { ny: self.height, nx: self.width }
    }

    /// Tiles across and down (strips: 1 across).
    pub fn tile_grid(&self) -> (usize, usize) {
        (self.tiles_across, self.offsets.len() / self.tiles_across.max(1))
    }

    /// Bytes of tile `(row, col)` in the file (`None` outside the grid; empty for a sparse tile).
    pub fn tile_byte_range(&self, row: usize, col: usize) -> Option<Range<u64>> {
        if col >= self.tiles_across {
            return None;
        }
        let i = row.checked_mul(self.tiles_across)?.checked_add(col)?;
        let (o, c) = (*self.offsets.get(i)?, *self.counts.get(i)?);
        Some(o..o.saturating_add(c))
    }

    /// True when the file stores this level in strips rather than tiles.
    pub fn is_stripped(&self) -> bool {
        self.stripped
    }
}

/// Requests issued and bytes received.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestStats {
    pub requests: u64,
    pub bytes: u64,
}

/// What can go wrong reading a COG. Every variant names the href.
#[derive(Debug, thiserror::Error)]
pub enum CogError {
    #[error(
        "{href}: cannot read this location: {reason}; give a local path, file://, http(s)://, s3://bucket/key, gs://bucket/key or az://container/key"
    )]
    InvalidHref { href: String, reason: String },
    #[error("{href}: not found: {reason}; check the path or URL, the bucket name and that you may read it")]
    NotFound { href: String, reason: String },
    #[error(
        "{href}: request failed: {reason}; transient errors were already retried, so check the server or network and retry the job later"
    )]
    Fetch { href: String, reason: String },
    #[error("{href}: truncated file: {reason}; the file is incomplete, fetch or write it again")]
    Truncated { href: String, reason: String },
    #[error("{href}: not a TIFF file: {reason}; check that the href points at a GeoTIFF")]
    NotTiff { href: String, reason: String },
    #[error("{href}: malformed TIFF: {reason}; the file is corrupt or was not written by a TIFF writer")]
    Malformed { href: String, reason: String },
    #[error(
        "{href}: level {level} tile {tile} lies at bytes {offset}..{end}, past the end of the file ({file_size} bytes); the file is truncated or corrupt"
    )]
    TileOutOfBounds { href: String, level: usize, tile: usize, offset: u64, end: u64, file_size: u64 },
    #[error(
        "{href}: unsupported {what}; eocube reads single-band uint8/uint16/int16/float32 TIFFs compressed with none, DEFLATE, LZW or ZSTD (re-encode with e.g. `gdal_translate -of COG -co COMPRESS=DEFLATE`)"
    )]
    Unsupported { href: String, what: String },
    #[error(
        "{href}: cannot georeference: {reason}; eocube needs a GeoTIFF with an EPSG CRS and a pixel-to-CRS transform (e.g. `gdal_translate -a_srs EPSG:32633`)"
    )]
    Georef { href: String, reason: String },
    #[error("{href}: level {level} tile {tile}: cannot decode: {reason}; the tile data is corrupt")]
    Decode { href: String, level: usize, tile: usize, reason: String },
    #[error("{href}: level {level} does not exist; this file has {levels} levels (0 = full resolution)")]
    NoSuchLevel { href: String, level: usize, levels: usize },
}

impl CogError {
    /// The href the error is about.
    pub fn href(&self) -> &str {
        match self {
            CogError::InvalidHref { href, .. }
            | CogError::NotFound { href, .. }
            | CogError::Fetch { href, .. }
            | CogError::Truncated { href, .. }
            | CogError::NotTiff { href, .. }
            | CogError::Malformed { href, .. }
            | CogError::TileOutOfBounds { href, .. }
            | CogError::Unsupported { href, .. }
            | CogError::Georef { href, .. }
            | CogError::Decode { href, .. }
            | CogError::NoSuchLevel { href, .. } => href,
        }
    }

    /// True for failures that may go away on a later attempt (network, server); false for
    /// problems with the file itself.
    pub fn is_transient(&self) -> bool {
        matches!(self, CogError::Fetch { .. })
    }
}

/// Bytes of parsed headers a [`Fetcher`] keeps: a Sentinel-2 band's header is 3-5 KB parsed,
/// so this holds those of several thousand scene bands.
pub const HEADER_CACHE_BYTES: usize = 32 << 20;

/// Opens COGs. Cheap to clone; clones share the store cache (and so their connections) and the
/// headers read.
#[derive(Clone)]
pub struct Fetcher {
    stores: Arc<Stores>,
    headers: Arc<Fifo<Arc<str>, KnownHeader>>,
}

/// A parsed header and the size of its file, as a [`Fetcher`] keeps them by href.
type KnownHeader = (Arc<CogHeader>, u64);

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("config", &self.stores.cfg).finish_non_exhaustive()
    }
}

impl Fetcher {
    pub fn new(cfg: FetchConfig) -> Self {
        Fetcher { stores: Arc::new(Stores::new(cfg)), headers: Arc::new(Fifo::new(HEADER_CACHE_BYTES)) }
    }

    pub fn config(&self) -> &FetchConfig {
        &self.stores.cfg
    }

    /// Reads and validates the header of `href`: 1 request when the header fits in
    /// `FetchConfig::header_bytes`, a few more otherwise, none when this fetcher read it lately.
    pub async fn open(&self, href: &str) -> Result<Cog, CogError> {
        let loc = self.stores.resolve(href)?;
        let counters = Arc::new(Counters::default());
        let cfg = &self.stores.cfg;
        let cog = |header: Arc<CogHeader>, file_size: u64, loc: Location, counters: Arc<Counters>| Cog {
            href: Arc::from(href),
            loc,
            file_size,
            header,
            counters,
            gap: cfg.coalesce_gap,
            concurrency: cfg.max_concurrent_requests,
        };
        if let Some((header, file_size)) = self.headers.get(href) {
            return Ok(cog(header, file_size, loc, counters));
        }
        let (first, file_size) = source::fetch_head(&loc, href, cfg.header_bytes).await?;
        counters.add(1, first.len() as u64);
        let mut buf = first;
        let raw = loop {
            match tiff::parse(&buf, file_size) {
                Ok(tiff::Parse::Done(raw)) => break raw,
                Ok(tiff::Parse::NeedMore { end }) => {
                    // Grow at least geometrically so a header spread over the file costs few requests.
                    let have = buf.len() as u64;
                    let until = end.max(have.saturating_mul(2)).min(file_size);
                    if until <= have {
                        return Err(CogError::Truncated {
                            href: href.into(),
                            reason: format!("the header needs byte {end} but the file has {file_size}"),
                        });
                    }
                    let more = source::fetch_range(&loc, href, have..until).await?;
                    counters.add(1, more.len() as u64);
                    let mut joined = BytesMut::with_capacity(until as usize);
                    joined.extend_from_slice(&buf);
                    joined.extend_from_slice(&more);
                    buf = joined.freeze();
                }
                Err(e) => return Err(problem(href, e)),
            }
        };
        let header = Arc::new(build_header(href, file_size, &raw)?);
        self.headers.put(Arc::from(href), (header.clone(), file_size), header.heap_bytes() + href.len());
        Ok(cog(header, file_size, loc, counters))
    }
}

fn problem(href: &str, e: tiff::TiffError) -> CogError {
    let (href, reason) = (href.to_string(), e.to_string());
    match e.kind() {
        tiff::Kind::NotTiff => CogError::NotTiff { href, reason },
        tiff::Kind::Truncated => CogError::Truncated { href, reason },
        tiff::Kind::Malformed => CogError::Malformed { href, reason },
    }
}

/// What a COG header says: CRS, data type, nodata and levels.
#[derive(Debug, Clone)]
pub struct CogHeader {
    pub crs: Crs,
    pub dtype: DataType,
    pub nodata: Option<f64>,
    pub levels: Vec<Level>,
    pub bigtiff: bool,
    pub big_endian: bool,
}

impl CogHeader {
    /// About what the parsed header holds in memory (the tile tables dominate).
    fn heap_bytes(&self) -> usize {
        let per_level = std::mem::size_of::<Level>() + 64;
        self.levels.iter().map(|l| per_level + (l.offsets.len() + l.counts.len()) * 8).sum::<usize>() + 256
    }
}

/// Parses a whole TIFF held in memory (the fuzz target's entry point; `Fetcher::open` runs the
/// same checks on the bytes it fetched).
pub fn parse_header_bytes(bytes: &[u8]) -> Result<CogHeader, CogError> {
    let href = "<memory>";
    let size = bytes.len() as u64;
    match tiff::parse(bytes, size).map_err(|e| problem(href, e))? {
        tiff::Parse::Done(raw) => build_header(href, size, &raw),
        tiff::Parse::NeedMore { end } => {
            Err(CogError::Truncated { href: href.into(), reason: format!("the header needs byte {end}") })
        }
    }
}

fn build_header(href: &str, file_size: u64, raw: &tiff::Header) -> Result<CogHeader, CogError> {
    let malformed = |reason: String| CogError::Malformed { href: href.into(), reason };
    let Some(ifd0) = raw.ifds.first() else {
        return Err(malformed("no image in the file".into()));
    };
    let (crs, affine0) = georef(href, ifd0)?;
    let nodata = match ifd0.gdal_nodata.as_deref() {
        Some(s) => Some(
            s.trim()
                .trim_end_matches('\0')
                .parse::<f64>()
                .map_err(|_| malformed(format!("GDAL_NODATA {s:?} is not a number")))?,
        ),
        None => None,
    };
    let (full_w, full_h) = (ifd0.image_width as usize, ifd0.image_height as usize);
    let mut levels = vec![level(href, 0, ifd0, raw.big_endian, file_size, affine0, (full_w, full_h))?];
    for ifd in raw.ifds.iter().skip(1) {
        // Reduced-resolution images that are not masks are the overviews.
        if !ifd.is_reduced() || ifd.is_mask() {
            continue;
        }
        let lv = level(href, levels.len(), ifd, raw.big_endian, file_size, affine0, (full_w, full_h))?;
        if lv.codec.dtype != levels[0].codec.dtype {
            return Err(malformed(format!(
                "overview {} has data type {:?}, the full resolution image {:?}",
                lv.index, lv.codec.dtype, levels[0].codec.dtype
            )));
        }
        levels.push(lv);
    }
    let dtype = levels[0].codec.dtype;
    Ok(CogHeader { crs, dtype, nodata, levels, bigtiff: raw.bigtiff, big_endian: raw.big_endian })
}

/// Largest tile (or strip) we agree to decode, in bytes: a 10980 x 10980 uint16 single strip is
/// 241 MB, a corrupt header claiming more must not make us allocate it.
const MAX_TILE_BYTES: usize = 1 << 30;

#[allow(clippy::too_many_arguments)]
fn level(
    href: &str,
    index: usize,
    ifd: &tiff::Ifd,
    big_endian: bool,
    file_size: u64,
    affine0: Affine,
    (full_w, full_h): (usize, usize),
) -> Result<Level, CogError> {
    let malformed =
        |reason: String| CogError::Malformed { href: href.into(), reason: format!("IFD {index}: {reason}") };
    let unsupported = |what: String| CogError::Unsupported { href: href.into(), what };
    let (width, height) = (ifd.image_width as usize, ifd.image_height as usize);
    if width == 0 || height == 0 {
        return Err(malformed(format!("image size {width} x {height}")));
    }
    if width > full_w || height > full_h {
        return Err(malformed(format!("overview {width} x {height} larger than the image {full_w} x {full_h}")));
    }
    let spp = ifd.samples_per_pixel;
    if spp != 1 {
        let planes = if ifd.planar_configuration == 2 { " in separate planes" } else { "" };
        return Err(unsupported(format!("{spp} samples per pixel{planes} (only single-band files are read)")));
    }
    let (b, format) = (ifd.bits_per_sample, ifd.sample_format);
    let dtype = match (format, b) {
        (1, 8) => DataType::U8,
        (1, 16) => DataType::U16,
        (2, 16) => DataType::I16,
        (3, 32) => DataType::F32,
        _ => {
            let kind = match format {
                1 => "unsigned integer",
                2 => "signed integer",
                3 => "floating point",
                _ => "unknown sample format",
            };
            return Err(unsupported(format!("data type: {b}-bit {kind}")));
        }
    };
    let comp_tag = ifd.compression;
    let compression = Compression::from_tag(comp_tag)
        .ok_or_else(|| unsupported(format!("compression {comp_tag} ({})", decode::compression_name(comp_tag))))?;
    let predictor = match ifd.predictor {
        1 => Predictor::None,
        2 => Predictor::Horizontal,
        3 => Predictor::Float,
        p => return Err(unsupported(format!("predictor {p}"))),
    };
    let codec = Codec { compression, predictor, dtype, big_endian };
    decode::check_codec(&codec, href)?;

    let (tile_w, tile_h, offsets, counts, what) = match (ifd.tile_width, ifd.tile_height) {
        (Some(tw), Some(th)) => {
            let off = ifd.tile_offsets.as_deref().ok_or_else(|| malformed("tiled image without TileOffsets".into()))?;
            let cnt = ifd
                .tile_byte_counts
                .as_deref()
                .ok_or_else(|| malformed("tiled image without TileByteCounts".into()))?;
            (tw as usize, th as usize, off, cnt, "tile")
        }
        (None, None) => {
            let off = ifd.strip_offsets.as_deref().ok_or_else(|| malformed("neither tiles nor strips".into()))?;
            let cnt = ifd
                .strip_byte_counts
                .as_deref()
                .ok_or_else(|| malformed("StripOffsets without StripByteCounts".into()))?;
            let rps = ifd.rows_per_strip.map(|r| r as usize).unwrap_or(height);
            if rps == 0 {
                return Err(malformed("RowsPerStrip is 0".into()));
            }
            (width, rps.min(height), off, cnt, "strip")
        }
        _ => return Err(malformed("TileWidth without TileLength or the reverse".into())),
    };
    if tile_w == 0 || tile_h == 0 {
        return Err(malformed(format!("{what} size {tile_w} x {tile_h}")));
    }
    if tile_w.saturating_mul(tile_h).saturating_mul(dtype.size()) > MAX_TILE_BYTES {
        return Err(malformed(format!("{what} size {tile_w} x {tile_h} is too large")));
    }
    let (across, down) = (width.div_ceil(tile_w), height.div_ceil(tile_h));
    let expected = across * down;
    if offsets.len() != expected || counts.len() != expected {
        return Err(malformed(format!(
            "{} {what} offsets and {} byte counts for {across} x {down} = {expected} {what}s",
            offsets.len(),
            counts.len()
        )));
    }
    // A tile straddling the end of the file means bytes are missing (a cut download); a tile
    // wholly beyond it means a corrupt offset. Report the first kind first: it says what to do.
    let mut beyond = None;
    for (tile, (&offset, &count)) in offsets.iter().zip(counts).enumerate() {
        let end = offset.saturating_add(count);
        if count == 0 || end <= file_size {
            continue;
        }
        if offset < file_size {
            return Err(CogError::Truncated {
                href: href.into(),
                reason: format!(
                    "level {index} {what} {tile} spans bytes {offset}..{end} but the file ends at byte {file_size}"
                ),
            });
        }
        beyond.get_or_insert(CogError::TileOutOfBounds {
            href: href.into(),
            level: index,
            tile,
            offset,
            end,
            file_size,
        });
    }
    if let Some(e) = beyond {
        return Err(e);
    }
    let affine = affine0.scaled(full_w as f64 / width as f64, full_h as f64 / height as f64);
    Ok(Level {
        index,
        width,
        height,
        tile_width: tile_w,
        tile_height: tile_h,
        affine,
        tiles_across: across,
        offsets: Arc::from(offsets),
        counts: Arc::from(counts),
        codec,
        stripped: what == "strip",
    })
}

/// EPSG code from the GeoKeys: ProjectedCSTypeGeoKey, else GeographicTypeGeoKey.
fn epsg_from_keys(projected: Option<u16>, geographic: Option<u16>) -> Result<u32, String> {
    const USER_DEFINED: u16 = 32767;
    match (projected.filter(|&p| p != 0), geographic.filter(|&g| g != 0)) {
        (Some(USER_DEFINED), _) => {
            Err("the projected CRS is user-defined (ProjectedCSTypeGeoKey 32767); reproject to an EPSG CRS".into())
        }
        (Some(p), _) => Ok(u32::from(p)),
        (None, Some(USER_DEFINED)) => {
            Err("the geographic CRS is user-defined (GeographicTypeGeoKey 32767); reproject to an EPSG CRS".into())
        }
        (None, Some(g)) => Ok(u32::from(g)),
        (None, None) => Err("no ProjectedCSTypeGeoKey or GeographicTypeGeoKey: the CRS is unknown".into()),
    }
}

/// Pixel-corner affine from ModelTransformation, else ModelTiepoint + ModelPixelScale; for
/// RasterPixelIsPoint (raster type 2) shifted by half a pixel as GDAL does.
fn affine_from_tags(
    transformation: Option<&[f64]>,
    tiepoint: Option<&[f64]>,
    scale: Option<&[f64]>,
    raster_type: Option<u16>,
) -> Result<Affine, String> {
    let a = match (transformation, tiepoint, scale) {
        (Some(&[a, b, _, c, d, e, _, f, ..]), _, _) => Affine::new(a, b, c, d, e, f),
        (Some(m), _, _) => return Err(format!("ModelTransformation has {} values, expected 16", m.len())),
        (None, Some(&[i, j, _, x, y, ..]), Some(&[sx, sy, ..])) => {
            Affine::new(sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy)
        }
        (None, Some(_), Some(_)) => return Err("ModelTiepoint or ModelPixelScale is too short".into()),
        _ => return Err("no ModelTransformation nor ModelTiepoint + ModelPixelScale".into()),
    };
    let a = if raster_type == Some(2) { a.shifted(-0.5, -0.5) } else { a };
    let det = a.a * a.e - a.b * a.d;
    if !a.to_array().iter().all(|v| v.is_finite()) || det == 0.0 {
        return Err(format!("degenerate pixel-to-CRS transform {:?}", a.to_array()));
    }
    Ok(a)
}

fn georef(href: &str, ifd: &tiff::Ifd) -> Result<(Crs, Affine), CogError> {
    let err = |reason: String| CogError::Georef { href: href.into(), reason };
    let keys = ifd.geo_keys.ok_or_else(|| err("no GeoKeyDirectory: this TIFF is not a GeoTIFF".into()))?;
    let epsg = epsg_from_keys(keys.projected_type, keys.geographic_type).map_err(err)?;
    let crs = Crs::from_epsg(epsg).map_err(|e| err(e.to_string()))?;
    let (transformation, tiepoint) = (ifd.model_transformation.as_deref(), ifd.model_tiepoint.as_deref());
    let affine =
        affine_from_tags(transformation, tiepoint, ifd.model_pixel_scale.as_deref(), keys.raster_type).map_err(err)?;
    Ok((crs, affine))
}

/// An open COG: header parsed, ready to read windows. Cheap to share behind an `Arc`.
pub struct Cog {
    href: Arc<str>,
    loc: Location,
    file_size: u64,
    header: Arc<CogHeader>,
    counters: Arc<Counters>,
    gap: u64,
    concurrency: usize,
}

impl std::fmt::Debug for Cog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cog").field("href", &self.href).field("file_size", &self.file_size).finish_non_exhaustive()
    }
}

impl Cog {
    pub fn href(&self) -> &str {
        &self.href
    }

    pub fn crs(&self) -> &Crs {
        &self.header.crs
    }

    pub fn dtype(&self) -> DataType {
        self.header.dtype
    }

    pub fn nodata(&self) -> Option<f64> {
        self.header.nodata
    }

    /// `[0]` is full resolution, then the overviews from finest to coarsest (file order).
    pub fn levels(&self) -> &[Level] {
        &self.header.levels
    }

    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    pub fn geobox(&self, level: usize) -> Option<GeoBox> {
        let l = self.header.levels.get(level)?;
        Some(GeoBox::new(self.header.crs.clone(), l.affine, l.shape()))
    }

    /// Requests and bytes so far for this COG, header included.
    pub fn stats(&self) -> RequestStats {
        self.counters.get()
    }

    /// Fetches the compressed tiles `window` touches at `level` (I/O only). A window wholly
    /// outside the image fetches nothing.
    pub async fn fetch_window(&self, level: usize, window: PixelWindow) -> Result<FetchedWindow, CogError> {
        let WindowTiles { level: lv, clip, tiles, ranges } = self.window_tiles(level, window)?;
        let geobox = GeoBox::new(self.header.crs.clone(), lv.affine, lv.shape()).window(&window);
        let (bytes, stats) = if ranges.is_empty() {
            (Vec::new(), RequestStats::default())
        } else {
            source::fetch_ranges(&self.loc, &self.href, &ranges, self.gap, self.concurrency).await?
        };
        self.counters.add(stats.requests, stats.bytes);
        Ok(FetchedWindow {
            href: self.href.clone(),
            level: lv.clone(),
            window,
            clip,
            tiles: tiles.into_iter().zip(bytes).collect(),
            geobox,
            nodata: self.header.nodata,
            stats,
        })
    }

    /// The compressed bytes of the tiles [`Cog::fetch_window`] would fetch for `window` at
    /// `level` (sparse tiles have none), known from the header before anything is fetched.
    pub fn window_bytes(&self, level: usize, window: PixelWindow) -> Result<u64, CogError> {
        Ok(self.window_tiles(level, window)?.ranges.iter().map(|r| r.end - r.start).sum())
    }

    /// The tiles of `level` that `window` touches and hold data, with their byte ranges,
    /// checked against the file's size.
    fn window_tiles(&self, level: usize, window: PixelWindow) -> Result<WindowTiles<'_>, CogError> {
        let lv = self.header.levels.get(level).ok_or_else(|| CogError::NoSuchLevel {
            href: self.href.to_string(),
            level,
            levels: self.header.levels.len(),
        })?;
        let mut tiles = Vec::new();
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let clip = window.clip(lv.shape());
        if let Some(c) = clip {
            let (r0, c0) = (c.row as usize, c.col as usize);
            let (ty0, ty1) = (r0 / lv.tile_height, (r0 + c.height - 1) / lv.tile_height);
            let (tx0, tx1) = (c0 / lv.tile_width, (c0 + c.width - 1) / lv.tile_width);
            for ty in ty0..=ty1 {
                for tx in tx0..=tx1 {
                    let idx = ty * lv.tiles_across + tx;
                    let (Some(&off), Some(&cnt)) = (lv.offsets.get(idx), lv.counts.get(idx)) else {
                        return Err(CogError::Malformed {
                            href: self.href.to_string(),
                            reason: format!("level {level} has no entry for tile {idx}"),
                        });
                    };
                    if cnt == 0 {
                        continue; // sparse tile: stays fill
                    }
                    let end = off.saturating_add(cnt);
                    if end > self.file_size {
                        return Err(CogError::TileOutOfBounds {
                            href: self.href.to_string(),
                            level,
                            tile: idx,
                            offset: off,
                            end,
                            file_size: self.file_size,
                        });
                    }
                    tiles.push(TileRef { tx, ty });
                    ranges.push(off..end);
                }
            }
        }
        Ok(WindowTiles { level: lv, clip, tiles, ranges })
    }

    /// Fetches and decodes `window` at `level`. Parts outside the image are nodata (or 0).
    /// Decoding runs on the calling task; to decode on a thread pool use
    /// [`Cog::fetch_window`] and [`FetchedWindow::decode`].
    pub async fn read_window(&self, level: usize, window: PixelWindow) -> Result<Raster, CogError> {
        self.fetch_window(level, window).await?.decode()
    }
}

/// What [`Cog::window_tiles`] finds: the level, the window clipped to it, and the tiles with
/// data with their byte ranges (in the same order).
struct WindowTiles<'a> {
    level: &'a Level,
    clip: Option<PixelWindow>,
    tiles: Vec<TileRef>,
    ranges: Vec<Range<u64>>,
}

#[derive(Debug, Clone, Copy)]
struct TileRef {
    tx: usize,
    ty: usize,
}

/// The compressed tiles of one window, ready to decode (owns everything it needs).
#[derive(Debug)]
pub struct FetchedWindow {
    href: Arc<str>,
    level: Level,
    window: PixelWindow,
    clip: Option<PixelWindow>,
    tiles: Vec<(TileRef, Bytes)>,
    geobox: GeoBox,
    nodata: Option<f64>,
    stats: RequestStats,
}

impl FetchedWindow {
    /// Requests and bytes of this window's fetch.
    pub fn stats(&self) -> RequestStats {
        self.stats
    }

    pub fn window(&self) -> PixelWindow {
        self.window
    }

    /// The grid of the window: where its decoded pixels lie.
    pub fn geobox(&self) -> &GeoBox {
        &self.geobox
    }

    /// Decodes the tiles into the window (CPU only; call from a thread pool if you like).
    pub fn decode(self) -> Result<Raster, CogError> {
        let data = match self.level.codec.dtype {
            DataType::U8 => RasterData::U8(self.decode_as()?),
            DataType::U16 => RasterData::U16(self.decode_as()?),
            DataType::I16 => RasterData::I16(self.decode_as()?),
            DataType::F32 => RasterData::F32(self.decode_as()?),
        };
        Ok(Raster { data, geobox: self.geobox, nodata: self.nodata })
    }

    fn decode_as<T: Sample>(&self) -> Result<Vec<T>, CogError> {
        let (out_w, out_h) = (self.window.width, self.window.height);
        let fill = T::from_f64(self.nodata.unwrap_or(0.0));
        let mut out = vec![fill; out_w * out_h];
        let Some(c) = self.clip else { return Ok(out) };
        let lv = &self.level;
        let (mut dec, mut tile_buf, mut scratch) = (Decoders::new(), Vec::new(), Vec::new());
        let (cr0, cc0) = (c.row as usize, c.col as usize);
        let (cr1, cc1) = (cr0 + c.height, cc0 + c.width);
        for (t, bytes) in &self.tiles {
            let (y0, x0) = (t.ty * lv.tile_height, t.tx * lv.tile_width);
            let (ra, rb) = (cr0.max(y0), cr1.min(y0 + lv.tile_height));
            let (ca, cb) = (cc0.max(x0), cc1.min(x0 + lv.tile_width));
            if ra >= rb || ca >= cb {
                continue;
            }
            let p = Placement {
                tile_w: lv.tile_width,
                tile_h: lv.tile_height,
                valid_rows: lv.tile_height.min(lv.height - y0),
                r0: ra - y0,
                r1: rb - y0,
                c0: ca - x0,
                c1: cb - x0,
                out_row: (ra as i64 - self.window.row) as usize,
                out_col: (ca as i64 - self.window.col) as usize,
            };
            decode::decode_tile(&mut dec, &lv.codec, bytes, &p, &mut tile_buf, &mut scratch, &mut out, out_w).map_err(
                |reason| CogError::Decode {
                    href: self.href.to_string(),
                    level: lv.index,
                    tile: t.ty * lv.tiles_across + t.tx,
                    reason,
                },
            )?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
