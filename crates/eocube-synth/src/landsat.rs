//! The Landsat-shaped archive: Collection 2 Level-2 scenes of Landsat 8, 9 and 7 as Earth
//! Search v1's `landsat-c2-l2` serves them (30 m COGs of `uint16` digital numbers with scale
//! 0.0000275 and offset -0.2, nodata 0; a `qa_pixel` bit-flag band whose fill is 1), with a
//! known truth ([`expected_cube`]) so a cube built from it can be checked on every pixel.
//!
//! The surface, clouds and swath edges are the Sentinel-2 archive's ([`crate::truth`]): a pass's
//! scene classification is turned into `QA_PIXEL` bits (with confidence pairs) and its
//! reflectance into Landsat DNs. Every scene of one zone lies on one 30 m lattice, and every
//! value is a function of the lattice pixel (global indices, not the scene's), so overlapping
//! scenes of a pass agree and a cube on the same lattice (edge-anchored, 30 m, nearest) reads
//! each source pixel exactly. Landsat 7 scenes have SLC-off gap stripes: every band 0 there and
//! `QA_PIXEL` fill, except on every third stripe, where only the bands are 0 (a reader must
//! treat a 0 band as no data whatever the QA says). `docs/synth.md` describes the archive.
//!
//! Owns: the Landsat archive's scenes, items and truth. Must not touch: the Sentinel-2
//! archive's layout, reading, serving or building.

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use serde_json::{Value, json};

use crate::cog::{CogData, CogImage, CogOptions, Resampling, write_cog};
use crate::truth::{self, Pass, hash3, mix, truth_of_cell};
use crate::{Archive, SynthError, io_err, round9, write_json};
use eocube::grid::{Affine, Bbox, Crs, GeoBox, Shape, Transformer};

/// The STAC collection the archive imitates (Earth Search v1 and Planetary Computer).
pub const COLLECTION: &str = "landsat-c2-l2";
/// Pixel size in metres.
pub const PIXEL_M: f64 = 30.0;
/// Surface reflectance = DN * SCALE + OFFSET.
pub const SCALE: f64 = 0.0000275;
pub const OFFSET: f64 = -0.2;
/// The bands the archive can hold: Earth Search names, OLI file names, and the index of the
/// Sentinel-2 truth band that gives their surface.
pub const BANDS: [(&str, &str, usize); 7] = [
    ("coastal", "SR_B1", 0),
    ("blue", "SR_B2", 1),
    ("green", "SR_B3", 2),
    ("red", "SR_B4", 3),
    ("nir08", "SR_B5", 8),
    ("swir16", "SR_B6", 10),
    ("swir22", "SR_B7", 11),
];
/// Days between passes of one satellite; the three are spread over it (L8 on day 0, L9 on day
/// 8, L7 on day 4), as in orbit.
const REPEAT_DAYS: u64 = 16;
const PLATFORMS: [(&str, &str, u64); 3] =
    [("landsat-8", "LC08", 0), ("landsat-9", "LC09", 8), ("landsat-7", "LE07", 4)];

