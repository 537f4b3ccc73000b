//! The known true surface of the synthetic archive: per month, piecewise constant on lon/lat
//! cells of [`CELL_DEG`] degrees, and the cloud / swath fields of each pass.
//!
//! Everything here is a pure function of its arguments (integer hashing, no random state), so
//! scenes of one pass agree where they overlap and a test can recompute any value.

/// Edge of a truth cell in degrees (about 550 m north-south, 400 m east-west at 44°N).
pub const CELL_DEG: f64 = 0.005;
/// Fields are square blocks of this many cells (about 2 km).
const FIELD_CELLS: i64 = 4;

/// Earth Search names of the reflectance bands the archive can hold, in band-number order; a
/// band's index here is the `band_index` of [`truth`].
pub const REFLECTANCE_BANDS: &[&str] = &[
    "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09", "swir16", "swir22",
];

/// Band numbers (`B04`), centre wavelengths (µm) and native resolution (m) of [`REFLECTANCE_BANDS`].
pub(crate) const BAND_INFO: &[(&str, f64, u32)] = &[
    ("B01", 0.443, 60),
    ("B02", 0.49, 10),
    ("B03", 0.56, 10),
    ("B04", 0.665, 10),
    ("B05", 0.704, 20),
    ("B06", 0.74, 20),
    ("B07", 0.783, 20),
    ("B08", 0.842, 10),
    ("B8A", 0.865, 20),
    ("B09", 0.945, 60),
    ("B11", 1.61, 20),
    ("B12", 2.19, 20),
];

/// Reflectance of green vegetation, bare soil and water per band (rough library spectra).
const VEG: [f64; 12] = [0.03, 0.03, 0.07, 0.035, 0.10, 0.25, 0.32, 0.36, 0.37, 0.37, 0.18, 0.08];
const SOIL: [f64; 12] = [0.10, 0.12, 0.16, 0.21, 0.23, 0.25, 0.26, 0.27, 0.28, 0.28, 0.33, 0.28];
const WATER: [f64; 12] = [0.06, 0.05, 0.05, 0.03, 0.025, 0.02, 0.015, 0.012, 0.01, 0.01, 0.005, 0.003];

/// The index in [`REFLECTANCE_BANDS`] of a band given by Earth Search name or band number.
pub fn band_index(name: &str) -> Option<usize> {
    let aliases = eocube::catalog::band_aliases(name);
    REFLECTANCE_BANDS.iter().position(|b| aliases.iter().any(|a| a.eq_ignore_ascii_case(b)))
}

/// What covers a cell in a month.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cover {
    Water,
    /// Land with this green-vegetation fraction (0..1).
    Land(f64),
}

