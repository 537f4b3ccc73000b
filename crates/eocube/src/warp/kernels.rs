//! Resampling kernels: fill a target buffer from a source image through a [`PixelMap`].

use rayon::prelude::*;

use crate::grid::GeoBox;

use super::map::{EDGE_EPSILON, OUTSIDE, PixelMap, Sampling};
use super::{DEFAULT_TOLERANCE, Resampling, WarpError};

/// A pixel type the kernels can read and write.
pub trait Pixel: Copy + PartialEq + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    /// The stored value for a resampled `v`: integers round as GDAL does, `floor(v + 0.5)`,
    /// clamped to the type's range; floats are stored as they are.
    fn from_f64(v: f64) -> Self;
    fn is_nan(self) -> bool {
        false
    }
}

macro_rules! int_pixel {
    ($round:path: $($t:ty),*) => {$(
        impl Pixel for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                // `as` saturates at the type's bounds, which is the clamp GDAL applies.
                $round(v + 0.5) as $t
            }
        }
    )*};
}
int_pixel!(floor: i16, i32);
// For an unsigned type, truncation is floor: they differ only below 0, where both saturate to 0.
int_pixel!(std::convert::identity: u8, u16, u32);

impl Pixel for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Pixel for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// A source raster (a whole image or a window of it): row-major pixels on `geobox`.
#[derive(Debug, Clone, Copy)]
pub struct SourceImage<'a, T> {
    pub data: &'a [T],
    pub geobox: &'a GeoBox,
    /// Pixels equal to this are missing (NaN is always missing for float types).
    pub nodata: Option<T>,
}

impl<T: Pixel> SourceImage<'_, T> {
    /// Whether `v` is a value (not nodata, not NaN).
    #[inline]
    pub fn is_valid(&self, v: T) -> bool {
        !(v.is_nan() || self.nodata == Some(v))
    }
}

/// Rows per parallel task: enough work per task to amortise scheduling, enough tasks to balance.
const ROWS_PER_TASK: usize = 16;

/// Warp `src` onto `dst_geobox` into `dst` (row-major, `dst_geobox` shape). Every target pixel is
/// written: a value, or `dst_nodata` where the source has no valid data. Returns the number of
/// pixels that got a value.
pub fn warp_into<T: Pixel>(
    src: &SourceImage<'_, T>,
    dst_geobox: &GeoBox,
    resampling: Resampling,
    dst_nodata: T,
    dst: &mut [T],
) -> Result<usize, WarpError> {
    let sampling = if resampling == Resampling::Average { Sampling::Corners } else { Sampling::Centres };
    let map = PixelMap::new(src.geobox, dst_geobox, sampling, DEFAULT_TOLERANCE)?;
    warp_with_map(src, &map, resampling, dst_nodata, dst)
}