/// `QA_PIXEL` values the archive writes (USGS Landsat 8-9 C2 L2 guide bit layout).
pub mod qa {
    /// Fill (bit 0).
    pub const FILL: u16 = 1;
    /// Low confidence in every pair (cloud, shadow, snow, cirrus): bits 8, 10, 12, 14.
    const LOW: u16 = 1 << 8 | 1 << 10 | 1 << 12 | 1 << 14;
    /// Clear land: clear bit 6 and low confidences (21824, the USGS's value).
    pub const CLEAR: u16 = 1 << 6 | LOW;
    /// Clear water: plus the water bit 7.
    pub const WATER: u16 = CLEAR | 1 << 7;
    /// Clear by the bits, but cloud confidence medium: valid under the default mask, invalid
    /// under `cloud:medium`.
    pub const MEDIUM_CLOUD_CONFIDENCE: u16 = 1 << 6 | 2 << 8 | 1 << 10 | 1 << 12 | 1 << 14;
    /// High-confidence cloud: cloud bit 3 and cloud confidence 3.
    pub const CLOUD: u16 = 1 << 3 | 3 << 8 | 1 << 10 | 1 << 12 | 1 << 14;
    /// Dilated cloud (bit 1) at medium cloud confidence.
    pub const DILATED_CLOUD: u16 = 1 << 1 | 2 << 8 | 1 << 10 | 1 << 12 | 1 << 14;
    /// High-confidence cirrus: bit 2 and cirrus confidence 3.
    pub const CIRRUS: u16 = 1 << 2 | 1 << 6 | 1 << 8 | 1 << 10 | 1 << 12 | 3 << 14;
    /// High-confidence cloud shadow: bit 4 and shadow confidence 3.
    pub const SHADOW: u16 = 1 << 4 | 1 << 8 | 3 << 10 | 1 << 12 | 1 << 14;
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct LandsatSpec {
    /// Region to cover, lon/lat degrees, inside one UTM zone (its centre's).
    pub bbox: Bbox,
    /// First and last day, both inclusive.
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// 30 m pixels per side of a scene (real scenes: about 7000).
    pub scene_px: usize,
    /// COG tile edge in pixels (a multiple of 16).
    pub tile_px: usize,
    /// Earth Search names of the reflectance bands; `qa_pixel` is always written.
    pub bands: Vec<String>,
    pub seed: u64,
}

impl LandsatSpec {
    /// A small archive: the Sentinel-2 demo's two months, in UTM zone 18 just west of its
    /// region, at 30 m in 256 px scenes.
    pub fn demo() -> LandsatSpec {
        let s2 = crate::SynthSpec::demo();
        LandsatSpec {
            bbox: Bbox { west: -72.1, south: 44.0, east: -72.0, north: 44.07 },
            start: s2.start,
            end: s2.end,
            scene_px: 256,
            tile_px: 128,
            bands: vec!["red".into(), "nir08".into()],
            seed: 7,
        }
    }

    fn check(&self) -> Result<Vec<(&'static str, &'static str, usize)>, SynthError> {
        let bad = |field: &'static str, reason: String| Err(SynthError::InvalidSpec { field, reason });
        if self.end < self.start {
            return bad("end", format!("{} is before the start {}", self.end, self.start));
        }
        if !(16..=8000).contains(&self.scene_px) {
            return bad("scene_px", format!("{}: it must be 16 to 8000", self.scene_px));
        }
        if self.tile_px < 16 || !self.tile_px.is_multiple_of(16) {
            return bad("tile_px", format!("{}: it must be a multiple of 16", self.tile_px));
        }
        let mut out = Vec::new();
        for b in &self.bands {
            match BANDS.iter().find(|(n, f, _)| n.eq_ignore_ascii_case(b.trim()) || f.eq_ignore_ascii_case(b.trim())) {
                Some(&band) if !out.contains(&band) => out.push(band),
                Some(_) => {}
                None => {
                    let names: Vec<&str> = BANDS.iter().map(|b| b.0).collect();
                    return bad("bands", format!("unknown Landsat band {b:?}; use {}", names.join(", ")));
                }
            }
        }
        if out.is_empty() {
            return bad("bands", "no reflectance band given (qa_pixel is always written)".into());
        }
        Ok(out)
    }

    /// The UTM zone's EPSG code (north or south of the bbox centre).
    pub fn epsg(&self) -> u32 {
        let b = self.bbox;
        let zone = (((b.west + b.east) / 2.0 + 180.0) / 6.0).floor().clamp(0.0, 59.0) as u32 + 1;
        if (b.south + b.north) / 2.0 >= 0.0 { 32600 + zone } else { 32700 + zone }
    }

