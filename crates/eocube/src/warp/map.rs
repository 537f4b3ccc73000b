//! The target→source pixel coordinate map, exact on a coarse grid of nodes and bilinearly
//! interpolated in between; the node spacing halves until the interpolation error measured at
//! every cell's midpoint is within half the tolerance.

use rayon::prelude::*;

use crate::grid::{Affine, GeoBox, Shape, Transformer};

use super::WarpError;

/// Which points of the target pixels are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Pixel centres: `nx x ny` points at `(j + 0.5, i + 0.5)` (nearest, bilinear).
    Centres,
    /// Pixel corners: `(nx + 1) x (ny + 1)` points at `(j, i)` (average: pixel footprints).
    Corners,
}

/// Start here: a 1200-px chunk from UTM at 1/3600 degree needs about 32 px between nodes.
const INITIAL_STEP: usize = 64;

/// Exact transform from a sample index to source pixel coordinates; NaN where it fails.
#[derive(Debug, Clone)]
struct Exact {
    dst_affine: Affine,
    offset: f64,
    transformer: Transformer,
    src_inverse: Affine,
}

impl Exact {
    #[inline]
    fn at(&self, j: usize, i: usize) -> (f64, f64) {
        let (x, y) = self.dst_affine.apply(j as f64 + self.offset, i as f64 + self.offset);
        match self.transformer.transform(x, y) {
            Ok((sx, sy)) => self.src_inverse.apply(sx, sy),
            Err(_) => (f64::NAN, f64::NAN),
        }
    }
}

/// Target sample index → fractional source pixel coordinates (edge convention, see `warp`).
#[derive(Debug, Clone)]
pub struct PixelMap {
    /// Samples per row and per column (pixels, or pixels + 1 for corners).
    nx: usize,
    ny: usize,
    step: usize,
    /// Node columns and rows: multiples of `step`, the last sample always included.
    node_cols: Vec<usize>,
    node_rows: Vec<usize>,
    /// Source coordinates at nodes, row-major over (node_rows, node_cols).
    nodes: Vec<(f64, f64)>,
    exact: Exact,
    max_error: f64,
}

impl PixelMap {
    /// The map from `dst` pixels to pixel coordinates of `src` (a source image or window),
    /// accurate to `tolerance` source pixels.
    pub fn new(src: &GeoBox, dst: &GeoBox, sampling: Sampling, tolerance: f64) -> Result<PixelMap, WarpError> {
        let (offset, nx, ny) = match sampling {
            Sampling::Centres => (0.5, dst.shape.nx, dst.shape.ny),
            Sampling::Corners => (0.0, dst.shape.nx + 1, dst.shape.ny + 1),
        };
        let exact = Exact {
            dst_affine: dst.affine,
            offset,
            transformer: Transformer::new(&dst.crs, &src.crs),
            src_inverse: src.affine.inverse()?,
        };
        // Same CRS: the map is affine, so two nodes per axis are exact.
        let linear = dst.crs == src.crs;
        let mut step = if linear { nx.max(ny).max(1) } else { INITIAL_STEP };
        loop {
            let mut map = PixelMap::with_step(exact.clone(), nx, ny, step);
            if step == 1 {
                map.max_error = 0.0;
                return Ok(map);
            }
            let err = map.midpoint_error();
            if err <= tolerance / 2.0 || linear {
                map.max_error = err;
                return Ok(map);
            }
            step /= 2;
        }
    }

    /// Every sample transformed exactly (for tests and reference).
    pub fn exact_at(&self, j: usize, i: usize) -> (f64, f64) {
        self.exact.at(j, i)
    }

    /// Largest interpolation error seen at the cell midpoints when the map was built.
    pub fn max_error(&self) -> f64 {
        self.max_error
    }

    /// Node spacing in samples (1 = every sample exact).
    pub fn step(&self) -> usize {
        self.step
    }

    pub fn width(&self) -> usize {
        self.nx
    }