/// [`warp_into`] with a prepared map (reuse one map for every band on the same source grid).
/// The map must have been built with [`Sampling::Corners`] for `Average`, `Centres` otherwise.
pub fn warp_with_map<T: Pixel>(
    src: &SourceImage<'_, T>,
    map: &PixelMap,
    resampling: Resampling,
    dst_nodata: T,
    dst: &mut [T],
) -> Result<usize, WarpError> {
    let (w, h) = (src.geobox.shape.nx, src.geobox.shape.ny);
    if src.data.len() != w * h {
        return Err(WarpError::BufferSize { what: "source", expected: w * h, got: src.data.len() });
    }
    let (nx, ny) = match resampling {
        Resampling::Average => (map.width().saturating_sub(1), map.height().saturating_sub(1)),
        _ => (map.width(), map.height()),
    };
    if dst.len() != nx * ny {
        return Err(WarpError::BufferSize { what: "target", expected: nx * ny, got: dst.len() });
    }
    if nx == 0 || ny == 0 {
        return Ok(0);
    }
    type Rows<T> = fn(&SourceImage<'_, T>, &PixelMap, usize, usize, T, &mut [T]) -> usize;
    let rows: Rows<T> = match resampling {
        Resampling::Nearest => return gather(src, &map.nearest_index(src.geobox.shape), dst_nodata, dst),
        Resampling::Bilinear => bilinear_rows,
        Resampling::Average => average_rows,
    };
    let count = dst
        .par_chunks_mut(nx * ROWS_PER_TASK)
        .enumerate()
        .map(|(block, out)| rows(src, map, block * ROWS_PER_TASK, nx, dst_nodata, out))
        .sum();
    Ok(count)
}

/// Nearest resampling through an index from [`PixelMap::nearest_index`] on `src`'s shape: each
/// target pixel takes the source pixel it names, or `dst_nodata` where it names none or that
/// pixel is missing. Returns the number of pixels that got a value. This is what
/// [`warp_with_map`] does for nearest; call it directly to warp several bands of one source grid
/// through one index.
pub fn gather<T: Pixel>(
    src: &SourceImage<'_, T>,
    index: &[u32],
    dst_nodata: T,
    dst: &mut [T],
) -> Result<usize, WarpError> {
    let (w, h) = (src.geobox.shape.nx, src.geobox.shape.ny);
    if src.data.len() != w * h {
        return Err(WarpError::BufferSize { what: "source", expected: w * h, got: src.data.len() });
    }
    if dst.len() != index.len() {
        return Err(WarpError::BufferSize { what: "target", expected: index.len(), got: dst.len() });
    }
    let count = dst
        .par_chunks_mut(GATHER_PER_TASK)
        .zip(index.par_chunks(GATHER_PER_TASK))
        .map(|(out, index)| {
            let mut count = 0;
            for (o, &i) in out.iter_mut().zip(index) {
                let v = if i == OUTSIDE { None } else { src.data.get(i as usize).copied() };
                match v.filter(|&v| src.is_valid(v)) {
                    Some(v) => {
                        *o = v;
                        count += 1;
                    }
                    None => *o = dst_nodata,
                }
            }
            count
        })
        .sum();
    Ok(count)
}

/// Pixels per parallel task of [`gather`] (a gather is a few nanoseconds per pixel).
const GATHER_PER_TASK: usize = 1 << 16;

/// Runs `pixel(x, y)` for every target pixel of the block starting at `first_row`, with `(x, y)`
/// its source coordinates, and writes what it returns (or `nodata`); counts the values written.
fn for_each_pixel<T: Pixel>(
    map: &PixelMap,
    first_row: usize,
    nx: usize,
    nodata: T,
    out: &mut [T],
    mut pixel: impl FnMut(f64, f64) -> Option<T>,
) -> usize {
    let (mut sx, mut sy) = (vec![0.0; nx], vec![0.0; nx]);
    let mut count = 0;
    for (r, row) in out.chunks_mut(nx).enumerate() {
        map.row(first_row + r, &mut sx, &mut sy);
        for ((o, &x), &y) in row.iter_mut().zip(&sx).zip(&sy) {
            match pixel(x, y) {
                Some(v) => {
                    *o = v;
                    count += 1;
                }
                None => *o = nodata,
            }
        }
    }
    count
}

fn bilinear_rows<T: Pixel>(
    src: &SourceImage<'_, T>,
    map: &PixelMap,
    first_row: usize,
    nx: usize,
    nodata: T,
    out: &mut [T],
) -> usize {
    let (w, h) = (src.geobox.shape.nx, src.geobox.shape.ny);
    for_each_pixel(map, first_row, nx, nodata, out, |x, y| Taps::at(x, y, w, h).and_then(|t| t.apply(src)))
}

/// The 2x2 source neighbourhood of a bilinear sample and its weights: computed once per target
/// pixel, applied to every band on the same source grid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taps {
    i0: i64,
    j0: i64,
    fu: f64,
    fv: f64,
    w: i64,
    h: i64,
}

impl Taps {
    /// The taps of the point `(x, y)` (source pixel coordinates) on a `w` x `h` source; `None`
    /// when the point itself is outside the source (as GDAL).
    #[inline]
    pub(crate) fn at(x: f64, y: f64, w: usize, h: usize) -> Option<Taps> {
        if !(x + EDGE_EPSILON >= 0.0 && y + EDGE_EPSILON >= 0.0 && x < w as f64 && y < h as f64) {
            return None;
        }
        let (u, v) = (x - 0.5, y - 0.5);
        let (j0, i0) = (floor(u), floor(v));
        Some(Taps { i0: i0 as i64, j0: j0 as i64, fu: u - j0, fv: v - i0, w: w as i64, h: h as i64 })
    }

