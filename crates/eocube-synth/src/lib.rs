//! A synthetic Sentinel-2 L2A archive that looks like Earth Search's `sentinel-2-c1-l2a` (and,
//! in [`landsat`], a Landsat Collection 2 Level-2 one like `landsat-c2-l2`): COGs
//! on UTM tile grids plus a STAC 1.1 item collection, with a known true surface ([`truth`]) so a
//! cube built from it can be checked pixel by pixel. Used by `eocube demo` (offline) and by
//! benchmarks (`eocube synth`). The archive and the truth are described in `docs/synth.md`.
//!
//! Owns: the layout of the archive (`DIR/<collection>/<item-id>/<band>.tif`, `DIR/items.json`
//! with hrefs relative to DIR, `DIR/items-local.json` with absolute paths), the synthetic
//! scenes, clouds and swath edges, and the truth. Must not touch: reading (it checks its output
//! with `cog` and `catalog` in tests only), serving files, or cube building.
//!
//! ```text
//! SynthSpec ──validate──▶ tiles (UTM zones the bbox touches, MGRS-like grid, ~9% overlap)
//!   × passes (every revisit_days from start to end; one datetime per pass)
//!   ─▶ per scene: SCL (20 m) ─write─▶ each band (10 m) ─write─▶ item JSON
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cog;
pub mod faults;
pub mod landsat;
mod scene;
pub mod server;
mod truth;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use serde_json::{Value, json};

use crate::cog::{CogData, CogImage, CogOptions, Resampling, WriteError, write_cog};
use eocube::grid::{Affine, Bbox, Crs, GeoBox, Shape, Transformer};
pub use truth::{CELL_DEG, REFLECTANCE_BANDS, band_index, cell_of, truth};

/// The STAC collection the archive imitates.
pub const COLLECTION: &str = "sentinel-2-c1-l2a";
/// Pixels per side of a real Sentinel-2 tile at 10 m.
pub const FULL_SCENE_PX: usize = 10980;
/// Side of a real MGRS tile over its spacing: 109.8 km tiles every 100 km.
const OVERLAP_RATIO: f64 = 1.098;
/// Nodes of the exact lon/lat grid every this many 10 m pixels (see `scene::LonLatGrid`).
const LONLAT_STEP: usize = 32;
/// Refuse archives with more scenes than this: a typo in the bbox, not a benchmark.
const MAX_SCENES: usize = 100_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// Region to cover, lon/lat degrees; every tile touching it gets scenes.
    pub bbox: Bbox,
    /// First and last day, both inclusive; one pass every `revisit_days` from `start`.
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// 10 m pixels per side of a scene (real tiles: 10980); even, the SCL has half as many.
    pub scene_px: usize,
    /// COG tile edge in pixels (a multiple of 16).
    pub tile_px: usize,
    /// Reflectance bands (Earth Search names or band numbers); SCL is always written as `scl`.
    pub bands: Vec<String>,
    pub revisit_days: u32,
    /// Clouds, swath edges and timestamps depend on it; the truth does not.
    pub seed: u64,
}

impl SynthSpec {
    /// The offline demo: two months over the Vermont/New Hampshire border region, which straddles
    /// UTM zones 18 and 19, with tiles a tenth of real size (1098 px, 11 km).
    pub fn demo() -> SynthSpec {
        SynthSpec {
            bbox: Bbox { west: -72.06, south: 44.02, east: -71.94, north: 44.1 },
            start: NaiveDate::from_ymd_opt(2023, 6, 1).unwrap_or_default(),
            end: NaiveDate::from_ymd_opt(2023, 7, 31).unwrap_or_default(),
            scene_px: 1098,
            tile_px: 512,
            bands: vec!["red".into(), "green".into(), "blue".into()],
            revisit_days: 6,
            seed: 42,
        }
    }

    /// Real-size tiles (10980 px, 1024 px COG tiles, as Earth Search's) over `bbox`.
    pub fn full_size(bbox: Bbox, start: NaiveDate, end: NaiveDate) -> SynthSpec {
        SynthSpec { bbox, start, end, scene_px: FULL_SCENE_PX, tile_px: 1024, ..SynthSpec::demo() }
    }

