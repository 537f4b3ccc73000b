//! Pixels of one synthetic scene: the SCL band at 20 m, then each reflectance band at 10 m, each
//! written as a COG as soon as it is complete.

use rayon::prelude::*;

use super::truth::{Pass, cell_of, hash3, observed, truth_of_cell};
use eocube::grid::{Crs, GeoBox, GridError, Transformer};

/// Lon/lat of a scene's pixels, exact on a coarse grid of nodes every `step` pixels and
/// interpolated bilinearly in between: UTM → lon/lat is so smooth that over 32 pixels (320 m)
/// the interpolation error is far below a micro-degree, and transforming every pixel of a
/// 10980 x 10980 scene exactly would cost minutes.
pub(crate) struct LonLatGrid {
    step: f64,
    pos: Vec<f64>,
    nodes: usize,
    lon: Vec<f64>,
    lat: Vec<f64>,
}

impl LonLatGrid {
    /// The grid of `gb` (square), positions in its pixel units.
    pub fn new(gb: &GeoBox, step: usize) -> Result<Self, GridError> {
        let n = gb.shape.nx.max(gb.shape.ny);
        let pos: Vec<f64> = (0..=n.div_ceil(step)).map(|k| (k * step).min(n) as f64).collect();
        let nodes = pos.len();
        let t = Transformer::new(&gb.crs, &Crs::wgs84());
        let (mut lon, mut lat) = (Vec::with_capacity(nodes * nodes), Vec::with_capacity(nodes * nodes));
        for &y in &pos {
            for &x in &pos {
                let (e, nn) = gb.affine.apply(x, y);
                let (lo, la) = t.transform(e, nn)?;
                lon.push(lo);
                lat.push(la);
            }
        }
        Ok(LonLatGrid { step: step as f64, pos, nodes, lon, lat })
    }

    /// Exact node values, for a quick "does the swath touch this scene" test.
    pub fn nodes(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.lon.iter().copied().zip(self.lat.iter().copied())
    }

    #[inline]
    fn bracket(&self, p: f64) -> (usize, f64) {
        let k = ((p / self.step) as usize).min(self.nodes - 2);
        let (p0, p1) = (self.pos[k], self.pos[k + 1]);
        (k, (p - p0) / (p1 - p0))
    }

    /// Node values interpolated at row position `y` into `lon` / `lat` (one per node column).
    pub fn row(&self, y: f64, lon: &mut Vec<f64>, lat: &mut Vec<f64>) {
        let (k, t) = self.bracket(y);
        lon.clear();
        lat.clear();
        for c in 0..self.nodes {
            let (a, b) = (k * self.nodes + c, (k + 1) * self.nodes + c);
            lon.push(self.lon[a] + (self.lon[b] - self.lon[a]) * t);
            lat.push(self.lat[a] + (self.lat[b] - self.lat[a]) * t);
        }
    }

    /// Lon/lat at column position `x` of a row prepared by [`LonLatGrid::row`].
    #[inline]
    pub fn at(&self, lon: &[f64], lat: &[f64], x: f64) -> (f64, f64) {
        let (k, t) = self.bracket(x);
        (lon[k] + (lon[k + 1] - lon[k]) * t, lat[k] + (lat[k + 1] - lat[k]) * t)
    }
}

/// The SCL band (`n / 2` pixels per side, 20 m) of a scene whose 10 m grid is `grid`.
pub(crate) fn scl_band(grid: &LonLatGrid, n: usize, pass: &Pass, year: i32, month: u32) -> Vec<u8> {
    let n2 = n / 2;
    let mut scl = vec![0u8; n2 * n2];
    scl.par_chunks_mut(n2).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(lon, lat), (r, row)| {
            // a 20 m pixel centre is the corner shared by its four 10 m pixels
            grid.row(2.0 * r as f64 + 1.0, lon, lat);
            let mut cache = None;
            for (c, px) in row.iter_mut().enumerate() {
                let (lo, la) = grid.at(lon, lat, 2.0 * c as f64 + 1.0);
                *px = pass.scl(year, month, lo, la, hash3(pass.seed, r as i64, c as i64), &mut cache);
            }
        },
    );
    scl
}

/// Reflectance band `band_index` (`n` pixels per side, 10 m) given the scene's SCL: nodata
/// where SCL is 0, the truth at the pixel centre where the class is clear, clouds and shadows
/// elsewhere.
#[allow(clippy::too_many_arguments)]
pub(crate) fn reflectance_band(
    grid: &LonLatGrid,
    n: usize,
    scl: &[u8],
    pass: &Pass,
    band_index: usize,
    year: i32,
    month: u32,
) -> Vec<u16> {
    let n2 = n / 2;
    let mut data = vec![0u16; n * n];
    let salt = pass.seed ^ (band_index as u64).wrapping_mul(0x9E37_79B9);
    data.par_chunks_mut(n).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(lon, lat), (r, row)| {
            grid.row(r as f64 + 0.5, lon, lat);
            let scl_row = &scl[(r / 2) * n2..(r / 2 + 1) * n2];
            // consecutive pixels mostly share a truth cell (0.005 degree is ~40 px): remember the last
            let mut last: Option<((i64, i64), u16)> = None;
            for (c, px) in row.iter_mut().enumerate() {
                let s = scl_row[c / 2];
                if s == 0 {
                    continue;
                }
                let (lo, la) = grid.at(lon, lat, c as f64 + 0.5);
                let cell = cell_of(lo, la);
                let t = match last {
                    Some((k, v)) if k == cell => v,
                    _ => {
                        let v = truth_of_cell(band_index, year, month, cell.0, cell.1);
                        last = Some((cell, v));
                        v
                    }
                };
                // cloud texture per truth cell, not per pixel: speckle would not compress
                let h = if matches!(s, 8 | 9) { hash3(salt, cell.0, cell.1) } else { 0 };
                *px = observed(s, t, band_index, h);
            }
        },
    );
    data
}