    /// The scenes' tiles: `(first column, first row)` of the lattice, top row first, every
    /// `scene_px / 1.1` pixels so that neighbours overlap, covering the bbox.
    fn tiles(&self) -> Result<Vec<(i64, i64)>, SynthError> {
        let bad = |e: String| SynthError::InvalidSpec { field: "bbox", reason: e };
        let crs = Crs::from_epsg(self.epsg()).map_err(|e| bad(e.to_string()))?;
        let gb = GeoBox::from_bbox(&self.bbox, &Crs::wgs84(), 0.001).map_err(|e| bad(e.to_string()))?;
        let ub = gb.footprint(&crs, 16).map_err(|e| bad(e.to_string()))?.bbox().ok_or_else(|| bad("empty".into()))?;
        let n = self.scene_px as i64;
        let step = (n * 10 / 11).max(1);
        let (c0, c1) = ((ub.west / PIXEL_M).floor() as i64, (ub.east / PIXEL_M).ceil() as i64);
        let (r0, r1) = ((-ub.north / PIXEL_M).floor() as i64, (-ub.south / PIXEL_M).ceil() as i64);
        let mut out = Vec::new();
        let first = |lo: i64| (lo - n).div_euclid(step) + 1;
        for tr in first(r0)..=(r1.div_euclid(step)) {
            for tc in first(c0)..=(c1.div_euclid(step)) {
                out.push((tc * step, tr * step));
            }
        }
        Ok(out)
    }

    /// The passes: `(date, platform index)` in date order.
    fn passes(&self) -> Vec<(NaiveDate, usize)> {
        let mut out = Vec::new();
        let mut day = self.start;
        while day <= self.end {
            let k = (day - self.start).num_days() as u64 % REPEAT_DAYS;
            if let Some(p) = PLATFORMS.iter().position(|&(_, _, offset)| offset == k) {
                out.push((day, p));
            }
            match day.succ_opt() {
                Some(d) => day = d,
                None => break,
            }
        }
        out
    }

