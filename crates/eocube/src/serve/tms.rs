//! WebMercatorQuad tile math and the map from a tile's pixels to a level's pixels.
//!
//! Owns: the OGC WebMercatorQuad tile matrix set (EPSG:3857, 256-px tiles, z 0..=24, top-left
//! origin), tile bounds and pixel centres, the choice of a pyramid level for a tile, and the
//! bound on the pixels one tile may read. Must not touch: pixel values, I/O or HTTP.
//!
//! A tile is sampled at its 256 x 256 pixel centres. Their longitudes depend on the column only
//! and their latitudes on the row only (Web Mercator is separable), so those are exact; from
//! lon/lat to the cube's CRS the [`Transformer`] is used, on a 17 x 17 lattice interpolated
//! bilinearly when that is within an eighth of a tile pixel of the exact transform at every
//! cell's centre (as GDAL's approximate transformer does), and per pixel otherwise.

use crate::grid::{Bbox, Crs, GeoBox, PixelWindow, Transformer};

/// Tile edge in pixels.
pub const TILE_SIZE: usize = 256;
/// Deepest tile matrix of WebMercatorQuad (OGC 17-083r4 defines 0 to 24).
pub const MAX_ZOOM: u32 = 24;
/// Half the extent of EPSG:3857 in metres (pi times the WGS 84 semi-major axis).
pub const ORIGIN_SHIFT: f64 = std::f64::consts::PI * EARTH_RADIUS;
/// The sphere radius of EPSG:3857.
pub const EARTH_RADIUS: f64 = 6_378_137.0;
/// Latitude limit of WebMercatorQuad (where y = +-ORIGIN_SHIFT).
pub const MAX_LATITUDE: f64 = 85.051_128_779_806_59;
/// Default bound on the level pixels read for one tile (per band): 4096 x 4096. Past it the
/// answer is 413 with the advice to build overviews.
pub const DEFAULT_MAX_PIXELS: usize = 4096 * 4096;
/// Index of a tile pixel that falls outside the level (it is fill).
pub const OUTSIDE: u32 = u32::MAX;

/// Lattice step of the approximate transform, in tile pixels (17 x 17 points per tile).
const APPROX_STEP: usize = 16;
/// Largest error of the approximate transform, in tile pixels, before it falls back to exact.
const APPROX_MAX_ERROR_PX: f64 = 0.125;

/// Why a tile request cannot be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TileError {
    #[error("zoom {z} is outside WebMercatorQuad's tile matrices 0 to {MAX_ZOOM}")]
    Zoom { z: u64 },
    #[error("tile column {x} is outside 0 to {} at zoom {z}", (1u64 << z) - 1)]
    Column { z: u32, x: u64 },
    #[error("tile row {y} is outside 0 to {} at zoom {z}", (1u64 << z) - 1)]
    Row { z: u32, y: u64 },
    /// The tile would read more than the bound of pixels from the best level there is.
    #[error(
        "tile {z}/{x}/{y} covers {width} x {height} pixels of level {level}, more than the {max} pixels one tile may read"
    )]
    TooManyPixels { z: u32, x: u64, y: u64, level: usize, width: usize, height: usize, max: usize },
}

/// One tile of WebMercatorQuad: zoom `z`, column `x` (from the west), row `y` (from the north).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    pub z: u32,
    pub x: u64,
    pub y: u64,
}

impl TileId {
    /// A tile of the matrix set: `z <= 24`, `x, y < 2^z`.
    pub fn new(z: u64, x: u64, y: u64) -> Result<TileId, TileError> {
        let z = u32::try_from(z).ok().filter(|z| *z <= MAX_ZOOM).ok_or(TileError::Zoom { z })?;
        let n = 1u64 << z;
        if x >= n {
            return Err(TileError::Column { z, x });
        }
        if y >= n {
            return Err(TileError::Row { z, y });
        }
        Ok(TileId { z, x, y })
    }

    /// The tile holding `(lon, lat)` at zoom `z` (latitudes clamped to the matrix set's range).
    pub fn containing(lon: f64, lat: f64, z: u32) -> TileId {
        let z = z.min(MAX_ZOOM);
        let n = (1u64 << z) as f64;
        let (mx, my) = lonlat_to_mercator(lon, lat.clamp(-MAX_LATITUDE, MAX_LATITUDE));
        let fx = ((mx + ORIGIN_SHIFT) / tile_span(z)).floor().clamp(0.0, n - 1.0);
        let fy = ((ORIGIN_SHIFT - my) / tile_span(z)).floor().clamp(0.0, n - 1.0);
        TileId { z, x: fx as u64, y: fy as u64 }
    }