/// splitmix64 finalizer: a well-mixed 64-bit hash of `x`.
#[inline]
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[inline]
pub(crate) fn hash3(a: u64, b: i64, c: i64) -> u64 {
    mix(mix(a ^ mix(b as u64)) ^ (c as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

/// A hash as a number in [0, 1).
#[inline]
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Value noise in [0, 1]: hashed lattice values, smoothly interpolated.
#[inline]
pub(crate) fn value_noise(seed: u64, x: f64, y: f64) -> f64 {
    let (i, j) = (floor_i64(x), floor_i64(y));
    let (fx, fy) = (x - i as f64, y - j as f64);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let v = |di: i64, dj: i64| unit(hash3(seed, i + di, j + dj));
    let top = v(0, 0) + (v(1, 0) - v(0, 0)) * sx;
    let bottom = v(0, 1) + (v(1, 1) - v(0, 1)) * sx;
    top + (bottom - top) * sy
}

/// The truth cell holding `(lon, lat)`.
#[inline]
pub fn cell_of(lon: f64, lat: f64) -> (i64, i64) {
    (floor_i64(lon / CELL_DEG), floor_i64(lat / CELL_DEG))
}

/// `x.floor() as i64` without the libm call `floor` compiles to on baseline x86-64 (no SSE4.1):
/// this runs for every pixel.
#[inline]
pub(crate) fn floor_i64(x: f64) -> i64 {
    let t = x as i64;
    if (t as f64) > x { t - 1 } else { t }
}

/// Land cover of cell `(ci, cj)` in `month` (1-12) of `year`: lakes from a smooth field, then
/// fields of forest, crops, grass or bare ground, whose greenness follows the season.
pub(crate) fn cover(year: i32, month: u32, ci: i64, cj: i64) -> Cover {
    let (lon, lat) = ((ci as f64 + 0.5) * CELL_DEG, (cj as f64 + 0.5) * CELL_DEG);
    // lakes: a smooth blob field about 5 km across, independent of the month
    if value_noise(0x1A4E, lon / 0.05, lat / 0.05) * 0.7 + value_noise(0x1A4F, lon / 0.017, lat / 0.017) * 0.3 > 0.78 {
        return Cover::Water;
    }
    let (fi, fj) = (ci.div_euclid(FIELD_CELLS), cj.div_euclid(FIELD_CELLS));
    let kind = hash3(0xF1E1D, fi, fj) % 10;
    // Northern summer peaks in July, southern in January.
    let peak = if lat >= 0.0 { 7.0 } else { 1.0 };
    let season = (((f64::from(month) - peak) * std::f64::consts::PI / 6.0).cos() + 1.0) / 2.0; // 1 at peak
    // each field's crop greens up a little earlier or later than its neighbours
    let shift = (unit(hash3(0x5EA5, fi, fj)) - 0.5) * 0.3;
    let year_wobble = unit(hash3(0x7EA2, i64::from(year), fi ^ fj)) * 0.1;
    let v = match kind {
        0..=3 => 0.55 + 0.4 * season,                             // forest
        4..=6 => ((season + shift) * 1.3 - 0.35).clamp(0.0, 1.0), // crops
        7 | 8 => 0.3 + 0.45 * season,                             // grass
        _ => 0.05 + 0.1 * season,                                 // bare / built
    };
    Cover::Land((v + year_wobble - 0.05).clamp(0.0, 1.0))
}

/// The true surface reflectance of band `band_index` (see [`REFLECTANCE_BANDS`]) in `month` of
/// `year` at `(lon, lat)`, as a Collection-1 digital number (`1000 + reflectance * 10000`).
/// Constant on each [`CELL_DEG`] cell; never 0 (the nodata value). Unknown band indices get a
/// flat grey.
pub fn truth(band_index: usize, year: i32, month: u32, lon: f64, lat: f64) -> u16 {
    let (ci, cj) = cell_of(lon, lat);
    truth_of_cell(band_index, year, month, ci, cj)
}

/// [`truth`] of cell `(ci, cj)`.
pub(crate) fn truth_of_cell(band_index: usize, year: i32, month: u32, ci: i64, cj: i64) -> u16 {
    let b = band_index.min(VEG.len() - 1);
    let (lon, lat) = ((ci as f64 + 0.5) * CELL_DEG, (cj as f64 + 0.5) * CELL_DEG);
    // a gentle regional gradient (brightness varies over ~30 km) and a little per-cell texture
    let gradient = ((lon * 9.0).sin() * (lat * 7.0).cos() + (lon * 2.3 + lat * 3.1).sin()) * 0.015;
    let texture = (unit(hash3(0x7E27 + b as u64, ci, cj)) - 0.5) * 0.012;
    let rho = match cover(year, month, ci, cj) {
        Cover::Water => WATER[b] + texture * 0.3,
        Cover::Land(v) => SOIL[b] * (1.0 - v) + VEG[b] * v + gradient + texture,
    };
    let rho = if band_index < VEG.len() { rho } else { 0.2 + gradient };
    (1000.0 + rho.clamp(0.0, 5.0) * 10000.0).round() as u16
}

/// The scene classification of clear ground in a cell: 6 water, 4 vegetation, 5 bare.
pub(crate) fn clear_class(year: i32, month: u32, ci: i64, cj: i64) -> u8 {
    match cover(year, month, ci, cj) {
        Cover::Water => 6,
        Cover::Land(v) if v >= 0.45 => 4,
        Cover::Land(_) => 5,
    }
}

/// One pass (acquisition date) of the synthetic satellite: its clouds and its swath edge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    pub seed: u64,
    /// Cloud where the cloud field exceeds this (1 = no clouds).
    pub threshold: f64,
    /// Swath edge `lon = lon0 + slope * (lat - lat0)`; valid on the west side when `west_valid`.
    pub edge: Option<SwathEdge>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SwathEdge {
    pub lon0: f64,
    pub lat0: f64,
    pub slope: f64,
    pub west_valid: bool,
}

impl SwathEdge {
    /// Signed distance-like value: positive inside the swath.
    #[inline]
    pub fn inside(&self, lon: f64, lat: f64) -> f64 {
        let d = self.lon0 + self.slope * (lat - self.lat0) - lon;
        if self.west_valid { d } else { -d }
    }
}

/// Cloud-shadow displacement (degrees): shadows fall north-west of their clouds.
const SHADOW_DLON: f64 = -0.006;
const SHADOW_DLAT: f64 = 0.004;

impl Pass {
    /// The pass on day number `k` of an archive with `seed`, over a region centred at
    /// `(lon_c, lat_c)` about `width` degrees wide.
    pub fn new(seed: u64, k: i64, lon_c: f64, lat_c: f64, width: f64) -> Pass {
        let h = |salt: u64| unit(hash3(seed ^ salt, k, 0));
        let cloudiness = match h(1) {
            u if u < 0.35 => 0.02 + 0.05 * h(2),
            u if u < 0.8 => 0.15 + 0.4 * h(2),
            _ => 0.65 + 0.3 * h(2),
        };
        let edge = (h(3) < 0.4).then(|| SwathEdge {
            lon0: lon_c + (h(4) - 0.5) * 0.8 * width,
            lat0: lat_c,
            slope: 0.15 + 0.2 * h(5),
            west_valid: h(6) < 0.5,
        });
        Pass { seed: mix(seed ^ mix(k as u64)), threshold: 1.0 - cloudiness, edge }
    }

    #[inline]
    fn cloud(&self, lon: f64, lat: f64) -> f64 {
        // 0.7 of a ~2 km field + 0.3 of a ~700 m field, stretched so thresholds cover [0, 1]
        let n = value_noise(self.seed, lon / 0.02, lat / 0.02) * 0.7
            + value_noise(self.seed ^ 0xC10D, lon / 0.007, lat / 0.007) * 0.3;
        ((n - 0.5) * 1.8 + 0.5).clamp(0.0, 1.0)
    }

    /// True inside the swath (where the scene has data).
    #[inline]
    pub fn covers(&self, lon: f64, lat: f64) -> bool {
        self.edge.is_none_or(|e| e.inside(lon, lat) > 0.0)
    }

    /// The scene classification at `(lon, lat)` (a 20 m pixel centre): 0 outside the swath,
    /// clouds 9 / 8 / 10 by density, shadow 3, otherwise the ground's class (with a sprinkle of
    /// 7, unclassified, drawn from `pixel_hash`).
    /// `cache` remembers the last cell's class (neighbouring pixels mostly share a cell).
    #[inline]
    pub fn scl(
        &self,
        year: i32,
        month: u32,
        lon: f64,
        lat: f64,
        pixel_hash: u64,
        cache: &mut Option<((i64, i64), u8)>,
    ) -> u8 {
        if !self.covers(lon, lat) {
            return 0;
        }
        if self.threshold < 1.0 {
            let c = self.cloud(lon, lat);
            if c > self.threshold + 0.1 {
                return 9;
            }
            if c > self.threshold + 0.04 {
                return 8;
            }
            if c > self.threshold {
                return 10;
            }
            if self.cloud(lon - SHADOW_DLON, lat - SHADOW_DLAT) > self.threshold + 0.04 {
                return 3;
            }
        }
        if pixel_hash.is_multiple_of(100) {
            return 7;
        }
        let cell = cell_of(lon, lat);
        match cache {
            Some((k, v)) if *k == cell => *v,
            _ => {
                let v = clear_class(year, month, cell.0, cell.1);
                *cache = Some((cell, v));
                v
            }
        }
    }
}

/// The digital number of a 10 m pixel of class `scl` whose true value is `truth`.
#[inline]
pub(crate) fn observed(scl: u8, truth: u16, band_index: usize, pixel_hash: u64) -> u16 {
    let t = f64::from(truth);
    match scl {
        0 => 0,
        // clouds: bright, slightly bluer, textured by `pixel_hash`
        8 | 9 => {
            let base = if scl == 9 { 0.72 } else { 0.48 };
            let blue = if band_index <= 2 { 0.05 } else { 0.0 };
            let speckle = unit(pixel_hash) * 0.04;
            (1000.0 + (base + blue + speckle) * 10000.0) as u16
        }
        10 => (t + 1200.0).min(65535.0) as u16, // thin cirrus: a haze over the ground
        3 => (1000.0 + (t - 1000.0) * 0.45) as u16, // shadow: darker ground
        _ => truth,
    }
}