    fn pass(&self, date: NaiveDate, platform: usize) -> Pass {
        let b = self.bbox;
        let day = i64::from(date.num_days_from_ce());
        Pass::new(
            self.seed ^ mix(platform as u64 + 1),
            day,
            (b.west + b.east) / 2.0,
            (b.south + b.north) / 2.0,
            b.width(),
        )
    }
}

/// The centre of lattice pixel `(col, row)` (row 0 at northing 0, rows grow southwards).
fn centre(col: i64, row: i64) -> (f64, f64) {
    ((col as f64 + 0.5) * PIXEL_M, -(row as f64 + 0.5) * PIXEL_M)
}

/// Whether lattice pixel `(col, row)` lies in a Landsat 7 SLC-off gap, and whether its
/// `QA_PIXEL` says fill there (two stripes in three).
fn gap(col: i64, row: i64) -> Option<bool> {
    let k = col + row / 4;
    (k.rem_euclid(23) < 2).then_some(k.div_euclid(23).rem_euclid(3) != 0)
}

/// One pixel of a pass: its `QA_PIXEL` and the scene class it came from.
fn pixel_qa(pass: &Pass, year: i32, month: u32, lon: f64, lat: f64, hash: u64, l7_gap: Option<bool>) -> (u16, u8) {
    let class = pass.scl(year, month, lon, lat, hash, &mut None);
    let q = match class {
        0 => qa::FILL,
        9 => qa::CLOUD,
        8 => qa::DILATED_CLOUD,
        10 => qa::CIRRUS,
        3 => qa::SHADOW,
        7 => qa::MEDIUM_CLOUD_CONFIDENCE,
        6 => qa::WATER,
        _ => qa::CLEAR,
    };
    match l7_gap {
        Some(true) => (qa::FILL, class),
        _ => (q, class),
    }
}

/// A Sentinel-2 Collection-1 DN as a Landsat Collection 2 DN of the same reflectance.
fn landsat_dn(s2_dn: u16) -> u16 {
    if s2_dn == 0 {
        return 0;
    }
    let rho = (f64::from(s2_dn) - 1000.0) / 10000.0;
    ((rho - OFFSET) / SCALE).round().clamp(1.0, 65535.0) as u16
}

/// Writes the archive into `dir` (created; it must not exist or be empty): per scene
/// `landsat-c2-l2/<id>/<band>.tif` and `qa_pixel.tif`, and `items.json` with hrefs relative to
/// `dir`, as the archive server takes them.
pub fn generate(spec: &LandsatSpec, dir: &Path) -> Result<Archive, SynthError> {
    let bands = spec.check()?;
    crate::prepare_dir(dir)?;
    let epsg = spec.epsg();
    let crs = Crs::from_epsg(epsg).map_err(|e| SynthError::Grid { path: dir.to_path_buf(), reason: e.to_string() })?;
    let to_lonlat = Transformer::new(&crs, &Crs::wgs84());
    let n = spec.scene_px;
    let (mut items, mut files, mut bytes) = (Vec::new(), 0usize, 0u64);
    let lon_c = (spec.bbox.west + spec.bbox.east) / 2.0;
    for (date, p) in spec.passes() {
        let pass = spec.pass(date, p);
        let (platform, prefix, _) = PLATFORMS[p];
        let (year, month) = (date.year(), date.month());
        for &(c0, r0) in &spec.tiles()? {
            let grid_err =
                |e: eocube::grid::GridError| SynthError::Grid { path: dir.to_path_buf(), reason: e.to_string() };
            let mut qa_band = vec![qa::FILL; n * n];
            let mut class = vec![0u8; n * n];
            let mut lonlat = vec![(0.0, 0.0); n * n];
            for r in 0..n {
                for c in 0..n {
                    let (gc, gr) = (c0 + c as i64, r0 + r as i64);
                    let (x, y) = centre(gc, gr);
                    let (lon, lat) = to_lonlat.transform(x, y).map_err(grid_err)?;
                    let l7 = if prefix == "LE07" { gap(gc, gr) } else { None };
                    let i = r * n + c;
                    (qa_band[i], class[i]) = pixel_qa(&pass, year, month, lon, lat, hash3(pass.seed, gr, gc), l7);
                    lonlat[i] = (lon, lat);
                }
            }
            if qa_band.iter().all(|&q| q == qa::FILL) {
                continue;
            }
            let path_row = format!("{:03}{:03}", c0.rem_euclid(233), r0.rem_euclid(248));
            let id = format!("{prefix}_L2SP_{path_row}_{}_02_T1", date.format("%Y%m%d"));
            let rel_dir = format!("{COLLECTION}/{id}");
            let scene_dir = dir.join(&rel_dir);
            std::fs::create_dir_all(&scene_dir).map_err(io_err(&scene_dir, "creating the directory"))?;
            let (x0, y0) = (c0 as f64 * PIXEL_M, -(r0 as f64) * PIXEL_M);
            let gb = GeoBox::new(crs.clone(), Affine::north_up(x0, y0, PIXEL_M, PIXEL_M), Shape { ny: n, nx: n });
            let opts = |r| CogOptions { tile_size: spec.tile_px, overview_resampling: r, deflate_level: 1 };
            bytes += write_cog(
                &scene_dir.join("qa_pixel.tif"),
                &CogImage { geobox: &gb, data: CogData::U16(&qa_band), nodata: Some(1.0) },
                &opts(Resampling::Nearest),
            )?;
            for &(name, _, bi) in &bands {
                let data: Vec<u16> = (0..n * n)
                    .map(|i| {
                        let (gc, gr) = (c0 + (i % n) as i64, r0 + (i / n) as i64);
                        if qa_band[i] == qa::FILL || (prefix == "LE07" && gap(gc, gr).is_some()) {
                            return 0;
                        }
                        let (lon, lat) = lonlat[i];
                        let (ci, cj) = truth::cell_of(lon, lat);
                        let t = truth_of_cell(bi, year, month, ci, cj);
                        let h = if matches!(class[i], 8 | 9) { hash3(pass.seed ^ bi as u64, ci, cj) } else { 0 };
                        landsat_dn(truth::observed(class[i], t, bi, h))
                    })
                    .collect();
                bytes += write_cog(
                    &scene_dir.join(format!("{name}.tif")),
                    &CogImage { geobox: &gb, data: CogData::U16(&data), nodata: Some(0.0) },
                    &opts(Resampling::Average),
                )?;
            }
            files += bands.len() + 1;
            let cloudy = qa_band.iter().filter(|&&q| q & 0b1_1110 != 0).count();
            let valid = qa_band.iter().filter(|&&q| q != qa::FILL).count().max(1);
            // Landsat passes about 10:10 local solar time.
            let seconds = ((10.17 - lon_c / 15.0).clamp(0.5, 23.0) * 3600.0) as i64;
            let footprint = gb.footprint(&Crs::wgs84(), 4).map_err(grid_err)?.ring;
            items.push(item_json(&ItemParts {
                id: &id,
                rel_dir: &rel_dir,
                platform,
                date,
                seconds,
                epsg,
                gb: &gb,
                footprint: &footprint,
                bands: &bands,
                cloud_cover: (1e4 * 100.0 * cloudy as f64 / valid as f64).round() / 1e4,
            }));
        }
    }
    let scenes = items.len();
    bytes += write_json(&dir.join("items.json"), &json!({ "type": "FeatureCollection", "features": items }))?;
    let zone = epsg % 100;
    Ok(Archive { dir: dir.to_path_buf(), items, files: files + 1, bytes, scenes, zones: vec![zone] })
}

struct ItemParts<'a> {
    id: &'a str,
    rel_dir: &'a str,
    platform: &'a str,
    date: NaiveDate,
    seconds: i64,
    epsg: u32,
    gb: &'a GeoBox,
    footprint: &'a [(f64, f64)],
    bands: &'a [(&'static str, &'static str, usize)],
    cloud_cover: f64,
}