    /// The tile's edges in EPSG:3857 metres.
    pub fn bounds(&self) -> Bbox {
        let span = tile_span(self.z);
        let west = -ORIGIN_SHIFT + self.x as f64 * span;
        let north = ORIGIN_SHIFT - self.y as f64 * span;
        Bbox { west, south: north - span, east: west + span, north }
    }

    /// The tile's edges in degrees.
    pub fn lonlat_bounds(&self) -> Bbox {
        let b = self.bounds();
        let (west, south) = mercator_to_lonlat(b.west, b.south);
        let (east, north) = mercator_to_lonlat(b.east, b.north);
        Bbox { west, south, east, north }
    }

    /// EPSG:3857 coordinates of the centre of tile pixel `(col, row)`.
    pub fn pixel_centre(&self, col: usize, row: usize) -> (f64, f64) {
        let b = self.bounds();
        let res = resolution(self.z);
        (b.west + (col as f64 + 0.5) * res, b.north - (row as f64 + 0.5) * res)
    }
}

impl std::fmt::Display for TileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.z, self.x, self.y)
    }
}

/// Edge of one tile at zoom `z`, in EPSG:3857 metres.
pub fn tile_span(z: u32) -> f64 {
    2.0 * ORIGIN_SHIFT / (1u64 << z.min(63)) as f64
}

/// Metres per pixel at zoom `z` (at the equator).
pub fn resolution(z: u32) -> f64 {
    tile_span(z) / TILE_SIZE as f64
}

/// OGC scale denominator of zoom `z` (0.28 mm standardized rendering pixels).
pub fn scale_denominator(z: u32) -> f64 {
    resolution(z) / 0.00028
}

pub fn lonlat_to_mercator(lon: f64, lat: f64) -> (f64, f64) {
    let x = lon.to_radians() * EARTH_RADIUS;
    let y = (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0).tan().ln() * EARTH_RADIUS;
    (x, y)
}

pub fn mercator_to_lonlat(x: f64, y: f64) -> (f64, f64) {
    ((x / EARTH_RADIUS).to_degrees(), (y / EARTH_RADIUS).sinh().atan().to_degrees())
}

/// The cube's CRS coordinates of every pixel centre of one tile, row-major (`NaN` where the
/// point is not in the cube's neighbourhood or cannot be transformed).
#[derive(Debug, Clone)]
pub struct TileCoords {
    pub tile: TileId,
    pub xy: Vec<(f64, f64)>,
    /// Whether the lattice approximation was used (for tests and benchmarks).
    pub approximate: bool,
}

/// Where the cube is, for mapping tiles onto it: its CRS and its lon/lat extent (points outside
/// that extent, grown by a margin, are never transformed: a transverse Mercator far from its
/// zone folds back onto the grid).
#[derive(Debug, Clone)]
pub struct CubeFrame {
    pub crs: Crs,
    pub lonlat: Bbox,
    to_crs: Transformer,
}

impl CubeFrame {
    /// The frame of a cube whose level 0 is `geobox`.
    pub fn new(geobox: &GeoBox) -> CubeFrame {
        let wgs84 = Crs::wgs84();
        let lonlat = geobox.footprint(&wgs84, 16).ok().and_then(|p| p.bbox()).unwrap_or(Bbox {
            west: -180.0,
            south: -90.0,
            east: 180.0,
            north: 90.0,
        });
        CubeFrame { crs: geobox.crs.clone(), lonlat, to_crs: Transformer::new(&wgs84, &geobox.crs) }
    }

    /// The lon/lat extent grown by 10 % and 0.01 degree on each side.
    fn guard(&self) -> Bbox {
        let m = 0.1 * self.lonlat.width().max(self.lonlat.height()) + 0.01;
        self.lonlat.buffered(m)
    }

    /// Whether the tile can touch the cube at all.
    pub fn touches(&self, tile: &TileId) -> bool {
        self.guard().intersects(&tile.lonlat_bounds())
    }