    /// Checks every field; the error names the field (`scene_px`, `bbox`, ...).
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |field: &'static str, reason: String| Err(SynthError::InvalidSpec { field, reason });
        let b = self.bbox;
        if let Err(e) = Bbox::new_lonlat(b.west, b.south, b.east, b.north) {
            return bad("bbox", e.to_string());
        }
        if b.south < -80.0 || b.north > 84.0 {
            return bad("bbox", format!("latitudes {}..{} leave the UTM range -80..84", b.south, b.north));
        }
        if self.end < self.start {
            return bad("end", format!("{} is before the start {}", self.end, self.start));
        }
        if self.scene_px < 2 || self.scene_px > FULL_SCENE_PX || !self.scene_px.is_multiple_of(2) {
            return bad("scene_px", format!("{}: it must be an even number from 2 to {FULL_SCENE_PX}", self.scene_px));
        }
        if self.tile_px < 16 || self.tile_px > 4096 || !self.tile_px.is_multiple_of(16) {
            return bad("tile_px", format!("{}: it must be a multiple of 16 from 16 to 4096", self.tile_px));
        }
        if self.revisit_days == 0 {
            return bad("revisit_days", "0: it must be at least 1".into());
        }
        if self.reflectance_bands()?.is_empty() {
            return bad("bands", "no reflectance band given (SCL is always written)".into());
        }
        Ok(())
    }

    /// The reflectance bands as (Earth Search name, index in [`REFLECTANCE_BANDS`]), without
    /// duplicates or `scl`.
    fn reflectance_bands(&self) -> Result<Vec<(&'static str, usize)>, SynthError> {
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        for b in &self.bands {
            if b.trim().eq_ignore_ascii_case("scl") {
                continue;
            }
            let Some(i) = band_index(b) else {
                return Err(SynthError::InvalidSpec {
                    field: "bands",
                    reason: format!("unknown band {b:?}; use {}", REFLECTANCE_BANDS.join(", ")),
                });
            };
            if !out.iter().any(|&(_, j)| j == i) {
                out.push((REFLECTANCE_BANDS[i], i));
            }
        }
        Ok(out)
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Archive {
    pub dir: PathBuf,
    /// The STAC items as in `items.json` (hrefs relative to `dir`; see [`rebase_hrefs`]).
    pub items: Vec<Value>,
    /// Files written, the two item files included.
    pub files: usize,
    pub bytes: u64,
    pub scenes: usize,
    /// UTM zones with at least one scene.
    pub zones: Vec<u32>,
}

/// What can go wrong generating an archive. Every variant names the field or the path.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid {field}: {reason}")]
    InvalidSpec { field: &'static str, reason: String },
    #[error("{path}: the output directory exists and is not empty; give a new or empty directory")]
    OutDirNotEmpty { path: PathBuf },
    #[error("{path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cog(#[from] WriteError),
    #[error("{path}: cannot place the scene: {reason}")]
    Grid { path: PathBuf, reason: String },
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> SynthError {
    let path = path.to_path_buf();
    move |source| SynthError::Io { path, action, source }
}

/// Makes every relative asset href absolute by prefixing `base` (a directory path or a URL such
/// as `http://127.0.0.1:8080/`); absolute hrefs (`/...` or with a scheme) are left alone.
pub fn rebase_hrefs(items: &mut [Value], base: &str) {
    let base = base.trim_end_matches('/');
    for item in items {
        let Some(assets) = item.get_mut("assets").and_then(Value::as_object_mut) else { continue };
        for asset in assets.values_mut() {
            if let Some(Value::String(href)) = asset.get_mut("href")
                && !href.starts_with('/')
                && !href.contains("://")
            {
                *href = format!("{base}/{href}");
            }
        }
    }
}

/// One tile of the MGRS-like grid: `side` m square with its lower-left corner at `(x0, y0)`.
#[derive(Debug, Clone)]
struct Tile {
    zone: u32,
    epsg: u32,
    x0: f64,
    y0: f64,
    code: String,
}

fn utm_zone(lon: f64) -> u32 {
    (((lon + 180.0) / 6.0).floor() as i64 + 1).clamp(1, 60) as u32
}

/// Tiles of every UTM zone and hemisphere the bbox touches: a grid of `side` m tiles every
/// `side / 1.098` m (rounded to 20 m so the SCL grid lines up), like MGRS's 109.8 km tiles every
/// 100 km. Zone exceptions (Norway, Svalbard) are ignored.
fn tiles(spec: &SynthSpec) -> Result<Vec<Tile>, SynthError> {
    let side = spec.scene_px as f64 * 10.0;
    let spacing = ((side / OVERLAP_RATIO / 20.0).round() * 20.0).max(20.0);
    let b = spec.bbox;
    let wgs84 = Crs::wgs84();
    let mut out = Vec::new();
    let mut codes = HashSet::new();
    let mut hemispheres = Vec::new();
    if b.north > 0.0 {
        hemispheres.push((false, b.south.max(0.0), b.north));
    }
    if b.south < 0.0 {
        hemispheres.push((true, b.south, b.north.min(0.0)));
    }
    for zone in utm_zone(b.west)..=utm_zone(b.east - 1e-9) {
        let lon0 = -180.0 + 6.0 * f64::from(zone - 1);
        let (w, e) = (b.west.max(lon0), b.east.min(lon0 + 6.0));
        if w >= e {
            continue;
        }
        for &(south, s, n) in &hemispheres {
            let epsg = if south { 32700 } else { 32600 } + zone;
            let bad = |reason: String| SynthError::InvalidSpec { field: "bbox", reason };
            let crs = Crs::from_epsg(epsg).map_err(|e| bad(e.to_string()))?;
            let t = Transformer::new(&wgs84, &crs);
            // lines of constant longitude curve in UTM: sample the whole boundary
            let k = 16;
            let mut pts = Vec::new();
            for i in 0..=k {
                let f = i as f64 / k as f64;
                for (lo, la) in [(w + f * (e - w), s), (w + f * (e - w), n), (w, s + f * (n - s)), (e, s + f * (n - s))]
                {
                    pts.push(t.transform(lo, la).map_err(|e| bad(e.to_string()))?);
                }
            }
            let Some(ub) = Bbox::from_points(pts) else { continue };
            // tiles [i * spacing, i * spacing + side] that overlap [xmin, xmax]
            let first = |min: f64| ((min - side) / spacing).floor() as i64 + 1;
            let last = |max: f64| (max / spacing).ceil() as i64 - 1;
            let (ix0, ix1, iy0, iy1) = (first(ub.west), last(ub.east), first(ub.south), last(ub.north));
            let count = (ix1 - ix0 + 1).max(0) as usize * (iy1 - iy0 + 1).max(0) as usize;
            if out.len() + count > MAX_SCENES {
                return Err(bad(format!("it needs more than {MAX_SCENES} tiles at scene_px {}", spec.scene_px)));
            }
            let inv = Transformer::new(&crs, &wgs84);
            for iy in iy0..=iy1 {
                for ix in ix0..=ix1 {
                    let (x0, y0) = (ix as f64 * spacing, iy as f64 * spacing);
                    let (_, lat_c) = inv.transform(x0 + side / 2.0, y0 + side / 2.0).map_err(|e| bad(e.to_string()))?;
                    let code = mgrs_code(zone, lat_c, ix, iy, &mut codes);
                    out.push(Tile { zone, epsg, x0, y0, code });
                }
            }
        }
    }
    Ok(out)
}

/// An MGRS-looking code `18TXP`: zone, latitude band, two letters from the tile indices. Codes
/// repeat for small tiles (24 columns of letters); a repeat gets a numeric suffix so ids stay unique.
fn mgrs_code(zone: u32, lat: f64, ix: i64, iy: i64, seen: &mut HashSet<String>) -> String {
    const BANDS: &[u8] = b"CDEFGHJKLMNPQRSTUVWX";
    const COLS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const ROWS: &[u8] = b"ABCDEFGHJKLMNPQRSTUV";
    let band = BANDS[(((lat + 80.0) / 8.0).floor().max(0.0) as usize).min(BANDS.len() - 1)] as char;
    let col = COLS[ix.rem_euclid(COLS.len() as i64) as usize] as char;
    let row = ROWS[iy.rem_euclid(ROWS.len() as i64) as usize] as char;
    let base = format!("{zone:02}{band}{col}{row}");
    let mut code = base.clone();
    let mut k = 2;
    while !seen.insert(code.clone()) {
        code = format!("{base}{k}");
        k += 1;
    }
    code
}

/// Percentages of a scene's SCL classes over its valid (non-zero) pixels, and of nodata.
struct SclStats {
    counts: [u64; 12],
    total: u64,
}

impl SclStats {
    fn of(scl: &[u8]) -> SclStats {
        let mut counts = [0u64; 12];
        for &c in scl {
            counts[usize::from(c).min(11)] += 1;
        }
        SclStats { counts, total: scl.len() as u64 }
    }

    fn valid(&self) -> u64 {
        self.total - self.counts[0]
    }

    /// Percentage of valid pixels in `classes`, rounded to 6 decimals as Earth Search does.
    fn pct(&self, classes: &[usize]) -> f64 {
        let n: u64 = classes.iter().map(|&c| self.counts[c]).sum();
        let p = 100.0 * n as f64 / self.valid().max(1) as f64;
        (p * 1e6).round() / 1e6
    }
}

/// Writes the archive described by `spec` into `dir` (created; it must not exist or be empty).
/// Deterministic: the same spec writes the same bytes. Scenes are generated one after the other,
/// the pixels of each band in parallel; at most one scene's bands are in memory.
pub fn generate(spec: &SynthSpec, dir: &Path) -> Result<Archive, SynthError> {
    spec.validate()?;
    let bands = spec.reflectance_bands()?;
    let tiles = tiles(spec)?;
    prepare_dir(dir)?;
    let b = spec.bbox;
    let (lon_c, lat_c) = ((b.west + b.east) / 2.0, (b.south + b.north) / 2.0);
    // Sentinel-2 crosses the equator at 10:30 local solar time.
    let hours = (10.5 - lon_c / 15.0).clamp(0.25, 23.5);
    let mut items = Vec::new();
    let (mut files, mut bytes) = (0usize, 0u64);
    let mut zones = BTreeSet::new();
    let mut date = spec.start;
    while date <= spec.end {
        let day = i64::from(date.num_days_from_ce());
        let pass = truth::Pass::new(spec.seed, day, lon_c, lat_c, b.width());
        let seconds = (hours * 3600.0) as i64 + (truth::mix(spec.seed ^ day as u64) % 60) as i64;
        let millis = truth::mix(spec.seed.wrapping_add(day as u64)) % 1000;
        let platform = if (day / i64::from(spec.revisit_days)) % 2 == 0 { "sentinel-2a" } else { "sentinel-2b" };
        let when = Acquisition { date, seconds, millis, platform };
        for tile in &tiles {
            if let Some((item, f, n)) = write_scene(spec, dir, &bands, tile, &pass, &when)? {
                items.push(item);
                files += f;
                bytes += n;
                zones.insert(tile.zone);
            }
        }
        date = match date.checked_add_days(chrono::Days::new(u64::from(spec.revisit_days))) {
            Some(d) => d,
            None => break,
        };
    }
    let scenes = items.len();
    let relative = json!({ "type": "FeatureCollection", "features": items, "links": [] });
    bytes += write_json(&dir.join("items.json"), &relative)?;
    let abs = std::fs::canonicalize(dir).map_err(io_err(dir, "resolving the absolute path of"))?;
    let mut local = items.clone();
    rebase_hrefs(&mut local, &abs.to_string_lossy());
    bytes += write_json(&dir.join("items-local.json"), &json!({ "type": "FeatureCollection", "features": local }))?;
    Ok(Archive { dir: dir.to_path_buf(), items, files: files + 2, bytes, scenes, zones: zones.into_iter().collect() })
}

/// Creates `dir`, or checks that it is empty.
fn prepare_dir(dir: &Path) -> Result<(), SynthError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SynthError::OutDirNotEmpty { path: dir.to_path_buf() });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io_err(dir, "creating the directory"))
        }
        Err(e) => Err(io_err(dir, "reading the directory")(e)),
    }
}