    pub fn height(&self) -> usize {
        self.ny
    }

    fn with_step(exact: Exact, nx: usize, ny: usize, step: usize) -> PixelMap {
        let node_cols = node_positions(nx, step);
        let node_rows = node_positions(ny, step);
        let mut nodes = Vec::with_capacity(node_cols.len() * node_rows.len());
        for &i in &node_rows {
            for &j in &node_cols {
                nodes.push(exact.at(j, i));
            }
        }
        PixelMap { nx, ny, step, node_cols, node_rows, nodes, exact, max_error: 0.0 }
    }

    /// Largest distance between interpolated and exact coordinates at the middle of every cell
    /// and every cell edge, where bilinear interpolation of a smooth map errs most.
    fn midpoint_error(&self) -> f64 {
        let mut worst: f64 = 0.0;
        let mids = |pos: &[usize]| -> Vec<usize> {
            let mut m: Vec<usize> = pos.windows(2).map(|w| (w[0] + w[1]) / 2).collect();
            m.extend_from_slice(pos);
            m
        };
        let (rows, cols) = (mids(&self.node_rows), mids(&self.node_cols));
        let mut sx = vec![0.0; self.nx];
        let mut sy = vec![0.0; self.nx];
        for &i in &rows {
            self.row(i, &mut sx, &mut sy);
            for &j in &cols {
                let (ex, ey) = self.exact.at(j, i);
                let e = (sx[j] - ex).hypot(sy[j] - ey);
                if e.is_nan() {
                    // Both failed to transform (outside the projection's domain): fine.
                    if !(ex.is_nan() && sx[j].is_nan()) {
                        return f64::INFINITY;
                    }
                } else {
                    worst = worst.max(e);
                }
            }
        }
        worst
    }

    /// Source coordinates of every sample of row `i` into `sx`, `sy` (length `width()`).
    /// Cells with a node that failed to transform fall back to the exact transform.
    pub fn row(&self, i: usize, sx: &mut [f64], sy: &mut [f64]) {
        let gx = self.node_cols.len();
        if self.nodes.is_empty() || i >= self.ny {
            return;
        }
        let (k, v) = cell(&self.node_rows, i);
        let top = &self.nodes[k * gx..(k + 1) * gx];
        let bottom = if v > 0.0 { &self.nodes[(k + 1) * gx..(k + 2) * gx] } else { top };
        let n = self.nx.min(sx.len()).min(sy.len());
        let put = |sx: &mut [f64], sy: &mut [f64], j: usize, (x, y): (f64, f64)| {
            let (x, y) = if x.is_nan() || y.is_nan() { self.exact.at(j, i) } else { (x, y) };
            sx[j] = x;
            sy[j] = y;
        };
        if gx < 2 {
            for j in 0..n {
                put(sx, sy, j, lerp2(top[0], bottom[0], v));
            }
            return;
        }
        // Cell by cell: the row's two ends of a cell are interpolated once, not per sample (the
        // same arithmetic as per sample, so the same bits).
        for m in 0..gx - 1 {
            let (c0, c1) = (self.node_cols[m], self.node_cols[m + 1]);
            let last = if m + 2 == gx { c1 + 1 } else { c1 };
            let (a, b) = (lerp2(top[m], bottom[m], v), lerp2(top[m + 1], bottom[m + 1], v));
            let len = (c1 - c0) as f64;
            let end = last.min(n);
            if [a.0, a.1, b.0, b.1].iter().all(|c| c.is_finite()) && c0 < end && end - c0 < i32::MAX as usize {
                // Finite ends give finite samples: no fallback to test, and a loop the compiler
                // vectorises (the division per sample was 6 % of a bilinear job). The same
                // arithmetic as `lerp2`, so the same bits: t = 0 gives `a`, and `k` = j - c0 is
                // exact as a float.
                sx[c0] = a.0;
                sy[c0] = a.1;
                let (dx, dy) = (b.0 - a.0, b.1 - a.1);
                let (xs, ys) = (&mut sx[c0 + 1..end], &mut sy[c0 + 1..end]);
                for ((x, y), k) in xs.iter_mut().zip(ys.iter_mut()).zip(1i32..) {
                    let t = f64::from(k) / len;
                    *x = a.0 + dx * t;
                    *y = a.1 + dy * t;
                }
                continue;
            }
            for j in c0..end {
                put(sx, sy, j, lerp2(a, b, (j as f64 - c0 as f64) / len));
            }
        }
    }