    /// The CRS coordinates of the tile's pixel centres.
    pub fn coords(&self, tile: &TileId) -> TileCoords {
        let n = TILE_SIZE;
        let res = resolution(tile.z);
        let b = tile.bounds();
        let lons: Vec<f64> = (0..=n).map(|c| mercator_to_lonlat(b.west + c as f64 * res, 0.0).0).collect();
        let lats: Vec<f64> = (0..=n).map(|r| mercator_to_lonlat(0.0, b.north - r as f64 * res).1).collect();
        // Pixel centres, from the half-pixel positions (exact, per axis).
        let clon: Vec<f64> = (0..n).map(|c| mercator_to_lonlat(b.west + (c as f64 + 0.5) * res, 0.0).0).collect();
        let clat: Vec<f64> = (0..n).map(|r| mercator_to_lonlat(0.0, b.north - (r as f64 + 0.5) * res).1).collect();
        let guard = self.guard();
        let inside =
            |lon: f64, lat: f64| lon >= guard.west && lon <= guard.east && lat >= guard.south && lat <= guard.north;
        if self.to_crs.src() == self.to_crs.dst() {
            let mut xy = Vec::with_capacity(n * n);
            for &lat in &clat {
                for &lon in &clon {
                    xy.push(if inside(lon, lat) { (lon, lat) } else { (f64::NAN, f64::NAN) });
                }
            }
            return TileCoords { tile: *tile, xy, approximate: false };
        }
        if let Some(xy) = self.approximate(&lons, &lats, &clon, &clat, &inside) {
            return TileCoords { tile: *tile, xy, approximate: true };
        }
        let mut xy = Vec::with_capacity(n * n);
        for &lat in &clat {
            for &lon in &clon {
                let p = if inside(lon, lat) { self.to_crs.transform(lon, lat).ok() } else { None };
                xy.push(p.unwrap_or((f64::NAN, f64::NAN)));
            }
        }
        TileCoords { tile: *tile, xy, approximate: false }
    }

    /// The lattice approximation, or `None` when it is not good enough (or a lattice point
    /// cannot be transformed or lies outside the guard: the exact path handles edges).
    fn approximate(
        &self,
        lons: &[f64],
        lats: &[f64],
        clon: &[f64],
        clat: &[f64],
        inside: &dyn Fn(f64, f64) -> bool,
    ) -> Option<Vec<(f64, f64)>> {
        let n = TILE_SIZE;
        let k = n / APPROX_STEP + 1;
        let mut lattice = Vec::with_capacity(k * k);
        for i in 0..k {
            for j in 0..k {
                let (lon, lat) = (lons[j * APPROX_STEP], lats[i * APPROX_STEP]);
                if !inside(lon, lat) {
                    return None;
                }
                lattice.push(self.to_crs.transform(lon, lat).ok()?);
            }
        }
        // Position (u, v) in tile pixels, 0..=256 along each axis.
        let at = |u: f64, v: f64| -> (f64, f64) {
            let s = APPROX_STEP as f64;
            let (fu, fv) = (u / s, v / s);
            let (j, i) = ((fu.floor() as usize).min(k - 2), (fv.floor() as usize).min(k - 2));
            let (tu, tv) = (fu - j as f64, fv - i as f64);
            let p = |i: usize, j: usize| lattice[i * k + j];
            let (a, b, c, d) = (p(i, j), p(i, j + 1), p(i + 1, j), p(i + 1, j + 1));
            let x = (a.0 * (1.0 - tu) + b.0 * tu) * (1.0 - tv) + (c.0 * (1.0 - tu) + d.0 * tu) * tv;
            let y = (a.1 * (1.0 - tu) + b.1 * tu) * (1.0 - tv) + (c.1 * (1.0 - tu) + d.1 * tu) * tv;
            (x, y)
        };
        // One tile pixel in CRS units, from the lattice's first cell (its diagonal over 16 sqrt 2).
        let cell = {
            let (a, b) = (lattice[0], lattice[k + 1]);
            ((b.0 - a.0).hypot(b.1 - a.1) / (APPROX_STEP as f64 * std::f64::consts::SQRT_2)).max(f64::MIN_POSITIVE)
        };
        for i in 0..k - 1 {
            for j in 0..k - 1 {
                let (u, v) = ((j * APPROX_STEP + APPROX_STEP / 2) as f64, (i * APPROX_STEP + APPROX_STEP / 2) as f64);
                let lon = mercator_lon_at(lons, u);
                let lat = mercator_lat_at(lats, v);
                let exact = self.to_crs.transform(lon, lat).ok()?;
                let approx = at(u, v);
                if (exact.0 - approx.0).hypot(exact.1 - approx.1) > APPROX_MAX_ERROR_PX * cell {
                    return None;
                }
            }
        }
        let mut xy = Vec::with_capacity(n * n);
        for (r, &lat) in clat.iter().enumerate() {
            for (c, &lon) in clon.iter().enumerate() {
                xy.push(if inside(lon, lat) { at(c as f64 + 0.5, r as f64 + 0.5) } else { (f64::NAN, f64::NAN) });
            }
        }
        Some(xy)
    }
}