    /// The weighted mean of the valid taps of `src`, renormalised over them; `None` when no valid
    /// tap carries weight (GDAL's threshold).
    #[inline(always)]
    pub(crate) fn apply<T: Pixel>(&self, src: &SourceImage<'_, T>) -> Option<T> {
        self.prepare().apply(src)
    }

    /// The taps that carry weight and lie inside the source, with their weights: what every band
    /// sampled at this point shares, so a scene's bands work it out once. Four weighted taps inside
    /// the source, the usual case, are set out without a branch per tap.
    #[inline(always)]
    pub(crate) fn prepare(&self) -> PreparedTaps {
        let stride = self.w as usize;
        let (wx, wy) = ([1.0 - self.fu, self.fu], [1.0 - self.fv, self.fv]);
        let inside = self.i0 >= 0 && self.j0 >= 0 && self.i0 + 1 < self.h && self.j0 + 1 < self.w;
        // 1 - fu and 1 - fv are never 0 (fu, fv < 1).
        if inside && self.fu != 0.0 && self.fv != 0.0 {
            let at = self.i0 as usize * stride + self.j0 as usize;
            let weight = [wx[0] * wy[0], wx[1] * wy[0], wx[0] * wy[1], wx[1] * wy[1]];
            // The sum below in its order, without its loop (0 + w is w: a weight is never -0).
            let wsum = weight[0] + weight[1] + weight[2] + weight[3];
            return PreparedTaps { at: [at, at + 1, at + stride, at + stride + 1], weight, n: 4, wsum };
        }
        let mut p = PreparedTaps { at: [0; 4], weight: [0.0; 4], n: 0, wsum: 0.0 };
        for (ii, wy) in [(self.i0, wy[0]), (self.i0 + 1, wy[1])] {
            if wy == 0.0 || ii < 0 || ii >= self.h {
                continue;
            }
            let base = ii as usize * stride;
            for (jj, wx) in [(self.j0, wx[0]), (self.j0 + 1, wx[1])] {
                if wx == 0.0 || jj < 0 || jj >= self.w {
                    continue;
                }
                p.at[p.n] = base + jj as usize;
                p.weight[p.n] = wx * wy;
                p.n += 1;
            }
        }
        p.wsum = p.weight.iter().take(p.n).fold(0.0, |sum, w| sum + w);
        p
    }
}

/// The taps of one bilinear sample that carry weight and lie inside the source ([`Taps::prepare`]),
/// in row-major order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreparedTaps {
    at: [usize; 4],
    weight: [f64; 4],
    n: usize,
    /// The sum of the weights: the renormaliser when every tap is valid.
    wsum: f64,
}

impl PreparedTaps {
    /// [`Taps::apply`]: the same sums in the same order, so the same bits.
    #[inline(always)]
    pub(crate) fn apply<T: Pixel>(&self, src: &SourceImage<'_, T>) -> Option<T> {
        // Four valid taps, the usual case, in straight code: the loop's sums in the loop's order.
        if self.n == 4 {
            let [a, b, c, d] = self.at.map(|at| src.data[at]);
            if src.is_valid(a) && src.is_valid(b) && src.is_valid(c) && src.is_valid(d) {
                let [wa, wb, wc, wd] = self.weight;
                let acc = a.to_f64() * wa + b.to_f64() * wb + c.to_f64() * wc + d.to_f64() * wd;
                // The weights of four taps often sum to exactly 1, and x / 1 is x: the division
                // is a tenth of a bilinear build's CPU otherwise.
                return Some(T::from_f64(if self.wsum == 1.0 { acc } else { acc / self.wsum }));
            }
        }
        let mut acc = 0.0;
        let mut wsum = 0.0;
        for (&at, &wgt) in self.at.iter().zip(&self.weight).take(self.n) {
            let val = src.data[at];
            if src.is_valid(val) {
                acc += val.to_f64() * wgt;
                wsum += wgt;
            }
        }
        (wsum >= 1e-5).then(|| T::from_f64(acc / wsum))
    }
}