    /// For nearest resampling onto a source image of `shape`: the row-major index of the source
    /// pixel each target sample takes, or [`OUTSIDE`] where it falls outside the image (or could
    /// not be transformed). Every band on the same source grid gathers through one such index.
    pub fn nearest_index(&self, shape: Shape) -> Vec<u32> {
        let (w, h) = (shape.nx as f64, shape.ny as f64);
        let mut index = vec![OUTSIDE; self.nx * self.ny];
        if self.nx == 0 || shape.len() >= OUTSIDE as usize {
            return index;
        }
        index.par_chunks_mut(self.nx).enumerate().for_each_init(
            || (vec![0.0; self.nx], vec![0.0; self.nx]),
            |(sx, sy), (i, out)| {
                self.row(i, sx, sy);
                for ((o, &x), &y) in out.iter_mut().zip(sx.iter()).zip(sy.iter()) {
                    let (x, y) = (x + EDGE_EPSILON, y + EDGE_EPSILON);
                    // NaN (untransformable) fails these comparisons too.
                    if x >= 0.0 && y >= 0.0 && x < w && y < h {
                        *o = (y as usize * shape.nx + x as usize) as u32;
                    }
                }
            },
        );
        index
    }
}

/// A target sample of [`PixelMap::nearest_index`] that takes no source pixel.
pub const OUTSIDE: u32 = u32::MAX;

/// GDAL adds this before flooring a source coordinate, so points a hair below a pixel edge (from
/// rounding in the transform) land in the pixel they are meant for.
pub(crate) const EDGE_EPSILON: f64 = 1e-10;

/// `0, step, 2*step, ...` and always the last index `n - 1`.
fn node_positions(n: usize, step: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut v: Vec<usize> = (0..n).step_by(step.max(1)).collect();
    if v.last() != Some(&(n - 1)) {
        v.push(n - 1);
    }
    v
}

/// The node interval holding `i` and the fraction of the way through it.
#[inline]
fn cell(nodes: &[usize], i: usize) -> (usize, f64) {
    if nodes.len() < 2 {
        return (0, 0.0);
    }
    let k = match nodes.binary_search(&i) {
        Ok(k) => k.min(nodes.len() - 2),
        Err(k) => k.saturating_sub(1).min(nodes.len() - 2),
    };
    let (a, b) = (nodes[k], nodes[k + 1]);
    (k, (i as f64 - a as f64) / (b - a) as f64)
}