/// An item as Earth Search v1's `landsat-c2-l2` writes them (the fields eocube and odc-stac
/// read; see `crates/eocube/tests/data/stac/shaped/earth-search-landsat-c2-l2.json`).
fn item_json(p: &ItemParts) -> Value {
    let ring: Vec<[f64; 2]> = p.footprint.iter().map(|&(x, y)| [round9(x), round9(y)]).collect();
    let bbox = Bbox::from_points(ring.iter().map(|q| (q[0], q[1])))
        .map(|b| vec![b.west, b.south, b.east, b.north])
        .unwrap_or_default();
    let (h, m, s) = (p.seconds / 3600, (p.seconds / 60) % 60, p.seconds % 60);
    let datetime = format!("{}T{h:02}:{m:02}:{s:02}.000000Z", p.date.format("%Y-%m-%d"));
    let a = p.gb.affine;
    let asset = |key: &str, title: &str, raster: Value, eo: Value, roles: Value| {
        json!({
            "href": format!("{}/{key}.tif", p.rel_dir),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "title": title,
            "proj:shape": [p.gb.shape.ny, p.gb.shape.nx],
            "proj:transform": [a.a, a.b, a.c, a.d, a.e, a.f],
            "raster:bands": [raster],
            "eo:bands": eo,
            "roles": roles
        })
    };
    let mut assets = serde_json::Map::new();
    for &(name, file, _) in p.bands {
        let raster = json!({"nodata": 0, "data_type": "uint16", "spatial_resolution": 30, "scale": SCALE, "offset": OFFSET, "unit": "reflectance"});
        let eo = json!([{ "name": file, "common_name": name }]);
        assets.insert(
            name.into(),
            asset(name, &format!("{file} surface reflectance"), raster, eo, json!(["data", "reflectance"])),
        );
    }
    let raster = json!({"nodata": 1, "data_type": "uint16", "spatial_resolution": 30, "unit": "bit index"});
    assets.insert(
        "qa_pixel".into(),
        asset(
            "qa_pixel",
            "Pixel Quality Assessment Band (QA_PIXEL)",
            raster,
            json!([]),
            json!(["cloud", "cloud-shadow", "snow-ice", "water-mask"]),
        ),
    );
    let instruments = if p.platform == "landsat-7" { json!(["etm"]) } else { json!(["oli", "tirs"]) };
    json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://landsat.usgs.gov/stac/landsat-extension/v1.1.1/schema.json"
        ],
        "id": p.id,
        "collection": COLLECTION,
        "geometry": { "type": "Polygon", "coordinates": [ring] },
        "bbox": bbox,
        "properties": {
            "datetime": datetime,
            "platform": p.platform,
            "instruments": instruments,
            "eo:cloud_cover": p.cloud_cover,
            "proj:epsg": p.epsg,
            "landsat:collection_category": "T1",
            "landsat:collection_number": "02",
            "landsat:correction": "L2SP",
            "landsat:scene_id": p.id,
            "eocube:synthetic": true
        },
        "assets": assets,
        "links": []
    })
}