/// Longitude at tile pixel position `u` (linear in u: any two lattice longitudes give it).
fn mercator_lon_at(lons: &[f64], u: f64) -> f64 {
    let n = (lons.len() - 1) as f64;
    lons[0] + (lons[lons.len() - 1] - lons[0]) * u / n
}

/// Latitude at tile pixel position `v` (not linear: through the Mercator y, which is).
fn mercator_lat_at(lats: &[f64], v: f64) -> f64 {
    let n = (lats.len() - 1) as f64;
    let y0 = lonlat_to_mercator(0.0, lats[0]).1;
    let y1 = lonlat_to_mercator(0.0, lats[lats.len() - 1]).1;
    mercator_to_lonlat(0.0, y0 + (y1 - y0) * v / n).1
}

/// Which level pixel each tile pixel takes (nearest: the pixel whose area holds the centre).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMap {
    pub level: usize,
    /// The part of the level read: the bounding window of the sampled pixels.
    pub window: PixelWindow,
    /// Per tile pixel, row-major: the index into `window` (row-major), or [`OUTSIDE`].
    pub index: Vec<u32>,
}

impl SampleMap {
    /// Pixels of the level this tile reads (per band).
    pub fn pixels(&self) -> usize {
        self.window.width * self.window.height
    }
}

impl CubeFrame {
    /// The part of the tile over the cube's lon/lat extent, or `None`.
    pub fn overlap(&self, tile: &TileId) -> Option<Bbox> {
        let t = tile.lonlat_bounds();
        let b = &self.lonlat;
        let o = Bbox {
            west: t.west.max(b.west),
            south: t.south.max(b.south),
            east: t.east.min(b.east),
            north: t.north.min(b.north),
        };
        (o.west < o.east && o.south < o.north).then_some(o)
    }

    /// How many pixels of `level0` one tile pixel spans where the tile meets the cube (the
    /// smaller of the two axes, so the level chosen is fine enough along both), or `None` when
    /// the tile misses the cube or the point cannot be transformed.
    pub fn ratio(&self, tile: &TileId, level0: &GeoBox) -> Option<f64> {
        let o = self.overlap(tile)?;
        let (lon, lat) = ((o.west + o.east) / 2.0, (o.south + o.north) / 2.0);
        let (mx, my) = lonlat_to_mercator(lon, lat);
        let res = resolution(tile.z);
        let inv = level0.affine.inverse().ok()?;
        let px = |mx: f64, my: f64| -> Option<(f64, f64)> {
            let (lon, lat) = mercator_to_lonlat(mx, my);
            let (x, y) = self.to_crs.transform(lon, lat).ok()?;
            Some(inv.apply(x, y))
        };
        let (p0, px1, py1) = (px(mx, my)?, px(mx + res, my)?, px(mx, my - res)?);
        let dx = (px1.0 - p0.0).hypot(px1.1 - p0.1);
        let dy = (py1.0 - p0.0).hypot(py1.1 - p0.1);
        let r = dx.min(dy);
        (r.is_finite() && r > 0.0).then_some(r)
    }