/// `v.floor()` without a call into libm (which the baseline x86-64 target makes for `f64::floor`:
/// 15 % of a bilinear build's time). Equal to it for every value whose integer part fits an
/// i64; larger ones (never coordinates or digital numbers) saturate there.
#[inline]
fn floor(v: f64) -> f64 {
    let t = v as i64 as f64;
    if t > v { t - 1.0 } else { t }
}

fn average_rows<T: Pixel>(
    src: &SourceImage<'_, T>,
    map: &PixelMap,
    first_row: usize,
    nx: usize,
    nodata: T,
    out: &mut [T],
) -> usize {
    let (w, h) = (src.geobox.shape.nx as f64, src.geobox.shape.ny as f64);
    let stride = src.geobox.shape.nx;
    let n = nx + 1;
    let (mut tx, mut ty) = (vec![0.0; n], vec![0.0; n]);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    let mut count = 0;
    for (r, row) in out.chunks_mut(nx).enumerate() {
        map.row(first_row + r, &mut tx, &mut ty);
        map.row(first_row + r + 1, &mut bx, &mut by);
        for (j, o) in row.iter_mut().enumerate() {
            *o = nodata;
            let xs = [tx[j], tx[j + 1], bx[j], bx[j + 1]];
            let ys = [ty[j], ty[j + 1], by[j], by[j + 1]];
            if xs.iter().chain(&ys).any(|v| v.is_nan()) {
                continue;
            }
            let x0 = xs.iter().copied().fold(f64::INFINITY, f64::min).max(0.0);
            let x1 = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max).min(w);
            let y0 = ys.iter().copied().fold(f64::INFINITY, f64::min).max(0.0);
            let y1 = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max).min(h);
            if x1 <= x0 || y1 <= y0 {
                continue;
            }
            let mut acc = 0.0;
            let mut wsum = 0.0;
            for ii in (y0.floor() as usize)..(y1.ceil() as usize) {
                let wy = (y1.min(ii as f64 + 1.0) - y0.max(ii as f64)).max(0.0);
                let base = ii * stride;
                for jj in (x0.floor() as usize)..(x1.ceil() as usize) {
                    let wx = (x1.min(jj as f64 + 1.0) - x0.max(jj as f64)).max(0.0);
                    let val = src.data[base + jj];
                    if wx * wy > 0.0 && src.is_valid(val) {
                        acc += val.to_f64() * wx * wy;
                        wsum += wx * wy;
                    }
                }
            }
            if wsum > 0.0 {
                *o = T::from_f64(acc / wsum);
                count += 1;
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Affine, Crs, Shape};

    fn utm(x0: f64, y0: f64, res: f64, ny: usize, nx: usize) -> GeoBox {
        GeoBox::new(Crs::from_epsg(32618).unwrap(), Affine::north_up(x0, y0, res, res), Shape { ny, nx })
    }

    #[test]
    fn nearest_same_grid_is_identity_and_respects_nodata() {
        let g = utm(0.0, 40.0, 10.0, 4, 4);
        let data: Vec<u16> = (0..16).collect();
        let src = SourceImage { data: &data, geobox: &g, nodata: Some(5) };
        let mut out = vec![9999u16; 16];
        let n = warp_into(&src, &g, Resampling::Nearest, 0, &mut out).unwrap();
        let mut want = data.clone();
        want[5] = 0;
        assert_eq!((out, n), (want, 15));
    }

    #[test]
    fn nearest_outside_the_source_is_nodata() {
        let src_g = utm(0.0, 40.0, 10.0, 4, 4);
        let dst_g = utm(20.0, 40.0, 10.0, 4, 4); // half overlaps
        let data = vec![7u16; 16];
        let mut out = vec![1u16; 16];
        let n = warp_into(
            &SourceImage { data: &data, geobox: &src_g, nodata: None },
            &dst_g,
            Resampling::Nearest,
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 8);
        assert_eq!(&out[0..4], &[7, 7, 0, 0]);
    }

    #[test]
    fn one_nearest_index_serves_every_band_of_a_grid() {
        // A rotated-ish case: a UTM source seen from a lon/lat target, half outside.
        let src_g = utm(600_000.0, 4_950_000.0, 20.0, 300, 300);
        let r = 1.0 / 3600.0;
        let dst_g = GeoBox::from_bbox(
            &crate::grid::Bbox::new(-73.75, 44.62, -73.75 + 200.0 * r, 44.62 + 150.0 * r).unwrap(),
            &Crs::wgs84(),
            r,
        )
        .unwrap();
        let map = PixelMap::new(&src_g, &dst_g, Sampling::Centres, DEFAULT_TOLERANCE).unwrap();
        let index = map.nearest_index(src_g.shape);
        let outside = index.iter().filter(|&&i| i == OUTSIDE).count();
        assert!(outside > 0 && outside < index.len(), "the case must be partly outside: {outside}");
        // The nearest rule written out per pixel: the source pixel holding the mapped point.
        let (mut sx, mut sy) = (vec![0.0; map.width()], vec![0.0; map.width()]);
        for i in 0..map.height() {
            map.row(i, &mut sx, &mut sy);
            for j in 0..map.width() {
                let (x, y) = (sx[j] + EDGE_EPSILON, sy[j] + EDGE_EPSILON);
                let want =
                    if x >= 0.0 && y >= 0.0 && x < 300.0 && y < 300.0 { y as u32 * 300 + x as u32 } else { OUTSIDE };
                assert_eq!(index[i * map.width() + j], want, "target pixel ({i}, {j})");
            }
        }
        for k in 0..3u16 {
            let data: Vec<u16> =
                (0..300 * 300).map(|p| if p % 7 == 0 { 0 } else { (p as u16).wrapping_mul(k + 1) | 1 }).collect();
            let src = SourceImage { data: &data, geobox: &src_g, nodata: Some(0) };
            let mut out = vec![5u16; index.len()];
            let n = gather(&src, &index, 0, &mut out).unwrap();
            let want: Vec<u16> = index.iter().map(|&i| if i == OUTSIDE { 0 } else { data[i as usize] }).collect();
            assert_eq!(n, want.iter().filter(|&&v| v != 0).count());
            assert_eq!(out, want);
        }
        let short = [1u16; 3];
        let e = gather(&SourceImage { data: &short, geobox: &src_g, nodata: None }, &index, 0, &mut [0u16; 1]);
        assert!(matches!(e, Err(WarpError::BufferSize { what: "source", .. })));
    }

    #[test]
    fn bilinear_interpolates_and_renormalises_around_nodata() {
        // 2x2 source of 10 m, target pixel centred on the shared corner (20, 20 in map units)
        let src_g = utm(10.0, 30.0, 10.0, 2, 2);
        let dst_g = utm(15.0, 25.0, 10.0, 1, 1);
        let data = [100u16, 200, 300, 400];
        let mut out = [0u16];
        warp_into(
            &SourceImage { data: &data, geobox: &src_g, nodata: Some(0) },
            &dst_g,
            Resampling::Bilinear,
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0], 250);
        // one neighbour missing: mean of the other three, rounded half up
        let data = [100u16, 0, 300, 400];
        warp_into(
            &SourceImage { data: &data, geobox: &src_g, nodata: Some(0) },
            &dst_g,
            Resampling::Bilinear,
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0], 267);
        // all missing: nodata
        let data = [0u16; 4];
        let n = warp_into(
            &SourceImage { data: &data, geobox: &src_g, nodata: Some(0) },
            &dst_g,
            Resampling::Bilinear,
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!((out[0], n), (0, 0));
        // a quarter of the way: weights 0.75/0.25 along x on the top row only (y on a centre)
        let dst_g = utm(12.5, 30.0, 5.0, 1, 1); // centre (15, 27.5): x 0.5 px → u=0.0; y row 0.25
        let data = [100u16, 200, 300, 400];
        warp_into(
            &SourceImage { data: &data, geobox: &src_g, nodata: None },
            &dst_g,
            Resampling::Bilinear,
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0], 100);
    }

    #[test]
    fn average_downsamples_by_area_skipping_nodata() {
        let src_g = utm(0.0, 40.0, 10.0, 4, 4);
        let dst_g = utm(0.0, 40.0, 20.0, 2, 2);
        let data: Vec<u16> = vec![1, 3, 10, 10, 5, 7, 10, 0, 0, 0, 2, 2, 0, 0, 2, 2];
        let mut out = vec![0u16; 4];
        let n = warp_into(
            &SourceImage { data: &data, geobox: &src_g, nodata: Some(0) },
            &dst_g,
            Resampling::Average,
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!((out, n), (vec![4, 10, 0, 2], 3));
    }

    #[test]
    fn float_nan_is_missing() {
        let g = utm(0.0, 20.0, 10.0, 2, 2);
        let data = [1.5f32, f32::NAN, 2.5, 3.5];
        let mut out = [0f32; 4];
        let n =
            warp_into(&SourceImage { data: &data, geobox: &g, nodata: None }, &g, Resampling::Nearest, -1.0, &mut out)
                .unwrap();
        assert_eq!((out, n), ([1.5, -1.0, 2.5, 3.5], 3));
    }

    #[test]
    fn wrong_buffer_sizes_are_errors_not_panics() {
        let g = utm(0.0, 20.0, 10.0, 2, 2);
        let data = [1u16; 3];
        let mut out = [0u16; 4];
        let e = warp_into(&SourceImage { data: &data, geobox: &g, nodata: None }, &g, Resampling::Nearest, 0, &mut out);
        assert!(matches!(e, Err(WarpError::BufferSize { what: "source", .. })));
        let data = [1u16; 4];
        let mut out = [0u16; 5];
        let e =
            warp_into(&SourceImage { data: &data, geobox: &g, nodata: None }, &g, Resampling::Bilinear, 0, &mut out);
        assert!(matches!(e, Err(WarpError::BufferSize { what: "target", .. })));
    }

    /// The four-tap path's weight sum, written out, has the general path's bits: points all
    /// over a source, at pixel centres and edges as well as in between.
    #[test]
    fn the_four_tap_weight_sum_equals_the_general_sum() {
        let (w, h) = (37usize, 23usize);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut four = 0;
        for i in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            // Every 8th point on a pixel centre or a half-pixel, the rest anywhere.
            let x = if i % 8 == 0 { (i % w as u32) as f64 + 0.5 } else { unit * w as f64 };
            let y = if i % 8 == 4 { (i % h as u32) as f64 } else { ((unit * 7919.0) % 1.0) * h as f64 };
            let Some(taps) = Taps::at(x, y, w, h) else { continue };
            let p = taps.prepare();
            let general = p.weight.iter().take(p.n).fold(0.0, |sum: f64, w| sum + w);
            assert_eq!(p.wsum.to_bits(), general.to_bits(), "({x}, {y}): {p:?}");
            four += usize::from(p.n == 4);
        }
        assert!(four > 15_000, "the four-tap path was taken {four} times");
    }

    #[test]
    fn floor_equals_libm_floor() {
        for v in [-2.5, -2.0, -1.0 - 1e-12, -0.5, -0.0, 0.0, 1e-300, 0.49999999999, 0.5, 1.0, 7.999_999_999, 1e9 + 0.5]
        {
            // -0.0 comes out as 0.0, which the kernel cannot tell apart (u - 0.0 == u - -0.0).
            assert_eq!(floor(v), v.floor(), "{v}");
        }
    }

    #[test]
    fn integer_rounding_and_clamping() {
        assert_eq!(u16::from_f64(2.5), 3);
        assert_eq!(u16::from_f64(2.4999), 2);
        assert_eq!(u16::from_f64(70000.0), u16::MAX);
        assert_eq!(u8::from_f64(-3.0), 0);
        assert_eq!(i16::from_f64(-2.5), -2);
    }
}