/// The cube a build of the archive must make with the default mask, nearest resampling and
/// monthly bins on the archive's lattice: for `bins` (year, month), the `ny` x `nx` pixels from
/// lattice pixel `(col0, row0)`, `bands` (Earth Search names) last: the true surface in Landsat
/// DNs where the month has a valid observation (clear, not a gap), else 0. Every valid
/// observation of a month shows the same surface, so any reducer of them is that value.
pub fn expected_cube(
    spec: &LandsatSpec,
    (col0, row0): (i64, i64),
    (ny, nx): (usize, usize),
    bins: &[(i32, u32)],
    bands: &[&str],
) -> Result<Vec<u16>, SynthError> {
    let band_ix: Vec<usize> = bands
        .iter()
        .map(|b| BANDS.iter().find(|(n, _, _)| n == b).map(|x| x.2))
        .collect::<Option<_>>()
        .ok_or_else(|| SynthError::InvalidSpec { field: "bands", reason: format!("{bands:?}") })?;
    let crs =
        Crs::from_epsg(spec.epsg()).map_err(|e| SynthError::InvalidSpec { field: "bbox", reason: e.to_string() })?;
    let to_lonlat = Transformer::new(&crs, &Crs::wgs84());
    let tiles = spec.tiles()?;
    let n = spec.scene_px as i64;
    let passes = spec.passes();
    let nb = bands.len();
    let mut out = vec![0u16; bins.len() * ny * nx * nb];
    for r in 0..ny {
        for c in 0..nx {
            let (gc, gr) = (col0 + c as i64, row0 + r as i64);
            let covered = tiles.iter().any(|&(c0, r0)| (c0..c0 + n).contains(&gc) && (r0..r0 + n).contains(&gr));
            if !covered {
                continue;
            }
            let (x, y) = centre(gc, gr);
            let (lon, lat) = to_lonlat
                .transform(x, y)
                .map_err(|e| SynthError::InvalidSpec { field: "bbox", reason: e.to_string() })?;
            for (t, &(year, month)) in bins.iter().enumerate() {
                let seen = passes.iter().filter(|(d, _)| (d.year(), d.month()) == (year, month)).any(|&(d, p)| {
                    let pass = spec.pass(d, p);
                    let l7 = if PLATFORMS[p].1 == "LE07" { gap(gc, gr) } else { None };
                    let (q, _) = pixel_qa(&pass, year, month, lon, lat, hash3(pass.seed, gr, gc), l7);
                    // default mask: fill, dilated cloud, cirrus, cloud, shadow; a gap is no data
                    q & 0b1_1111 == 0 && l7.is_none()
                });
                if seen {
                    let (ci, cj) = truth::cell_of(lon, lat);
                    for (k, &bi) in band_ix.iter().enumerate() {
                        out[((t * ny + r) * nx + c) * nb + k] = landsat_dn(truth_of_cell(bi, year, month, ci, cj));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qa_values_decode_as_the_usgs_guide_says() {
        use eocube::sensor::landsat::{QaDecoder, code};
        let d = QaDecoder::new(&eocube::sensor::landsat::DEFAULT_INVALID);
        assert_eq!(qa::CLEAR, 21824);
        assert_eq!(d.code(qa::FILL), code::NO_DATA);
        for q in [qa::CLEAR, qa::WATER, qa::MEDIUM_CLOUD_CONFIDENCE] {
            assert_eq!(d.code(q), code::VALID, "{q}");
        }
        for q in [qa::CLOUD, qa::DILATED_CLOUD, qa::CIRRUS, qa::SHADOW] {
            assert_eq!(d.code(q), code::INVALID, "{q}");
        }
        assert_eq!(landsat_dn(1000), 7273, "reflectance 0");
        assert_eq!(landsat_dn(0), 0);
    }

    #[test]
    fn passes_take_turns_and_l7_has_gaps() {
        let spec = LandsatSpec::demo();
        let passes = spec.passes();
        let platforms: Vec<usize> = passes.iter().take(3).map(|p| p.1).collect();
        assert_eq!(platforms, [0, 2, 1], "L8 on day 0, L7 on day 4, L9 on day 8");
        let gaps = (0..230).filter(|&c| gap(c, 0).is_some()).count();
        assert_eq!(gaps, 20);
        assert!((0..230).any(|c| gap(c, 0) == Some(false)), "some gaps keep a clear QA");
    }
}