    /// The pixels of `level` under the tile (its footprint, clipped to the level): what a tile
    /// stands for, whatever its pixel centres happen to sample.
    pub fn footprint(&self, tile: &TileId, level: &GeoBox) -> Option<PixelWindow> {
        let o = self.overlap(tile)?;
        let inv = level.affine.inverse().ok()?;
        let n = 8;
        let mut pts = Vec::with_capacity(4 * n + 4);
        for k in 0..=n {
            let f = k as f64 / n as f64;
            let (lon, lat) = (o.west + f * o.width(), o.south + f * o.height());
            pts.extend([(lon, o.south), (lon, o.north), (o.west, lat), (o.east, lat)]);
        }
        let cells =
            pts.into_iter().filter_map(|(lon, lat)| self.to_crs.transform(lon, lat).ok()).map(|(x, y)| inv.apply(x, y));
        let b = Bbox::from_points(cells)?;
        let (c0, r0) = (b.west.floor().max(0.0), b.south.floor().max(0.0));
        let (c1, r1) = (b.east.ceil().min(level.shape.nx as f64), b.north.ceil().min(level.shape.ny as f64));
        (c1 > c0 && r1 > r0).then_some(PixelWindow {
            row: r0 as i64,
            col: c0 as i64,
            height: (r1 - r0) as usize,
            width: (c1 - c0) as usize,
        })
    }

    /// The level a tile reads and the check of its footprint against the bound; `None` when the
    /// tile misses the cube.
    fn level_for(&self, tile: &TileId, levels: &[GeoBox], max_pixels: usize) -> Result<Option<usize>, TileError> {
        let Some(first) = levels.first() else { return Ok(None) };
        let Some(ratio) = self.ratio(tile, first) else { return Ok(None) };
        let level = choose_level(ratio, levels);
        if let Some(w) = self.footprint(tile, &levels[level])
            && w.width * w.height > max_pixels
        {
            return Err(TileError::TooManyPixels {
                z: tile.z,
                x: tile.x,
                y: tile.y,
                level,
                width: w.width,
                height: w.height,
                max: max_pixels,
            });
        }
        Ok(Some(level))
    }
}

/// The level a tile reads: the coarsest whose pixels are still at least as fine as the tile's
/// (`levels[0]` is full resolution; each level's scale is its pixel size over level 0's).
pub fn choose_level(ratio: f64, levels: &[GeoBox]) -> usize {
    let Some(first) = levels.first() else { return 0 };
    let base = first.affine.resolution().0;
    let mut chosen = 0;
    for (i, l) in levels.iter().enumerate() {
        let scale = l.affine.resolution().0 / base;
        // 1e-6: a level exactly at the tile's resolution counts as fine enough.
        if scale <= ratio * (1.0 + 1e-6) {
            chosen = i;
        }
    }
    chosen
}

/// The sample map of a tile on `level`, or `None` when the tile has no pixel on it.
pub fn sample_map(coords: &TileCoords, level_index: usize, level: &GeoBox) -> Option<SampleMap> {
    let inv = level.affine.inverse().ok()?;
    let (ny, nx) = (level.shape.ny as i64, level.shape.nx as i64);
    let mut cells: Vec<(i64, i64)> = Vec::with_capacity(coords.xy.len());
    let (mut r0, mut c0, mut r1, mut c1) = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
    for &(x, y) in &coords.xy {
        let cell = if x.is_finite() && y.is_finite() {
            let (c, r) = inv.apply(x, y);
            let (c, r) = (c.floor(), r.floor());
            if c >= 0.0 && r >= 0.0 && c < nx as f64 && r < ny as f64 { Some((r as i64, c as i64)) } else { None }
        } else {
            None
        };
        match cell {
            Some((r, c)) => {
                r0 = r0.min(r);
                r1 = r1.max(r);
                c0 = c0.min(c);
                c1 = c1.max(c);
                cells.push((r, c));
            }
            None => cells.push((-1, -1)),
        }
    }
    if r0 > r1 {
        return None;
    }
    let window = PixelWindow { row: r0, col: c0, height: (r1 - r0 + 1) as usize, width: (c1 - c0 + 1) as usize };
    let w = window.width as i64;
    let index =
        cells.into_iter().map(|(r, c)| if r < 0 { OUTSIDE } else { ((r - r0) * w + (c - c0)) as u32 }).collect();
    Some(SampleMap { level: level_index, window, index })
}