#[inline]
fn lerp2(a: (f64, f64), b: (f64, f64), t: f64) -> (f64, f64) {
    if t == 0.0 {
        return a;
    }
    (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Bbox, Crs};

    fn chunk(west: f64, north: f64, n: usize) -> GeoBox {
        let r = 1.0 / 3600.0;
        GeoBox::from_bbox(&Bbox::new(west, north - n as f64 * r, west + n as f64 * r, north).unwrap(), &Crs::wgs84(), r)
            .unwrap()
    }

    fn scene(epsg: u32, x0: f64, y0: f64, res: f64) -> GeoBox {
        GeoBox::new(
            Crs::from_epsg(epsg).unwrap(),
            crate::grid::Affine::north_up(x0, y0, res, res),
            Shape { ny: 10980, nx: 10980 },
        )
    }

    /// Every sample against the exact transform: the stated 0.01 px bound must hold everywhere.
    fn max_error_everywhere(map: &PixelMap) -> f64 {
        let mut sx = vec![0.0; map.width()];
        let mut sy = vec![0.0; map.width()];
        let mut worst: f64 = 0.0;
        for i in 0..map.height() {
            map.row(i, &mut sx, &mut sy);
            for j in 0..map.width() {
                let (ex, ey) = map.exact_at(j, i);
                worst = worst.max((sx[j] - ex).hypot(sy[j] - ey));
            }
        }
        worst
    }

    #[test]
    fn interpolated_map_is_within_tolerance_everywhere() {
        let cases = [
            // UTM 18N 10 m scene, chunk across lon -72 (3 degrees from the central meridian)
            (scene(32618, 699_960.0, 4_900_020.0, 10.0), chunk(-72.2, 44.2, 1200), Sampling::Centres),
            // the same chunk seen from UTM 19N, far west of its central meridian
            (scene(32619, 199_980.0, 4_900_020.0, 10.0), chunk(-72.2, 44.2, 1200), Sampling::Centres),
            // southern hemisphere, 20 m (SCL), corners for the average kernel
            (scene(32720, 399_960.0, 6_700_000.0, 20.0), chunk(-64.0, -29.8, 700), Sampling::Corners),
            // high latitude: stronger curvature
            (scene(32633, 399_960.0, 7_800_000.0, 10.0), chunk(14.0, 70.0, 1200), Sampling::Centres),
        ];
        for (src, dst, sampling) in cases {
            for tolerance in [0.01, super::super::DEFAULT_TOLERANCE] {
                let map = PixelMap::new(&src, &dst, sampling, tolerance).unwrap();
                let worst = max_error_everywhere(&map);
                println!("map {} → {} at {tolerance}: step {}, max error {worst:.5} px", dst.crs, src.crs, map.step());
                assert!(worst <= tolerance, "max error {worst} with step {}", map.step());
                assert!(map.step() >= 8, "the map should not need dense exact transforms: step {}", map.step());
            }
        }
    }

    #[test]
    fn same_crs_map_is_affine_and_exact() {
        let crs = Crs::from_epsg(32618).unwrap();
        let src = GeoBox::new(
            crs.clone(),
            crate::grid::Affine::north_up(0.0, 1000.0, 10.0, 10.0),
            Shape { ny: 100, nx: 100 },
        );
        let dst = GeoBox::new(crs, crate::grid::Affine::north_up(105.0, 900.0, 20.0, 20.0), Shape { ny: 7, nx: 9 });
        let map = PixelMap::new(&src, &dst, Sampling::Centres, 0.01).unwrap();
        let (mut sx, mut sy) = (vec![0.0; 9], vec![0.0; 9]);
        map.row(3, &mut sx, &mut sy);
        // dst pixel (3, 4) centre: x = 105 + 4.5*20 = 195 → src col 19.5; y = 900 - 3.5*20 = 830 → row 17
        assert!((sx[4] - 19.5).abs() < 1e-9 && (sy[4] - 17.0).abs() < 1e-9, "{} {}", sx[4], sy[4]);
        assert!(max_error_everywhere(&map) < 1e-9);
    }

    #[test]
    fn tiny_grids_work() {
        let src = scene(32618, 699_960.0, 4_900_020.0, 10.0);
        for n in [1, 2, 3] {
            let map = PixelMap::new(&src, &chunk(-72.2, 44.2, n), Sampling::Centres, 0.01).unwrap();
            assert!(max_error_everywhere(&map) <= 0.01);
        }
    }

    #[test]
    fn nodes_include_the_last_sample() {
        assert_eq!(node_positions(10, 4), vec![0, 4, 8, 9]);
        assert_eq!(node_positions(9, 4), vec![0, 4, 8]);
        assert_eq!(node_positions(1, 4), vec![0]);
        assert_eq!(cell(&[0, 4, 8, 9], 9), (2, 1.0));
        assert_eq!(cell(&[0, 4, 8, 9], 5), (1, 0.25));
    }
}