fn write_json(path: &Path, v: &Value) -> Result<u64, SynthError> {
    let text = serde_json::to_vec_pretty(v).map_err(|e| io_err(path, "serializing")(e.into()))?;
    std::fs::write(path, &text).map_err(io_err(path, "writing"))?;
    Ok(text.len() as u64)
}

/// When a pass was acquired.
struct Acquisition {
    date: NaiveDate,
    /// Seconds after midnight UTC.
    seconds: i64,
    millis: u64,
    platform: &'static str,
}

/// Generates and writes one scene; `None` when the pass's swath misses the tile.
/// Returns the item, the files and the bytes written.
fn write_scene(
    spec: &SynthSpec,
    dir: &Path,
    bands: &[(&'static str, usize)],
    tile: &Tile,
    pass: &truth::Pass,
    when: &Acquisition,
) -> Result<Option<(Value, usize, u64)>, SynthError> {
    let n = spec.scene_px;
    let side = n as f64 * 10.0;
    let (y_top, x0) = (tile.y0 + side, tile.x0);
    let crs =
        Crs::from_epsg(tile.epsg).map_err(|e| SynthError::Grid { path: dir.to_path_buf(), reason: e.to_string() })?;
    let gb10 = GeoBox::new(crs.clone(), Affine::north_up(x0, y_top, 10.0, 10.0), Shape { ny: n, nx: n });
    let gb20 = GeoBox::new(crs, Affine::north_up(x0, y_top, 20.0, 20.0), Shape { ny: n / 2, nx: n / 2 });
    let (h, m, s) = (when.seconds / 3600, (when.seconds / 60) % 60, when.seconds % 60);
    let stamp = format!("{}T{h:02}{m:02}{s:02}", when.date.format("%Y%m%d"));
    let sat = if when.platform.ends_with('a') { "S2A" } else { "S2B" };
    let id = format!("{sat}_T{}_{stamp}_L2A", tile.code);
    let rel_dir = format!("{COLLECTION}/{id}");
    let scene_dir = dir.join(&rel_dir);
    let grid_err = |e: eocube::grid::GridError| SynthError::Grid { path: scene_dir.clone(), reason: e.to_string() };
    let grid = scene::LonLatGrid::new(&gb10, LONLAT_STEP).map_err(grid_err)?;
    if pass.edge.is_some() && !grid.nodes().any(|(lo, la)| pass.covers(lo, la)) {
        return Ok(None);
    }
    let (year, month) = (when.date.year(), when.date.month());
    let scl = scene::scl_band(&grid, n, pass, year, month);
    let stats = SclStats::of(&scl);
    if stats.valid() == 0 {
        return Ok(None);
    }
    std::fs::create_dir_all(&scene_dir).map_err(io_err(&scene_dir, "creating the directory"))?;
    let opts = |r| CogOptions { tile_size: spec.tile_px, overview_resampling: r, deflate_level: 1 };
    let mut bytes = write_cog(
        &scene_dir.join("scl.tif"),
        &CogImage { geobox: &gb20, data: CogData::U8(&scl), nodata: Some(0.0) },
        &opts(Resampling::Nearest),
    )?;
    for &(name, bi) in bands {
        let data = scene::reflectance_band(&grid, n, &scl, pass, bi, year, month);
        bytes += write_cog(
            &scene_dir.join(format!("{name}.tif")),
            &CogImage { geobox: &gb10, data: CogData::U16(&data), nodata: Some(0.0) },
            &opts(Resampling::Average),
        )?;
    }
    let footprint = valid_footprint(&gb10, pass).map_err(grid_err)?;
    let item = item_json(&id, &rel_dir, tile, when, bands, &gb10, &gb20, &footprint, &stats);
    Ok(Some((item, bands.len() + 1, bytes)))
}

/// The scene's outline in lon/lat clipped to the pass's swath (Sutherland-Hodgman against the
/// swath edge, a straight line in lon/lat).
fn valid_footprint(gb: &GeoBox, pass: &truth::Pass) -> Result<Vec<(f64, f64)>, eocube::grid::GridError> {
    let mut ring = gb.footprint(&Crs::wgs84(), 8)?.ring;
    if let Some(edge) = pass.edge {
        ring.pop();
        let mut out = Vec::with_capacity(ring.len() + 2);
        for i in 0..ring.len() {
            let (p, q) = (ring[i], ring[(i + 1) % ring.len()]);
            let (dp, dq) = (edge.inside(p.0, p.1), edge.inside(q.0, q.1));
            if dp > 0.0 {
                out.push(p);
            }
            if (dp > 0.0) != (dq > 0.0) {
                let t = dp / (dp - dq);
                out.push((p.0 + (q.0 - p.0) * t, p.1 + (q.1 - p.1) * t));
            }
        }
        if let Some(&first) = out.first() {
            out.push(first);
        }
        ring = out;
    }
    Ok(ring)
}

fn round9(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}

#[allow(clippy::too_many_arguments)]
fn item_json(
    id: &str,
    rel_dir: &str,
    tile: &Tile,
    when: &Acquisition,
    bands: &[(&'static str, usize)],
    gb10: &GeoBox,
    gb20: &GeoBox,
    footprint: &[(f64, f64)],
    stats: &SclStats,
) -> Value {
    let ring: Vec<[f64; 2]> = footprint.iter().map(|&(x, y)| [round9(x), round9(y)]).collect();
    let bbox = Bbox::from_points(ring.iter().map(|p| (p[0], p[1])))
        .map(|b| vec![b.west, b.south, b.east, b.north])
        .unwrap_or_default();
    let (h, m, s) = (when.seconds / 3600, (when.seconds / 60) % 60, when.seconds % 60);
    let datetime = format!("{}T{h:02}:{m:02}:{s:02}.{:03}000Z", when.date.format("%Y-%m-%d"), when.millis);
    let transform = |gb: &GeoBox| {
        let a = gb.affine;
        json!([a.a, a.b, a.c, a.d, a.e, a.f])
    };
    let mut assets = serde_json::Map::new();
    for &(name, bi) in bands {
        let (number, wavelength, gsd) = truth::BAND_INFO[bi];
        let mut title: Vec<char> = name.chars().collect();
        if let Some(c) = title.first_mut() {
            *c = c.to_ascii_uppercase();
        }
        assets.insert(
            name.to_string(),
            json!({
                "href": format!("{rel_dir}/{name}.tif"),
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "title": format!("{} - {gsd}m", title.into_iter().collect::<String>()),
                "gsd": 10,
                "proj:shape": [gb10.shape.ny, gb10.shape.nx],
                "proj:transform": transform(gb10),
                "bands": [{
                    "name": number,
                    "eo:common_name": name,
                    "eo:center_wavelength": wavelength,
                    "nodata": 0,
                    "data_type": "uint16",
                    "raster:spatial_resolution": 10,
                    "scale": 0.0001,
                    "offset": -0.1
                }],
                "roles": ["data", "reflectance"]
            }),
        );
    }
    assets.insert(
        "scl".into(),
        json!({
            "href": format!("{rel_dir}/scl.tif"),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "title": "Scene classification map (SCL)",
            "gsd": 20,
            "proj:shape": [gb20.shape.ny, gb20.shape.nx],
            "proj:transform": transform(gb20),
            "bands": [{ "name": "SCL", "nodata": 0, "data_type": "uint8", "raster:spatial_resolution": 20 }],
            "roles": ["data"]
        }),
    );
    let zone_band = &tile.code[2..3];
    let square = &tile.code[3..];
    json!({
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
            "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
            "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
            "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json"
        ],
        "id": id,
        "collection": COLLECTION,
        "geometry": { "type": "Polygon", "coordinates": [ring] },
        "bbox": bbox,
        "properties": {
            "datetime": datetime,
            "platform": when.platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": stats.pct(&[8, 9, 10]),
            "proj:code": format!("EPSG:{}", tile.epsg),
            "proj:epsg": tile.epsg,
            "mgrs:utm_zone": tile.zone,
            "mgrs:latitude_band": zone_band,
            "mgrs:grid_square": square,
            "grid:code": format!("MGRS-{}", tile.code),
            "s2:product_type": "S2MSI2A",
            "s2:processing_baseline": "05.11",
            "s2:nodata_pixel_percentage": (1e6 * 100.0 * stats.counts[0] as f64 / stats.total.max(1) as f64).round() / 1e6,
            "s2:cloud_shadow_percentage": stats.pct(&[3]),
            "s2:vegetation_percentage": stats.pct(&[4]),
            "s2:not_vegetated_percentage": stats.pct(&[5]),
            "s2:water_percentage": stats.pct(&[6]),
            "s2:unclassified_percentage": stats.pct(&[7]),
            "s2:medium_proba_clouds_percentage": stats.pct(&[8]),
            "s2:high_proba_clouds_percentage": stats.pct(&[9]),
            "s2:thin_cirrus_percentage": stats.pct(&[10]),
            "eocube:synthetic": true
        },
        "assets": assets,
        "links": []
    })
}

#[cfg(test)]
mod tests;