/// What a tile reads: `None` when it does not touch the cube (a transparent tile). The bound
/// applies to the tile's footprint on the chosen level, so that a tile over a whole cube without
/// overviews is refused even when its few pixel centres would read little.
pub fn plan_tile(
    frame: &CubeFrame,
    tile: &TileId,
    levels: &[GeoBox],
    max_pixels: usize,
) -> Result<Option<SampleMap>, TileError> {
    if !frame.touches(tile) {
        return Ok(None);
    }
    let Some(level) = frame.level_for(tile, levels, max_pixels)? else { return Ok(None) };
    let coords = frame.coords(tile);
    Ok(sample_map(&coords, level, &levels[level]))
}

/// The zooms a map should use: from the first zoom whose tile at the cube's centre is within
/// `max_pixels` to the first zoom whose pixels are finer than level 0's.
pub fn zoom_range(frame: &CubeFrame, levels: &[GeoBox], max_pixels: usize) -> (u32, u32) {
    let b = frame.lonlat;
    let (lon, lat) = ((b.west + b.east) / 2.0, (b.south + b.north) / 2.0);
    let mut minzoom = None;
    let mut maxzoom = MAX_ZOOM;
    for z in 0..=MAX_ZOOM {
        let tile = TileId::containing(lon, lat, z);
        if minzoom.is_none() && frame.level_for(&tile, levels, max_pixels).is_ok() {
            minzoom = Some(z);
        }
        if let Some(first) = levels.first()
            && frame.ratio(&tile, first).is_some_and(|r| r <= 1.0)
        {
            maxzoom = z;
            break;
        }
    }
    (minzoom.unwrap_or(maxzoom).min(maxzoom), maxzoom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Affine, Shape};

    fn geobox(epsg: u32, affine: Affine, ny: usize, nx: usize) -> GeoBox {
        GeoBox::new(Crs::from_epsg(epsg).unwrap(), affine, Shape { ny, nx })
    }

    /// The e2e cube's grid: 1/3600 degree, 360 x 216 px at (-72.05, 44.06).
    fn e2e() -> GeoBox {
        let r = 1.0 / 3600.0;
        geobox(4326, Affine::north_up(-72.05, 44.06, r, r), 216, 360)
    }

    #[test]
    fn tile_bounds_match_the_matrix_set() {
        let t = TileId::new(0, 0, 0).unwrap();
        let b = t.bounds();
        assert_eq!((b.west, b.north), (-ORIGIN_SHIFT, ORIGIN_SHIFT));
        assert!((b.east - ORIGIN_SHIFT).abs() < 1e-6 && (b.south + ORIGIN_SHIFT).abs() < 1e-6);
        assert!((ORIGIN_SHIFT - 20_037_508.342_789_244).abs() < 1e-6);
        // z 1, tile (1, 0): the north-east quarter
        let b = TileId::new(1, 1, 0).unwrap().bounds();
        assert!(b.west.abs() < 1e-9 && b.south.abs() < 1e-9);
        // mercantile: bounds(tile(-72, 44, 12)) = (-72.0703125, 43.9935..., -71.98242..., 44.0560...)
        let t = TileId::containing(-72.0, 44.0, 12);
        assert_eq!((t.x, t.y), (1228, 1489));
        let ll = t.lonlat_bounds();
        assert!((ll.west + 72.070_312_5).abs() < 1e-9, "{ll:?}");
        assert!((ll.east + 71.982_421_875).abs() < 1e-9, "{ll:?}");
        assert!(ll.south < 44.0 && ll.north > 44.0);
        // pixel centres are half a pixel in from the edges
        let (x, y) = t.pixel_centre(0, 0);
        let b = t.bounds();
        assert!((x - b.west - resolution(12) / 2.0).abs() < 1e-9 && (b.north - y - resolution(12) / 2.0).abs() < 1e-9);
        assert!((scale_denominator(0) - 559_082_264.028_717_8).abs() < 1e-3);
        assert!((resolution(0) - 156_543.033_928_041).abs() < 1e-6);
    }

    #[test]
    fn zoom_and_indices_are_checked() {
        assert_eq!(TileId::new(25, 0, 0), Err(TileError::Zoom { z: 25 }));
        assert_eq!(TileId::new(u64::MAX, 0, 0), Err(TileError::Zoom { z: u64::MAX }));
        assert_eq!(TileId::new(2, 4, 0), Err(TileError::Column { z: 2, x: 4 }));
        assert_eq!(TileId::new(2, 0, 4), Err(TileError::Row { z: 2, y: 4 }));
        assert!(TileId::new(24, (1 << 24) - 1, (1 << 24) - 1).is_ok());
        assert!(TileError::Row { z: 2, y: 4 }.to_string().contains("outside 0 to 3 at zoom 2"));
        // containing() clamps poles and the antimeridian into the matrix
        assert_eq!(TileId::containing(180.0, -90.0, 3), TileId { z: 3, x: 7, y: 7 });
    }

    #[test]
    fn geographic_cube_is_mapped_exactly() {
        let gb = e2e();
        let frame = CubeFrame::new(&gb);
        let tile = TileId::containing(-72.0, 44.03, 15);
        let coords = frame.coords(&tile);
        assert!(!coords.approximate);
        let map = sample_map(&coords, 0, &gb).unwrap();
        // every tile pixel: its centre's lon/lat, floored on the grid
        let inv = gb.affine.inverse().unwrap();
        for (i, &idx) in map.index.iter().enumerate() {
            let (c, r) = (i % TILE_SIZE, i / TILE_SIZE);
            let (mx, my) = tile.pixel_centre(c, r);
            let (lon, lat) = mercator_to_lonlat(mx, my);
            let (fc, fr) = inv.apply(lon, lat);
            let inside = fc >= 0.0 && fr >= 0.0 && fc < 360.0 && fr < 216.0;
            if !inside {
                assert_eq!(idx, OUTSIDE);
                continue;
            }
            let want =
                (fr.floor() as i64 - map.window.row) * map.window.width as i64 + (fc.floor() as i64 - map.window.col);
            assert_eq!(i64::from(idx), want, "pixel {c},{r}");
        }
    }

    #[test]
    fn utm_cube_uses_the_lattice_within_an_eighth_of_a_pixel() {
        // 10 m UTM 18N grid around (-72, 44)
        let gb = geobox(32618, Affine::north_up(700_000.0, 4_900_000.0, 10.0, 10.0), 10_000, 10_000);
        let frame = CubeFrame::new(&gb);
        let t = Transformer::new(&Crs::wgs84(), &gb.crs);
        // (-71.894, 43.761) is the grid's centre (rasterio.warp.transform)
        for z in [10, 12, 14, 17] {
            let tile = TileId::containing(-71.894, 43.761, z);
            let coords = frame.coords(&tile);
            assert!(coords.approximate, "z {z}");
            let mut worst: f64 = 0.0;
            for (i, &(x, y)) in coords.xy.iter().enumerate().step_by(97) {
                let (mx, my) = tile.pixel_centre(i % TILE_SIZE, i / TILE_SIZE);
                let (lon, lat) = mercator_to_lonlat(mx, my);
                let (ex, ey) = t.transform(lon, lat).unwrap();
                worst = worst.max((ex - x).hypot(ey - y));
            }
            // an eighth of the tile's own pixel at that zoom (in metres on the ground)
            let ground_px = resolution(z) * 43.76f64.to_radians().cos();
            assert!(worst <= 0.125 * ground_px + 1e-6, "z {z}: {worst} m");
        }
    }

    #[test]
    fn level_choice_is_the_coarsest_still_fine_enough() {
        let base = geobox(32618, Affine::north_up(700_000.0, 4_900_000.0, 10.0, 10.0), 8192, 8192);
        let levels: Vec<GeoBox> = (0..5)
            .map(|l| {
                let f = (1u32 << l) as f64;
                geobox(32618, base.affine.scaled(f, f), 8192 >> l, 8192 >> l)
            })
            .collect();
        assert_eq!(choose_level(0.5, &levels), 0);
        assert_eq!(choose_level(1.0, &levels), 0);
        assert_eq!(choose_level(1.99, &levels), 0);
        assert_eq!(choose_level(2.0, &levels), 1);
        assert_eq!(choose_level(7.9, &levels), 2);
        assert_eq!(choose_level(1000.0, &levels), 4);
        // through real tiles at the grid's centre (-72.0024, 43.8451): at z 14 the ground pixel
        // is 6.9 m (< 10 m): level 0; at z 12 it is 27.6 m: level 1 (20 m), not level 2 (40 m)
        let frame = CubeFrame::new(&base);
        let (lon, lat) = (-72.0024, 43.8451);
        let at = |z| plan_tile(&frame, &TileId::containing(lon, lat, z), &levels, DEFAULT_MAX_PIXELS).unwrap().unwrap();
        assert_eq!(at(14).level, 0);
        assert_eq!(at(12).level, 1);
        assert_eq!(at(11).level, 2);
        // the window read stays small with a pyramid (at most about 2 x 256 per axis)
        for z in 8..16 {
            let m = at(z);
            assert!(m.window.width <= 2 * TILE_SIZE + 2 && m.window.height <= 2 * TILE_SIZE + 2, "z {z}: {m:?}");
        }
    }

    #[test]
    fn the_bound_refuses_coarse_tiles_without_a_pyramid() {
        // a 1-degree cube at 1/3600 degree (3600 x 3600 px) has no pyramid: at z 6 one tile
        // covers all of it, 13 M pixels: within 16.7 M; a 2-degree one (52 M) is refused
        let r = 1.0 / 3600.0;
        let small = geobox(4326, Affine::north_up(10.0, 50.0, r, r), 3600, 3600);
        let big = geobox(4326, Affine::north_up(10.0, 50.0, r, r), 7200, 7200);
        let tile = TileId::containing(11.0, 49.0, 6);
        let plan = plan_tile(&CubeFrame::new(&small), &tile, std::slice::from_ref(&small), DEFAULT_MAX_PIXELS);
        assert!(plan.unwrap().is_some_and(|m| m.pixels() <= DEFAULT_MAX_PIXELS));
        let world = TileId::new(0, 0, 0).unwrap();
        let err = plan_tile(&CubeFrame::new(&big), &world, std::slice::from_ref(&big), DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(matches!(err, TileError::TooManyPixels { level: 0, width: 7200, height: 7200, .. }), "{err:?}");
        // the tile's few pixel centres on the cube do not matter: its footprint does
        let small_world =
            plan_tile(&CubeFrame::new(&small), &world, std::slice::from_ref(&small), 1_000_000).unwrap_err();
        assert!(matches!(small_world, TileError::TooManyPixels { width: 3600, height: 3600, .. }), "{small_world:?}");
        // a tile away from the cube reads nothing
        let far = TileId::containing(-100.0, 40.0, 6);
        assert_eq!(plan_tile(&CubeFrame::new(&big), &far, std::slice::from_ref(&big), DEFAULT_MAX_PIXELS), Ok(None));
        // the zoom range of the big cube starts where a tile reads at most the bound
        let (minz, maxz) = zoom_range(&CubeFrame::new(&big), std::slice::from_ref(&big), DEFAULT_MAX_PIXELS);
        // z 8: a tile is 1.4 x 0.9 degree, 5063 x 3285 pixels, just within 4096^2
        assert!((8..=9).contains(&minz), "{minz}");
        // 1/3600 degree is 30.9 m north-south; z 13 at 49.5 N is 12.4 m
        assert!(maxz == 12 || maxz == 13, "{maxz}");
    }

    #[test]
    fn far_side_of_the_world_never_lands_on_a_utm_grid() {
        let gb = geobox(32618, Affine::north_up(500_000.0, 5_000_000.0, 10.0, 10.0), 1000, 1000);
        let frame = CubeFrame::new(&gb);
        for tile in [TileId::containing(105.0, -44.0, 8), TileId::containing(-75.0, -45.0, 8)] {
            assert_eq!(plan_tile(&frame, &tile, std::slice::from_ref(&gb), DEFAULT_MAX_PIXELS), Ok(None), "{tile}");
        }
        assert!(plan_tile(&frame, &TileId::new(0, 0, 0).unwrap(), &[gb], DEFAULT_MAX_PIXELS).is_ok());
    }

    #[test]
    fn e2e_cube_at_zoom_zero_reads_it_whole() {
        // 0.1 x 0.06 degree: at z 0 at most a pixel centre or two fall on it
        let gb = e2e();
        for z in [0, 4, 8] {
            let tile = TileId::containing(-72.0, 44.03, z);
            let m = plan_tile(&CubeFrame::new(&gb), &tile, std::slice::from_ref(&gb), DEFAULT_MAX_PIXELS).unwrap();
            assert!(m.is_none_or(|m| m.pixels() <= 360 * 216), "z {z}");
        }
    }
}
